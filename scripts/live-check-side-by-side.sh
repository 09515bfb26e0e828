#!/usr/bin/env bash
# One OTLP stream, two judges: the validation's telemetry, forwarded request for request
# over OTLP/gRPC to Weaver's `registry live-check` (when a `weaver` binary is on the PATH,
# or WEAVER=/path/to/weaver) and to the kit's `serve --contract`; then the findings'
# counts by id and level, side by side, with what each difference is.
#
# Weaver builds from its source with cargo (https://github.com/open-telemetry/weaver,
# `cargo build --release`; its `ui/dist` folder must exist, empty is enough for
# live-check). Without it the kit's column is printed alone.
#
# Usage: scripts/live-check-side-by-side.sh [CONTRACT_DIR]
#   (default crates/marketplace/contract; OUT=folder for the reports,
#   default target/live-check-side-by-side)
set -euo pipefail
cd "$(dirname "$0")/.."

contract="${1:-crates/marketplace/contract}"
out="${OUT:-target/live-check-side-by-side}"
weaver="${WEAVER:-$(command -v weaver || true)}"

if ! command -v python3 >/dev/null 2>&1; then
  echo "installing python3 (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi

cargo build --locked --quiet --release -p p2p-otel-cli
kit=target/release/p2p-otel-testkit
rm -rf "$out" && mkdir -p "$out"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
field() { grep -o "$2=[^ ]*" "$1" | head -1 | cut -d= -f2; }
ready() { timeout 120 grep -q -m1 "$2" <(tail -n +1 -f "$1") || { echo "no '$2' in $1:" >&2; cat "$1" >&2; exit 1; }; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until something accepts connections on a loopback port (Weaver prints no ready line
# of its own before it resolved the registry).
listening() {
  python3 - "$1" <<'EOF'
import socket, sys, time
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"nothing listens on 127.0.0.1:{sys.argv[1]} after 120 s")
EOF
}

: >"$out/serve.out"
"$kit" serve --grpc 127.0.0.1:0 --http 127.0.0.1:0 --out "$out/serve" \
  --contract "$contract" >"$out/serve.out" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
ready "$out/serve.out" listening
serve_grpc="$(field "$out/serve.out" grpc)"
endpoints=(--otlp-endpoint "http://${serve_grpc#http://}")

if [ -n "$weaver" ]; then
  grpc_port="$(free_port)"
  admin_port="$(free_port)"
  "$weaver" registry live-check -r "$contract" --input-source otlp \
    --otlp-grpc-address 127.0.0.1 --otlp-grpc-port "$grpc_port" --admin-port "$admin_port" \
    --inactivity-timeout 600 --format json --no-stream --output "$out/weaver" \
    >"$out/weaver.out" 2>&1 &
  weaver_pid=$!
  pids+=("$weaver_pid")
  listening "$grpc_port"
  endpoints+=(--otlp-endpoint "http://127.0.0.1:$grpc_port")
else
  echo "no weaver on the PATH (nor WEAVER=…): the kit's column alone"
fi

"$kit" validate --out "$out/validation" --time-scale 3 "${endpoints[@]}" >"$out/validation.out" 2>&1 ||
  { echo "the validation failed:" >&2; tail -40 "$out/validation.out" >&2; exit 1; }
grep -E "forwarded to the external collector" -A1 "$out/validation.out" || true

kill -TERM "$serve_pid"
wait "$serve_pid" || true
if [ -n "$weaver" ]; then
  python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$admin_port/stop', method='POST'), timeout=60).read()" ||
    kill -TERM "$weaver_pid"
  wait "$weaver_pid" || true
fi

python3 - "$out/serve/contract.json" "$out/weaver" <<'EOF'
import collections, json, os, sys

kit_file, weaver_dir = sys.argv[1], sys.argv[2]
kit = collections.Counter()
# Findings about a metric itself (its stability): the kit counts its points, Weaver the
# metric once per request.
kit_metric = collections.Counter()
for finding in json.load(open(kit_file))["findings"]:
    key = (finding["id"], finding["level"])
    kit[key] += finding.get("occurrences", 1)
    if "metric_name" in finding.get("context", {}):
        kit_metric[key] += finding.get("occurrences", 1)

weaver = None
weaver_metric = collections.Counter()
if os.path.isdir(weaver_dir):
    weaver = collections.Counter()
    def walk(node):
        if isinstance(node, dict):
            for advice in node.get("all_advice") or []:
                weaver[(advice["id"], advice["level"])] += 1
                if "metric_name" in (advice.get("context") or {}):
                    weaver_metric[(advice["id"], advice["level"])] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    for name in sorted(os.listdir(weaver_dir)):
        path = os.path.join(weaver_dir, name)
        text = open(path).read()
        try:
            walk(json.loads(text))
        except json.JSONDecodeError:
            for line in text.splitlines():
                if line.strip():
                    walk(json.loads(line))

# What each kind of difference is (the module docs of `contract` say why).
why = {
    "missing_child": "structure: the kit's annotations, Weaver keeps them uninterpreted",
    "unexpected_child": "structure: the kit's annotations",
    "unexpected_parent": "structure: the kit's annotations",
    "missing_remote_parent": "structure: the kit's annotations",
    "missing_required_event": "structure: the kit's annotations",
    "missing_error_attribute": "structure: the kit's annotations",
    "unexpected_span_kind": "the kit checks span_kind",
    "undeclared_span": "the kit notes spans the contract lacks",
    "cardinality_exceeded": "the kit's cardinality budgets",
    "coverage_below_minimum": "the kit's coverage gate",
    "required_attribute_not_present": "spans matched to their groups (Weaver 0.25 matches only metrics and events)",
    "conditionally_required_attribute_not_present": "spans matched to their groups (Weaver 0.25 matches only metrics and events)",
    "recommended_attribute_not_present": "spans matched to their groups (Weaver 0.25 matches only metrics and events)",
    "opt_in_attribute_not_present": "spans matched to their groups (Weaver 0.25 matches only metrics and events)",
}
keys = sorted(set(kit) | set(weaver or {}), key=lambda k: ({"violation": 0, "improvement": 1, "information": 2}.get(k[1], 3), k[0]))
print()
print(f"{'finding id':<46} {'level':<12} {'weaver':>8} {'kit':>8}  note")
unexplained = []
for key in keys:
    ours = kit.get(key, 0)
    theirs = "-" if weaver is None else weaver.get(key, 0)
    note = why.get(key[0], "") if weaver is None or ours != theirs else "same"
    if weaver is not None and ours != theirs and key in kit_metric and (
        ours - kit_metric[key] == theirs - weaver_metric[key]
    ):
        note = (f"about metrics themselves: {kit_metric[key]} points (kit), "
                f"{weaver_metric[key]} metrics of requests (Weaver); the rest equal")
    elif weaver is not None and ours != theirs and not note:
        note = "UNEXPLAINED: compare the two reports"
        unexplained.append(key)
    print(f"{key[0]:<46} {key[1]:<12} {theirs:>8} {ours:>8}  {note}")
print()
print("Counts are occurrences: for Weaver one per finding on a sample; for the kit a finding's")
print("occurrences. Where they differ by design: Weaver judges a resource once per export")
print("request that carries it, the kit once per distinct resource (a node); see the `contract`")
print("module's docs, \"Weaver's judgement, and where the kit differs\".")
if unexplained:
    sys.exit(f"unexplained differences: {unexplained}")
EOF
echo "reports: $out/serve/contract.json${weaver:+ and $out/weaver/}"
