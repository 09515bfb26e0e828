#!/usr/bin/env bash
# A three-machine testnet of the reference marketplace, as the README's recipe describes,
# played on one machine: "machine C" runs the collector (`serve`), "machines" A and B run
# nodes, node A publishes, node B searches, and the script checks that `serve` received
# one search trace holding spans of both processes. On real machines, run each block on
# its own host with the host's address instead of 127.0.0.1 (and --allow-non-loopback).
#
# Needs curl; not part of .ci/run. Usage: scripts/testnet.sh [binary]
set -euo pipefail
bin="${1:-target/release/p2p-otel-testkit}"
[ -x "$bin" ] || cargo build --release --quiet
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
field() { grep -o "$2=[^ ]*" "$1" | head -1 | cut -d= -f2; }
# Waits for a line (follows the file as it grows: no polling), 30 s at most.
ready() { timeout 30 grep -q -m1 "$2" <(tail -n +1 -f "$1") || { echo "no ready line in $1:" >&2; cat "$1" >&2; exit 1; }; }

# Machine C: the collector. (A real OpenTelemetry Collector works too:
# `p2p-otel-testkit contract generate --out deploy/` writes its configuration.)
"$bin" serve --grpc 127.0.0.1:0 --http 127.0.0.1:0 --out "$work/collector" >"$work/serve.out" 2>&1 &
pids+=($!)
ready "$work/serve.out" listening
collector="$(field "$work/serve.out" grpc)"

# Machine A: a node, keyed by a file so a restart keeps its identity.
"$bin" node --listen /ip4/127.0.0.1/tcp/0 --key-file "$work/a.key" --otlp-endpoint "$collector" \
  --control 127.0.0.1:0 >"$work/a.out" 2>&1 &
pids+=($!)
ready "$work/a.out" control=
a_addr="$(field "$work/a.out" listen | cut -d, -f1)/p2p/$(field "$work/a.out" peer_id)"

# Machine B: a node bootstrapping from A.
"$bin" node --listen /ip4/127.0.0.1/tcp/0 --key-file "$work/b.key" --otlp-endpoint "$collector" \
  --control 127.0.0.1:0 --bootstrap "$a_addr" >"$work/b.out" 2>&1 &
pids+=($!)
ready "$work/b.out" control=

a="$(field "$work/a.out" control)"; b="$(field "$work/b.out" control)"
post() { curl -sS --fail-with-body -H 'content-type: application/json' -X POST "$1" -d "$2"; echo; }
post "$b/wait" '{"connected_peers": 1, "timeout_ms": 30000}' >/dev/null
post "$a/publish" '{"id": "acme/testnet", "version": "1.0.0", "title": "across machines"}'
post "$b/search" '{"text": "testnet"}' | grep -q acme/testnet || { echo "FAIL: B did not find A's package" >&2; exit 1; }

# Stop the nodes (SIGTERM flushes their telemetry), then the collector: its summary.
for pid in "${pids[@]:1}"; do kill -TERM "$pid"; wait "$pid" || true; done
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
pids=()
"$bin" check --contract crates/marketplace/contract "$work"/collector/*.jsonl | tail -1
pids_in_search="$(python3 - "$work/collector/traces.jsonl" <<'PY' 2>/dev/null || true
import json, sys
traces = {}
for line in open(sys.argv[1]):
    for rs in json.loads(line).get("resourceSpans", []):
        pid = [a["value"].get("intValue") for a in rs["resource"]["attributes"] if a["key"] == "process.pid"]
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                traces.setdefault(span["traceId"], []).append((span["name"], tuple(pid)))
for spans in traces.values():
    if any(name == "p2p_search" for name, _ in spans):
        print(len({pid for _, pid in spans}))
PY
)"
[ "$pids_in_search" = "2" ] || { echo "FAIL: the search trace holds spans of ${pids_in_search:-no} process(es), not 2" >&2; exit 1; }
echo "PASS: one search trace across the two node processes, received by the collector"
