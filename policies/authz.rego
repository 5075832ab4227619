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
}

first_denial := {
	"allowed": false,
	"http_status": 403,
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
