package envoy.authz_test

import data.envoy.authz

# --- fixtures -------------------------------------------------------------------------------

treasury := identity("treasury", ["support"], "acme")

transfer(ident, body, facts) := object.union(
	call(ident, tool("payments", true), "POST", "/tools/payments/transfers"),
	{"parsed_body": body, "facts": facts},
)

export(ident, facts) := object.union(call(ident, tool("exports", false), "GET", "/tools/exports/transactions"), {"facts": facts})

# --- payments -------------------------------------------------------------------------------

test_transfer_to_new_counterparty_denied_with_actionable_reason if {
	d := authz.allow with input as transfer(treasury, {"counterparty": "globex", "amount": 10}, {"paid_counterparty": false})
	denied_by(d, "payments.new_counterparty")
	contains(d.reason, "\"globex\"")
	contains(d.reason, "\"treasury\"")
	contains(d.reason, "approve")
}

test_transfer_to_paid_counterparty_allowed if {
	d := authz.allow with input as transfer(treasury, {"counterparty": "globex", "amount": 10}, {"paid_counterparty": true})
	d.allowed == true
}

test_transfer_to_approved_counterparty_allowed_without_fact if {
	d := authz.allow with input as transfer(support, {"counterparty": "acme-supplies", "amount": 10}, {"paid_counterparty": false})
	d.allowed == true
}

test_approval_is_per_agent if {
	# acme-supplies is approved for helpdesk, not for treasury.
	d := authz.allow with input as transfer(treasury, {"counterparty": "acme-supplies", "amount": 10}, {"paid_counterparty": false})
	denied_by(d, "payments.new_counterparty")
}

test_transfer_with_missing_fact_denied if {
	# No facts at all (a gateway without the fact configured): never an allow.
	inp := object.remove(transfer(treasury, {"counterparty": "globex", "amount": 1}, {}), ["facts"])
	d := authz.allow with input as inp
	denied_by(d, "payments.new_counterparty")
	denied_by(authz.allow, "payments.new_counterparty") with input as transfer(treasury, {"counterparty": "globex", "amount": 1}, {})
}

test_transfer_fact_must_be_true_not_truthy if {
	denied_by(authz.allow, "payments.new_counterparty") with input as transfer(treasury, {"counterparty": "globex", "amount": 1}, {"paid_counterparty": 1})
	denied_by(authz.allow, "payments.new_counterparty") with input as transfer(treasury, {"counterparty": "globex", "amount": 1}, {"paid_counterparty": "true"})
}

test_transfer_without_string_counterparty_denied if {
	denied_by(authz.allow, "payments.counterparty_missing") with input as transfer(treasury, {"amount": 1}, {})
	denied_by(authz.allow, "payments.counterparty_missing") with input as transfer(treasury, {"counterparty": ["globex"], "amount": 1}, {"paid_counterparty": true})
	denied_by(authz.allow, "payments.counterparty_missing") with input as transfer(treasury, null, {"paid_counterparty": true})
}

test_payments_reads_are_not_transfers if {
	inp := object.union(call(treasury, tool("payments", false), "GET", "/tools/payments/transfers"), {"facts": {}})
	d := authz.allow with input as inp
	d.allowed == true
}

test_transfers_never_permitted_even_if_denials_were_empty if {
	inp := transfer(treasury, {"counterparty": "globex", "amount": 1}, {"paid_counterparty": false})
	not authz.permitted with input as inp with authz.denials as set()
}

test_long_counterparty_is_cut_in_the_reason if {
	long := concat("", [x | some _ in numbers.range(1, 300); x := "z"])
	d := authz.allow with input as transfer(treasury, {"counterparty": long, "amount": 1}, {"paid_counterparty": false})
	denied_by(d, "payments.new_counterparty")
	count(d.reason) < 400
}

# --- exports --------------------------------------------------------------------------------

test_exports_under_the_hourly_limit_allowed if {
	d := authz.allow with input as export(treasury, {"exports_last_hour": 19})
	d.allowed == true
}

test_twenty_first_export_denied_with_429 if {
	d := authz.allow with input as export(treasury, {"exports_last_hour": 20})
	d.allowed == false
	d.http_status == 429
	d.rule == "exports.hourly_limit"
	contains(d.reason, "20 exports")
	contains(d.reason, "wait")
}

test_export_limit_from_data if {
	d := authz.allow with input as export(treasury, {"exports_last_hour": 3}) with data.portcullis.limits.exports_per_hour as 3
	d.http_status == 429
}

test_export_without_count_denied if {
	denied_by(authz.allow, "exports.not_counted") with input as export(treasury, {})
	denied_by(authz.allow, "exports.not_counted") with input as export(treasury, {"exports_last_hour": "0"})
}

test_other_tools_ignore_facts if {
	d := authz.allow with input as call(support, tool("weather", false), "GET", "/tools/weather/forecast")
	d.allowed == true
}
