# Example portcullis policy, compatible with the OPA Envoy plugin.
#
# The decision `data.envoy.authz.allow` is always an object:
#   allowed: {"allowed": true, "rule": "allow.role", "reason": ..., "headers": {...}}
#   denied:  {"allowed": false, "http_status": 403, "rule": <rule id>, "reason": <sentence>}
#
# Deny by default: a call is allowed only when the caller is identified, its agent is bound to
# the tool, one of its roles grants the tool, every tenant the request names is the caller's
# tenant, and a state-changing call is made with a role that may write. When several checks
# fail, the reported one is the first in the order of `denials` (lowest number, then text), so
# the result is deterministic and never a rule conflict.
#
# `data.portcullis` (policies/data.json, or a data file configured next to the bundle) holds
# tools (and which MCP tools change state), agent-to-tool bindings, roles, and the revocation list
# `revoked`: token ids (`jti`), subjects (the user, `sub`) and agents whose calls are refused on
# every request, whatever their roles or bindings. Replacing the data file applies a revocation to
# the next request (the gateway watches the file).
#
# MCP servers: a role may narrow what it grants on one MCP tool (or on every one, key "*") with
# `roles.<role>.mcp.<tool>`: `tools` (MCP tool names, "*" for all; absent: all), `prompts`
# (prompt names, "*" for all; absent: none) and `resources` (URI prefixes, "*" for all; absent:
# none). `input.mcp` names what a call uses: `tool` (tools/call), `prompt` (prompts/get, prompt
# completions), `resource` (resources/read, subscribe, unsubscribe, resource completions).
#
# The same rules decide what MCP lists show. The gateway asks this policy once per listed item,
# with the input of the call that would use it (identity, tool and request attributes of the
# list request, no body): a tool of tools/list as {"method": "tools/call", "tool": <name>,
# "arguments": null, "id": null}, a prompt of prompts/list as {"method": "prompts/get",
# "prompt": <name>}, a resource of resources/list as {"method": "resources/read", "resource":
# <uri>}, and a template of resources/templates/list as {"method": "resources/read",
# "resource": null, "resource_template": <uriTemplate>}. An item is shown when the decision
# allows. A template is shown when the literal text before its first expression (`{`) starts
# with a granted prefix: every URI it expands to then does too (each read is still judged on
# its own URI).
package envoy.authz

cfg := data.portcullis

default allow := {
	"allowed": false,
	"http_status": 403,
	"rule": "policy.default_deny",
	"reason": "No policy rule allows this call.",
}

allow := {
	"allowed": true,
	"rule": "allow.role",
	"reason": "A role of the caller grants this tool.",
	"headers": tenant_headers,
} if permitted

allow := first_denial if not permitted

# Positive conditions, checked again independently of `denials` so that a missing denial rule
# can never turn into an allow.
permitted if {
	count(denials) == 0
	identified
	not revoked
	tool_resolved
	agent_bound
	role_grants_tool
	mcp_names_granted
	facts_ok
}

first_denial := {
	"allowed": false,
	"http_status": object.get(denial_status, d[1], 403),
	"rule": d[1],
	"reason": d[2],
} if {
	count(denials) > 0
	d := sort(denials)[0]
}

# Each denial is [order, rule id, reason]; `sort` makes the first one deterministic.
denials contains [0, "identity.revoked", concat("", ["The caller's ", what, " has been revoked."])] if {
	some what in revoked_parts
}

denials contains [1, "identity.required", "This tool requires a verified caller identity; send a token, API key, client certificate or signed request."] if not identified

denials contains [2, "tool.unknown", "The gateway did not resolve a tool for this request."] if not tool_resolved

denials contains [3, "agent.not_bound", concat("", ["Agent ", quote(caller_agent), " is not allowed to use tool ", quote(tool_name), "."])] if {
	identified
	tool_resolved
	not agent_bound
}

denials contains [4, "role.not_allowed", concat("", ["None of the caller's roles grants tool ", quote(tool_name), "."])] if {
	identified
	tool_resolved
	not role_grants_tool
}

denials contains [5, "tenant.mismatch", concat("", ["The request names tenant ", quote(t), " but the caller belongs to tenant ", quote(caller_tenant), "."])] if {
	identified
	some t in requested_tenants
	t != caller_tenant
}

denials contains [6, "role.read_only", concat("", ["This call to tool ", quote(tool_name), " changes state and the caller's roles are read-only."])] if {
	identified
	tool_resolved
	role_grants_tool
	mutating_call
	not writer_role
}

denials contains [7, "mcp.tool_not_allowed", concat("", ["None of the caller's roles grants MCP tool ", quote(input.mcp.tool), " of tool ", quote(tool_name), "."])] if {
	identified
	tool_resolved
	role_grants_tool
	not mcp_tool_ok
}

denials contains [8, "mcp.prompt_not_allowed", concat("", ["None of the caller's roles grants prompt ", quote(input.mcp.prompt), " of tool ", quote(tool_name), "."])] if {
	identified
	tool_resolved
	role_grants_tool
	not prompt_ok
}

denials contains [9, "mcp.resource_not_allowed", concat("", ["None of the caller's roles grants resource ", quote(input.mcp.resource), " of tool ", quote(tool_name), "."])] if {
	identified
	tool_resolved
	role_grants_tool
	not resource_ok
}

denials contains [10, "mcp.resource_not_allowed", concat("", ["None of the caller's roles grants the resources of template ", quote(input.mcp.resource_template), " of tool ", quote(tool_name), "."])] if {
	identified
	tool_resolved
	role_grants_tool
	not template_ok
}

