# Reference policy for the OPA-Envoy comparison in the benchmark (scenario F).
#
# It does in Rego what portcullis does for the benchmark's Check request, so both sides do
# comparable work: verify the bearer JWT (ES256 signature against the same JWKS, issuer,
# audience, expiry), resolve the tool from the path, apply the same agent-to-tool bindings and
# role allow-list (policies/data.json), check the tenant named in the path, and on allow return
# the headers to inject (tool credential, tenant) and the caller headers to strip.
#
# Data: data.portcullis (policies/data.json) and data.bench (written by the benchmark: jwks as a
# JSON string, the issuer, audience and the weather tool's API key).
package envoy.authz

cfg := data.portcullis

default allow := {"allowed": false, "http_status": 403}

allow := {
	"allowed": true,
	"headers": {
		"x-api-key": data.bench.weather_api_key,
		"x-portcullis-tenant": claims.tenant,
	},
	"request_headers_to_remove": ["authorization", "x-user-id", "x-forwarded-user"],
	"dynamic_metadata": {"tool": tool, "agent": claims.azp, "user": claims.sub, "tenant": claims.tenant},
} if {
	agent_bound
	role_grants_tool
	not tenant_mismatch
}

bearer := t if {
	h := input.attributes.request.http.headers.authorization
	startswith(lower(h), "bearer ")
	t := trim_space(substring(h, 7, -1))
}

claims := payload if {
	[valid, _, payload] := io.jwt.decode_verify(bearer, {
		"cert": data.bench.jwks,
		"alg": "ES256",
		"iss": data.bench.issuer,
		"aud": data.bench.audience,
	})
	valid
}

tool := input.parsed_path[1] if input.parsed_path[0] == "tools"

agent_bound if tool in cfg.agents[claims.azp].tools

role_grants_tool if {
	some r in claims.roles
	some t in cfg.roles[r].tools
	t in {"*", tool}
}

tenant_mismatch if {
	some i
	input.parsed_path[i] == "tenants"
	input.parsed_path[i + 1] != claims.tenant
}
