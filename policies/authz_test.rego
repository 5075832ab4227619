package envoy.authz_test

import data.envoy.authz

# --- fixtures -------------------------------------------------------------------------------

identity(agent, roles, tenant) := {
	"agent": agent,
	"agent_version": "1.0.0",
	"user": "alice",
	"tenant": tenant,
	"roles": roles,
	"methods": ["jwt"],
	"proven_by": ["https://issuer.example"],
}

tool(name, mutating) := {"name": name, "mutating": mutating, "external": false, "upstream": concat("", ["tool_", name])}

request(method, path) := {
	"attributes": {"request": {"http": {"method": method, "path": path, "headers": {}}}},
	"parsed_path": split(trim_left(path, "/"), "/"),
	"parsed_query": {},
	"parsed_body": null,
	"truncated_body": false,
	"version": {"encoding": "protojson", "ext_authz": "v3"},
	"identity": null,
	"tool": null,
	"mcp": null,
}

call(ident, t, method, path) := object.union(request(method, path), {"identity": ident, "tool": t})

mcp_call(ident, mcp_tool, args) := object.union(
	call(ident, tool("docs", false), "POST", "/tools/docs/mcp"),
	{"mcp": {"method": "tools/call", "tool": mcp_tool, "arguments": args, "id": 1}},
)

viewer := identity("reporter", ["viewer"], "acme")

support := identity("helpdesk", ["support"], "acme")

denied_by(decision, rule) if {
	decision.allowed == false
	decision.http_status == 403
	decision.rule == rule
	is_string(decision.reason)
	decision.reason != ""
}

rules(inp) := {d[1] | some d in authz.denials with input as inp}

# --- allow ------------------------------------------------------------------------------------

test_allow_viewer_reads_weather if {
	d := authz.allow with input as call(viewer, tool("weather", false), "GET", "/tools/weather/forecast")
	d.allowed == true
	d.rule == "allow.role"
	d.headers == {"x-portcullis-tenant": "acme"}
}

test_allow_without_tenant_has_no_tenant_header if {
	d := authz.allow with input as call(identity("helpdesk", ["admin"], null), tool("tickets", true), "POST", "/tools/tickets/items")
	d.allowed == true
	d.headers == {}
}

test_deny_without_any_input if {
	d := authz.allow with input as {}
	denied_by(d, "identity.required")
}

# --- identity.required ------------------------------------------------------------------------

test_identity_required_when_identity_null if {
	d := authz.allow with input as call(null, tool("weather", false), "GET", "/tools/weather/forecast")
	denied_by(d, "identity.required")
}

test_identity_required_not_raised_for_identified_caller if {
	not "identity.required" in rules(call(viewer, tool("weather", false), "GET", "/tools/weather/forecast"))
}

# --- tool.unknown -----------------------------------------------------------------------------

test_tool_unknown_when_tool_null if {
	d := authz.allow with input as call(viewer, null, "GET", "/elsewhere")
	denied_by(d, "tool.unknown")
}

# --- agent.not_bound --------------------------------------------------------------------------

test_agent_not_bound_reporter_tickets if {
	d := authz.allow with input as call(identity("reporter", ["admin"], "acme"), tool("tickets", false), "GET", "/tools/tickets/tenants/acme/items")
	denied_by(d, "agent.not_bound")
	d.reason == "Agent \"reporter\" is not allowed to use tool \"tickets\"."
}

test_agent_not_bound_unknown_agent if {
	d := authz.allow with input as call(identity("stranger", ["admin"], "acme"), tool("weather", false), "GET", "/tools/weather/x")
	denied_by(d, "agent.not_bound")
}

test_agent_not_bound_null_agent if {
	d := authz.allow with input as call(identity(null, ["admin"], "acme"), tool("weather", false), "GET", "/tools/weather/x")
	denied_by(d, "agent.not_bound")
	d.reason == "Agent (none) is not allowed to use tool \"weather\"."
}

test_agent_bound_helpdesk_tickets if {
	not "agent.not_bound" in rules(call(support, tool("tickets", false), "GET", "/tools/tickets/tenants/acme/items"))
}

# --- role.not_allowed -------------------------------------------------------------------------

test_role_not_allowed_without_roles if {
	d := authz.allow with input as call(identity("reporter", [], "acme"), tool("weather", false), "GET", "/tools/weather/x")
	denied_by(d, "role.not_allowed")
}

test_role_not_allowed_unknown_role if {
	d := authz.allow with input as call(identity("reporter", ["guest"], "acme"), tool("weather", false), "GET", "/tools/weather/x")
	denied_by(d, "role.not_allowed")
}

