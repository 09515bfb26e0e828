#!/usr/bin/env bash
# Generates the production artifacts from a telemetry contract (`contract generate`) and
# validates the Prometheus alerting rules with `promtool check rules`, and the rules'
# behaviour with `promtool test rules` on a synthetic series: the error-rate alert fires
# when 10 % of publishes fail and stays quiet at 1 %.
#
# Needs Debian's prometheus package (`apt-get install prometheus`, for promtool); not part
# of .ci/run, which must work with only the Rust toolchain.
# Usage: scripts/check-alerts.sh [contract folder] [output folder]
set -euo pipefail
contract="${1:-crates/marketplace/contract}"
out="${2:-target/p2p-otel-contract}"
command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus" >&2; exit 2; }
cargo run --quiet --release -- contract generate --contract "$contract" --out "$out"
promtool check rules "$out/alerts.yaml"
if [ "$contract" = "crates/marketplace/contract" ]; then
  tests="$(mktemp --suffix=.yaml)"
  trap 'rm -f "$tests"' EXIT
  cat >"$tests" <<TESTS
rule_files: [$(cd "$out" && pwd)/alerts.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'p2p_operations_total{operation="publish",status="ok"}'
        values: '0+90x30'
      - series: 'p2p_operations_total{operation="publish",status="error"}'
        values: '0+10x30'
      - series: 'p2p_operations_total{operation="search",status="ok"}'
        values: '0+99x30'
      - series: 'p2p_operations_total{operation="search",status="error"}'
        values: '0+1x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: P2POperationErrorRateHigh
        exp_alerts:
          - exp_labels: {severity: warning, operation: publish}
            exp_annotations:
              summary: More than 5 % of an operation's runs fail.
              description: '10% of p2p_operations_total over 5m had status="error"; the threshold is 0.05.'
              contract_group: metric.p2p_operations_total
TESTS
  promtool test rules "$tests"
fi
echo "PASS: $out/alerts.yaml"