# Revocation list. Each entry kind is matched only against a string from the verified identity,
# so a missing jti or user never matches anything.
revoked if count(revoked_parts) > 0

revoked_parts contains "token" if {
	is_string(input.identity.jti)
	input.identity.jti in cfg.revoked.jti
}

revoked_parts contains "user" if {
	is_string(input.identity.user)
	input.identity.user in cfg.revoked.subjects
}

revoked_parts contains "agent" if {
	is_string(input.identity.agent)
	input.identity.agent in cfg.revoked.agents
}

# Helper rules, not inline calls: `not is_object(input.x)` is undefined when input.x is missing.
identified if is_object(input.identity)

tool_resolved if is_object(input.tool)

agent_bound if input.tool.name in cfg.agents[input.identity.agent].tools

role_grants_tool if {
	some r in input.identity.roles
	grants(r)
}

grants(role) if {
	some t in cfg.roles[role].tools
	t in {"*", input.tool.name}
}

# A role that grants the tool and is not marked read-only.
writer_role if {
	some r in input.identity.roles
	grants(r)
	not cfg.roles[r].read_only
}

# The gateway marks the call as mutating (HTTP method or tool configuration) ...
mutating_call if input.tool.mutating == true

# ... or it is an MCP tools/call of a tool the data does not mark as read-only (unknown MCP
# tools count as mutating).
mutating_call if {
	input.mcp.method == "tools/call"
	not mcp_tool_read_only
}

mcp_tool_read_only if cfg.tools[input.tool.name].mcp_tools[input.mcp.tool].mutating == false

# MCP names a call uses, each granted by some role that grants the tool (see the header).
mcp_names_granted if {
	mcp_tool_ok
	prompt_ok
	resource_ok
	template_ok
}

mcp_method := input.mcp.method if is_string(input.mcp.method)

else := ""

# The names a call uses, defined only when they are strings (helper rules: see below).
mcp_tool_name := input.mcp.tool if is_string(input.mcp.tool)

mcp_prompt_name := input.mcp.prompt if is_string(input.mcp.prompt)

mcp_resource_uri := input.mcp.resource if is_string(input.mcp.resource)

mcp_template := input.mcp.resource_template if is_string(input.mcp.resource_template)

# Methods that must name what they use: a missing or non-string name is refused, not let through.
prompt_methods := {"prompts/get"}

resource_methods := {"resources/read", "resources/subscribe", "resources/unsubscribe"}

mcp_tool_ok if not mcp_tool_name

mcp_tool_ok if {
	some scope in mcp_scopes
	not scope.tools
}

mcp_tool_ok if {
	some scope in mcp_scopes
	some t in scope.tools
	t in {"*", mcp_tool_name}
}

# A role that grants the tool without an MCP section for it keeps every MCP tool.
mcp_tool_ok if {
	some r in input.identity.roles
	grants(r)
	count(role_scopes(r)) == 0
}

prompt_ok if {
	not mcp_prompt_name
	not mcp_method in prompt_methods
}

prompt_ok if {
	some scope in mcp_scopes
	some p in scope.prompts
	p in {"*", mcp_prompt_name}
}

resource_ok if {
	not mcp_resource_uri
	not mcp_method in resource_methods
	not mcp_template
}

# A template stands for a resources/read: it is judged by template_ok instead.
resource_ok if {
	not mcp_resource_uri
	mcp_template
}

resource_ok if {
	not uri_escapes(mcp_resource_uri)
	some scope in mcp_scopes
	some prefix in scope.resources
	prefix_grants(prefix, mcp_resource_uri)
}

template_ok if not mcp_template

template_ok if {
	literal := split(mcp_template, "{")[0]
	not uri_escapes(literal)
	some scope in mcp_scopes
	some prefix in scope.resources
	prefix_grants(prefix, literal)
}

prefix_grants("*", _)

prefix_grants(prefix, uri) if {
	prefix != "*"
	startswith(uri, prefix)
}

# Dot segments, encoded dots or slashes and backslashes could lead a server outside a prefix.
uri_escapes(uri) if regex.match(`(^|[/\\])\.\.?([/\\?#]|$)|%2[eEfF]|%5[cC]|\\`, uri)

# The MCP sections of the caller's roles that grant the tool: for this tool and for every tool.
mcp_scopes contains scope if {
	some r in input.identity.roles
	grants(r)
	some scope in role_scopes(r)
}

role_scopes(r) := {s |
	some key in {input.tool.name, "*"}
	s := cfg.roles[r].mcp[key]
}

# Tenants named by the request: path segment after "tenants", body field, MCP argument.
requested_tenants contains input.parsed_path[i + 1] if input.parsed_path[i] == "tenants"

requested_tenants contains t if {
	t := input.parsed_body.tenant
	not is_array(t)
}

# Form bodies parse to arrays of values.
requested_tenants contains t if {
	is_array(input.parsed_body.tenant)
	some t in input.parsed_body.tenant
}

requested_tenants contains input.mcp.arguments.tenant

tenant_headers := {"x-portcullis-tenant": caller_tenant} if is_string(caller_tenant)

else := {}

# Caller and tool fields with null for anything missing or not a string, so reasons and
# comparisons stay defined.
caller_agent := input.identity.agent if is_string(input.identity.agent)

else := null

caller_tenant := input.identity.tenant if is_string(input.identity.tenant)

else := null

tool_name := input.tool.name if is_string(input.tool.name)

else := null

# Quoted display form of a value for reasons; never fails on a non-string.
quote(s) := concat("", ["\"", s, "\""]) if is_string(s)

else := "(none)"