test_role_not_allowed_tool_outside_role if {
	d := authz.allow with input as call(identity("helpdesk", ["support"], "acme"), tool("billing", false), "GET", "/tools/billing/x")
		with data.portcullis.agents.helpdesk.tools as ["billing"]
	denied_by(d, "role.not_allowed")
}

test_admin_wildcard_grants_any_tool if {
	d := authz.allow with input as call(identity("helpdesk", ["admin"], "acme"), tool("billing", true), "POST", "/tools/billing/x")
		with data.portcullis.agents.helpdesk.tools as ["billing"]
	d.allowed == true
}

# --- tenant.mismatch --------------------------------------------------------------------------

test_tenant_mismatch_in_path if {
	d := authz.allow with input as call(support, tool("tickets", false), "GET", "/tools/tickets/tenants/globex/items")
	denied_by(d, "tenant.mismatch")
	d.reason == "The request names tenant \"globex\" but the caller belongs to tenant \"acme\"."
}

test_tenant_match_in_path_allowed if {
	d := authz.allow with input as call(support, tool("tickets", false), "GET", "/tools/tickets/tenants/acme/items")
	d.allowed == true
}

test_tenant_mismatch_in_body if {
	inp := object.union(call(support, tool("tickets", true), "POST", "/tools/tickets/items"), {"parsed_body": {"tenant": "globex", "title": "x"}})
	d := authz.allow with input as inp
	denied_by(d, "tenant.mismatch")
}

test_tenant_mismatch_in_form_body if {
	inp := object.union(call(support, tool("tickets", true), "POST", "/tools/tickets/items"), {"parsed_body": {"tenant": ["acme", "globex"]}})
	d := authz.allow with input as inp
	denied_by(d, "tenant.mismatch")
}

test_tenant_match_in_body_allowed if {
	inp := object.union(call(support, tool("tickets", true), "POST", "/tools/tickets/items"), {"parsed_body": {"tenant": "acme"}})
	d := authz.allow with input as inp
	d.allowed == true
}

test_tenant_mismatch_in_mcp_arguments if {
	d := authz.allow with input as mcp_call(support, "search_docs", {"query": "q", "tenant": "globex"})
	denied_by(d, "tenant.mismatch")
}

test_tenant_mismatch_when_caller_has_no_tenant if {
	d := authz.allow with input as call(identity("helpdesk", ["support"], null), tool("tickets", false), "GET", "/tools/tickets/tenants/acme/items")
	denied_by(d, "tenant.mismatch")
	d.reason == "The request names tenant \"acme\" but the caller belongs to tenant (none)."
}

test_tenant_not_named_no_mismatch if {
	not "tenant.mismatch" in rules(mcp_call(support, "search_docs", {"query": "q"}))
}

# --- role.read_only ---------------------------------------------------------------------------

test_read_only_viewer_mutating_http if {
	d := authz.allow with input as call(identity("helpdesk", ["viewer"], "acme"), tool("tickets", true), "POST", "/tools/tickets/tenants/acme/items")
	denied_by(d, "role.read_only")
}

test_read_only_viewer_reading_allowed if {
	d := authz.allow with input as call(identity("helpdesk", ["viewer"], "acme"), tool("tickets", false), "GET", "/tools/tickets/tenants/acme/items")
	d.allowed == true
}

test_read_only_viewer_mutating_mcp_tool if {
	d := authz.allow with input as mcp_call(viewer, "delete_doc", {"id": "d1"})
	denied_by(d, "role.read_only")
}

test_read_only_viewer_unknown_mcp_tool_counts_as_mutating if {
	d := authz.allow with input as mcp_call(viewer, "drop_everything", {})
	denied_by(d, "role.read_only")
}

test_read_only_viewer_search_docs_allowed if {
	d := authz.allow with input as mcp_call(viewer, "search_docs", {"query": "q"})
	d.allowed == true
}

test_read_only_not_raised_with_one_writer_role if {
	d := authz.allow with input as mcp_call(identity("helpdesk", ["viewer", "support"], "acme"), "delete_doc", {"id": "d1"})
	d.allowed == true
}

# --- several denials --------------------------------------------------------------------------

test_first_denial_is_deterministic if {
	# agent not bound (3), tenant mismatch (5) and read-only (6) all apply: 3 is reported.
	inp := call(identity("reporter", ["viewer"], "acme"), tool("tickets", true), "POST", "/tools/tickets/tenants/globex/items")
	rules(inp) == {"agent.not_bound", "tenant.mismatch", "role.read_only"}
	d := authz.allow with input as inp
	denied_by(d, "agent.not_bound")
}

test_several_tenant_mismatches_single_denial if {
	inp := object.union(call(support, tool("tickets", true), "POST", "/tools/tickets/tenants/globex/items"), {"parsed_body": {"tenant": "initech"}})
	d := authz.allow with input as inp
	denied_by(d, "tenant.mismatch")
	d.reason == "The request names tenant \"globex\" but the caller belongs to tenant \"acme\"."
}

