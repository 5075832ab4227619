#!/usr/bin/env bash
# The whole suite: tools, TypeScript build, policy bundle, Rego tests, then every vitest suite
# (unit and end-to-end through a real Envoy). Every step runs even after a failure so one run
# shows everything that is broken; the exit status is non-zero if anything failed. The last line
# is the count of tests: "tests: N passed, M failed" (a failed build step counts as a failure).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN_DIR="$ROOT/.run"
mkdir -p "$RUN_DIR"

passed=0
failed=0
steps=()

note() { printf '\n==> %s\n' "$*"; }
summary() { printf '\n'; printf '%s\n' "${steps[@]}"; }
record() { # name status
  steps+=("$(printf '%-14s %s' "$1" "$2")")
}

# When started by `npm test`, npm's pretest hook may already have done some steps; skip those.
pretest=""
if [[ "${npm_lifecycle_event:-}" == "test" && -f "${npm_package_json:-}" ]]; then
  pretest="$(node -e 'process.stdout.write(String(require(process.argv[1]).scripts?.pretest ?? ""))' "$npm_package_json" 2>/dev/null || true)"
fi

step() { # name command...
  local name="$1"
  shift
  if [[ -n "$pretest" && "$pretest" == *"$*"* ]]; then
    record "$name" "ok (npm pretest)"
    return 0
  fi
  note "$name: $*"
  if "$@"; then
    record "$name" ok
  else
    record "$name" "FAILED (exit $?)"
    failed=$((failed + 1))
    return 1
  fi
}

# Without the tools nothing below can run: stop here.
if ! step tools bash scripts/install-tools.sh || ! source scripts/lib/node.sh; then
  summary
  echo "tests: 0 passed, $failed failed"
  exit 1
fi
step build npm run build
# Tests and benchmarks are strict TypeScript too (vitest itself does not type-check).
step typecheck npm run --silent typecheck
step policy-build bash scripts/build-policy.sh

note "policy-test: bash scripts/test-policy.sh"
opa_out="$RUN_DIR/opa-test.log"
if bash scripts/test-policy.sh 2>&1 | tee "$opa_out"; then status=ok; else status="FAILED"; fi
# `opa test -v` ends with "PASS: n/m" (and "FAIL: k/m" / "ERROR: ..." when some fail).
opa_pass="$(sed -n 's/^PASS: \([0-9]*\)\/\([0-9]*\)$/\1/p' "$opa_out" | tail -n1)"
opa_total="$(sed -n 's/^\(PASS\|FAIL\|ERROR\): [0-9]*\/\([0-9]*\)$/\2/p' "$opa_out" | tail -n1)"
if [[ -n "$opa_total" ]]; then
  passed=$((passed + ${opa_pass:-0}))
  failed=$((failed + opa_total - ${opa_pass:-0}))
elif [[ "$status" != ok ]]; then
  failed=$((failed + 1))
fi
record policy-test "$status${opa_total:+ (${opa_pass:-0}/$opa_total)}"

# Runs vitest with a JSON report and adds its counts; a run that fails without a failing test
# (e.g. a suite that did not load) still counts as a failure.
vitest_step() { # name node-binary vitest-args...
  local name="$1" nodebin="$2" json="$RUN_DIR/$1.json" status
  shift 2
  note "$name: $nodebin node_modules/vitest/vitest.mjs run $*"
  rm -f "$json"
  if "$nodebin" node_modules/vitest/vitest.mjs run --reporter=default --reporter=json --outputFile.json="$json" "$@"; then status=ok; else status=FAILED; fi
  if [[ -f "$json" ]]; then
    read -r v_pass v_fail v_total < <(node -e '
      const r = require(process.argv[1]);
      const failedSuites = (r.testResults ?? []).filter((f) => f.status === "failed" && (f.assertionResults ?? []).length === 0).length;
      console.log(r.numPassedTests, r.numFailedTests + failedSuites, r.numTotalTests);
    ' "$json")
    passed=$((passed + v_pass))
    failed=$((failed + v_fail))
    if [[ "$status" != ok && "$v_fail" == 0 ]]; then failed=$((failed + 1)); fi
    record "$name" "$status ($v_pass passed, $v_fail failed of $v_total, node $("$nodebin" --version))"
  else
    failed=$((failed + 1))
    record "$name" "$status (no report)"
  fi
}

# Everything on the pinned runtime (scripts/lib/node.sh).
vitest_step vitest "$(command -v node)"

summary
echo "tests: $passed passed, $failed failed"
[[ "$failed" == 0 ]]
