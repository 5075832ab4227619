# Rules that read what the gateway remembers (`input.facts`, see the top-level `facts` and
# `tools[].facts` of the gateway configuration): facts of earlier calls that completed (allowed,
# the tool answered 2xx). A fact the call has no key for (a missing argument, no agent) is
# undefined, so every rule here allows only when the fact says so, never when it is missing.
#
#   payments: a transfer (any state-changing call of the payments tool) to a counterparty this
#     agent has never paid (`input.facts.paid_counterparty`) is refused unless a human approved
#     that counterparty for the agent (`data.portcullis.approvals.<agent>`: a list of
#     counterparties). After one completed transfer the counterparty is known to that agent only.
#   exports: at most `data.portcullis.limits.exports_per_hour` (default 20) exports per agent per
#     hour (`input.facts.exports_last_hour`); the denial is a 429 with a reason to wait.
package envoy.authz

# HTTP status of a denial whose rule is not a plain 403.
denial_status := {"exports.hourly_limit": 429}

# Positive conditions of these rules, also checked in `permitted`.
facts_ok if {
	transfer_ok
	export_ok
}

# --- payments -----------------------------------------------------------------------------------

transfer_call if {
	input.tool.name == "payments"
	input.tool.mutating == true
}

counterparty := input.parsed_body.counterparty

# Helper rules, not inline calls: `not is_string(x)` is undefined when x is missing.
counterparty_named if is_string(counterparty)

transfer_ok if not transfer_call

transfer_ok if {
	transfer_call
	is_string(counterparty)
	known_counterparty
}

known_counterparty if input.facts.paid_counterparty == true

known_counterparty if {
	is_string(input.identity.agent)
	counterparty in cfg.approvals[input.identity.agent]
}

denials contains [11, "payments.counterparty_missing", "A transfer must name its counterparty as a string (\"counterparty\" in the JSON body)."] if {
	identified
	transfer_call
	not counterparty_named
}

denials contains [12, "payments.new_counterparty", reason] if {
	identified
	transfer_call
	is_string(counterparty)
	not known_counterparty
	reason := concat("", [
		"Agent ", quote(caller_agent), " has never paid counterparty ", quote(substring(counterparty, 0, 100)),
		": a first transfer to a new counterparty needs a human's approval. Ask an operator to approve this counterparty for the agent, then retry; once a transfer to it has completed, later ones need no approval.",
	])
}

# --- exports ------------------------------------------------------------------------------------

export_call if input.tool.name == "exports"

exports_per_hour := object.get(object.get(cfg, "limits", {}), "exports_per_hour", 20)

export_counted if is_number(input.facts.exports_last_hour)

export_ok if not export_call

export_ok if {
	export_call
	is_number(input.facts.exports_last_hour)
	input.facts.exports_last_hour < exports_per_hour
}

denials contains [13, "exports.hourly_limit", reason] if {
	identified
	export_call
	n := input.facts.exports_last_hour
	is_number(n)
	n >= exports_per_hour
	reason := concat("", [
		"Agent ", quote(caller_agent), " has made ", format_int(n, 10), " exports in the last hour, the most allowed (",
		format_int(exports_per_hour, 10), " per hour); wait before exporting again.",
	])
}

denials contains [13, "exports.not_counted", "Exports are counted per agent, and this call has no agent identity to count it against."] if {
	identified
	export_call
	not export_counted
}