# --- revocation -------------------------------------------------------------------------------

revocations(jti, subjects, agents) := {"jti": jti, "subjects": subjects, "agents": agents}

with_jti(ident, jti) := object.union(ident, {"jti": jti})

test_revoked_token_is_denied_first if {
	inp := call(with_jti(support, "tok-1"), tool("weather", false), "GET", "/tools/weather/forecast")
	d := authz.allow with input as inp with data.portcullis.revoked as revocations(["tok-1"], [], [])
	denied_by(d, "identity.revoked")
	contains(d.reason, "token")
}

test_other_token_of_the_same_user_is_allowed if {
	inp := call(with_jti(support, "tok-2"), tool("weather", false), "GET", "/tools/weather/forecast")
	d := authz.allow with input as inp with data.portcullis.revoked as revocations(["tok-1"], [], [])
	d.allowed == true
}

test_revoked_subject_is_denied_with_any_token if {
	inp := call(with_jti(support, "tok-3"), tool("weather", false), "GET", "/tools/weather/forecast")
	d := authz.allow with input as inp with data.portcullis.revoked as revocations([], ["alice"], [])
	denied_by(d, "identity.revoked")
	contains(d.reason, "user")
}

test_revoked_agent_is_denied_even_without_a_jwt if {
	mtls_viewer := object.union(viewer, {"user": null, "methods": ["mtls"], "jti": null})
	inp := call(mtls_viewer, tool("weather", false), "GET", "/tools/weather/forecast")
	d := authz.allow with input as inp with data.portcullis.revoked as revocations([], [], ["reporter"])
	denied_by(d, "identity.revoked")
	contains(d.reason, "agent")
}

test_revocation_wins_over_other_denials if {
	inp := call(with_jti(viewer, "tok-4"), tool("tickets", true), "POST", "/tools/tickets/tenants/globex/tickets")
	d := authz.allow with input as inp with data.portcullis.revoked as revocations(["tok-4"], [], [])
	denied_by(d, "identity.revoked")
}

test_null_jti_or_user_never_match if {
	anon := object.union(support, {"user": null, "jti": null})
	inp := call(anon, tool("weather", false), "GET", "/tools/weather/forecast")
	d := authz.allow with input as inp with data.portcullis.revoked as revocations([null], [null], [])
	d.allowed == true
}

test_no_revocation_list_allows if {
	inp := call(with_jti(support, "tok-5"), tool("weather", false), "GET", "/tools/weather/forecast")
	d := authz.allow with input as inp with data.portcullis.revoked as {}
	d.allowed == true
}

test_revoked_never_permitted_even_if_denials_were_empty if {
	inp := call(with_jti(support, "tok-6"), tool("weather", false), "GET", "/tools/weather/forecast")
	not authz.permitted with input as inp with data.portcullis.revoked as revocations(["tok-6"], [], []) with authz.denials as set()
}

# --- MCP tools, prompts and resources ---------------------------------------------------------

mcp_input(ident, mcp) := object.union(call(ident, tool("docs", false), "POST", "/tools/docs/mcp"), {"mcp": mcp})

# The input of a listed item, as the gateway builds it (see the header of authz.rego).
listed_tool(ident, name) := mcp_input(ident, {"method": "tools/call", "tool": name, "arguments": null, "id": null, "prompt": null, "resource": null, "resource_template": null})

listed_prompt(ident, name) := mcp_input(ident, {"method": "prompts/get", "tool": null, "arguments": null, "id": null, "prompt": name, "resource": null, "resource_template": null})

listed_resource(ident, uri) := mcp_input(ident, {"method": "resources/read", "tool": null, "arguments": null, "id": null, "prompt": null, "resource": uri, "resource_template": null})

listed_template(ident, t) := mcp_input(ident, {"method": "resources/read", "tool": null, "arguments": null, "id": null, "prompt": null, "resource": null, "resource_template": t})

admin := identity("helpdesk", ["admin"], "acme")

allows(inp) if {
	d := authz.allow with input as inp
	d.allowed == true
}

denies(inp, rule) if {
	d := authz.allow with input as inp
	denied_by(d, rule)
}

test_list_requests_themselves_are_allowed if {
	every m in ["tools/list", "prompts/list", "resources/list", "resources/templates/list"] {
		d := authz.allow with input as mcp_input(viewer, {"method": m, "id": 1, "tool": null, "arguments": null, "prompt": null, "resource": null})
		d.allowed == true
	}
}

test_listed_tools_differ_by_role if {
	allows(listed_tool(viewer, "search_docs"))
	not allows(listed_tool(viewer, "delete_doc"))
	allows(listed_tool(support, "search_docs"))
	allows(listed_tool(support, "delete_doc"))
}

test_tool_outside_the_roles_mcp_tools_is_denied if {
	# A read-only tool the viewer's MCP section does not name.
	inp := listed_tool(viewer, "list_docs")
	d := authz.allow with input as inp with data.portcullis.tools.docs.mcp_tools.list_docs as {"mutating": false}
	denied_by(d, "mcp.tool_not_allowed")
}

test_role_without_mcp_section_keeps_every_tool_but_no_prompt if {
	auditor := identity("helpdesk", ["auditor"], "acme")
	roles := object.union(data.portcullis.roles, {"auditor": {"read_only": false, "tools": ["docs"]}})
	t := authz.allow with input as listed_tool(auditor, "delete_doc") with data.portcullis.roles as roles
	t.allowed == true
	d := authz.allow with input as listed_prompt(auditor, "summarize_doc") with data.portcullis.roles as roles
	denied_by(d, "mcp.prompt_not_allowed")
}

test_prompts_by_role if {
	allows(listed_prompt(viewer, "summarize_doc"))
	denies(listed_prompt(viewer, "draft_reply"), "mcp.prompt_not_allowed")
	allows(listed_prompt(support, "draft_reply"))
	allows(listed_prompt(admin, "anything"))
}

test_prompt_denial_reason_names_the_prompt if {
	d := authz.allow with input as listed_prompt(viewer, "draft_reply")
	d.reason == "None of the caller's roles grants prompt \"draft_reply\" of tool \"docs\"."
}

test_prompts_get_without_a_name_is_denied if {
	d := authz.allow with input as mcp_input(viewer, {"method": "prompts/get", "id": 3, "tool": null, "arguments": null, "prompt": null, "resource": null})
	denied_by(d, "mcp.prompt_not_allowed")
}

test_prompt_completion_is_judged_like_the_prompt if {
	inp := mcp_input(viewer, {"method": "completion/complete", "id": 4, "tool": null, "arguments": null, "prompt": "draft_reply", "resource": null})
	denies(inp, "mcp.prompt_not_allowed")
}

test_resources_by_prefix if {
	allows(listed_resource(viewer, "docs://public/handbook.md"))
	denies(listed_resource(viewer, "docs://internal/salaries.md"), "mcp.resource_not_allowed")
	allows(listed_resource(support, "docs://internal/salaries.md"))
	denies(listed_resource(support, "docs://secret/x"), "mcp.resource_not_allowed")
	allows(listed_resource(admin, "file:///anything"))
}

test_resource_prefix_cannot_be_escaped if {
	every uri in [
		"docs://public/../internal/salaries.md",
		"docs://public/./../internal/x",
		"docs://public/%2e%2e/internal/x",
		"docs://public/%2E%2E%2Finternal",
		"docs://public/..\\internal\\x",
		"docs://public/..",
	] {
		denies(listed_resource(viewer, uri), "mcp.resource_not_allowed")
	}
}

test_resource_prefix_is_case_sensitive if {
	denies(listed_resource(viewer, "DOCS://public/handbook.md"), "mcp.resource_not_allowed")
}

test_resources_read_without_a_uri_is_denied if {
	d := authz.allow with input as mcp_input(viewer, {"method": "resources/read", "id": 5, "tool": null, "arguments": null, "prompt": null, "resource": null})
	denied_by(d, "mcp.resource_not_allowed")
}

test_resource_subscribe_is_judged_like_a_read if {
	d := authz.allow with input as mcp_input(viewer, {"method": "resources/subscribe", "id": 6, "tool": null, "arguments": null, "prompt": null, "resource": "docs://internal/x"})
	denied_by(d, "mcp.resource_not_allowed")
}

test_templates_by_literal_prefix if {
	allows(listed_template(viewer, "docs://public/{path}"))
	# The literal part does not stay inside the viewer's prefix: the template could reach anything.
	denies(listed_template(viewer, "docs://{section}/x"), "mcp.resource_not_allowed")
	denies(listed_template(viewer, "docs://internal/{id}"), "mcp.resource_not_allowed")
	allows(listed_template(support, "docs://internal/{id}"))
	allows(listed_template(admin, "{+anything}"))
}

test_template_literal_cannot_escape if {
	denies(listed_template(viewer, "docs://public/../internal/{id}"), "mcp.resource_not_allowed")
}

test_mcp_names_never_permitted_even_if_denials_were_empty if {
	not authz.permitted with input as listed_prompt(viewer, "draft_reply") with authz.denials as set()
	not authz.permitted with input as listed_resource(viewer, "docs://internal/x") with authz.denials as set()
	not authz.permitted with input as listed_template(viewer, "docs://{x}") with authz.denials as set()
}
