#!/usr/bin/env bash
# The trace viewer in a real browser. `serve` receives a publish and a search from three
# node processes (real opentelemetry-otlp exporters over gRPC) and a hostile span over
# OTLP/JSON; headless Chromium loads the viewer and scripts/browser_check.py checks the
# list, the waterfall (one bar per span in time order, an axis), a TraceQL query, a
# trace arriving after the page loaded, the hostile name shown as text, and the
# validation's static traces.html; it times the list with 10,000 traces and a 5,000-span
# trace and writes screenshots to docs/screenshots/. `serve` runs with the marketplace's
# contract: the findings on spans, the contract page, the metrics and logs pages too.
#
# Run by .ci/run. Installs Debian's chromium (and python3) when missing; `cargo test`
# itself never needs them. Usage: scripts/browser-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
  echo "installing chromium and python3 (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium python3 >/dev/null
fi

cargo build --locked --quiet -p p2p-otel-cli
bin=target/debug/p2p-otel-testkit
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
field() { grep -o "$2=[^ ]*" "$1" | head -1 | cut -d= -f2; }
# Waits for a line (follows the file as it grows: no polling), 60 s at most. The file is
# created by the caller before the process starts: a background process opens its own
# output only once it runs, which may be after the wait began.
ready() { timeout 60 grep -q -m1 "$2" <(tail -n +1 -f "$1") || { echo "no '$2' in $1:" >&2; cat "$1" >&2; exit 1; }; }

: >"$work/serve.out"
"$bin" serve --grpc 127.0.0.1:0 --http 127.0.0.1:0 --out "$work/serve" \
  --contract crates/marketplace/contract >"$work/serve.out" 2>&1 &
pids+=($!)
ready "$work/serve.out" listening
collector="$(field "$work/serve.out" grpc)"
viewer="$(field "$work/serve.out" http)"

start_node() { # name seed [bootstrap]
  local extra=()
  [ -n "${3:-}" ] && extra=(--bootstrap "$3")
  : >"$work/$1.out"
  "$bin" node --listen /ip4/127.0.0.1/tcp/0 --seed "$2" --profile test --otlp-endpoint "$collector" \
    --control 127.0.0.1:0 "${extra[@]}" >"$work/$1.out" 2>&1 &
  pids+=($!)
  ready "$work/$1.out" control=
}
start_node a 1
a_addr="$(field "$work/a.out" listen | cut -d, -f1)/p2p/$(field "$work/a.out" peer_id)"
start_node b 2 "$a_addr"
start_node c 3 "$a_addr"
a="$(field "$work/a.out" control)"; b="$(field "$work/b.out" control)"; c="$(field "$work/c.out" control)"

python3 - "$a" "$b" "$c" <<'PY'
import json, sys, urllib.request
def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")
a, b, c = sys.argv[1:]
post(f"{a}/wait", {"topic_peers": 2, "timeout_ms": 30000})
post(f"{a}/publish", {"id": "acme/viewer", "version": "1.0.0", "title": "seen in the viewer"})
for node in (b, c):
    post(f"{node}/wait", {"packages": 1, "timeout_ms": 30000})
found = post(f"{b}/search", {"text": "viewer"})
assert "acme/viewer" in json.dumps(found), found
for node in (a, b, c):
    post(f"{node}/flush", {})
PY

# The validation's static page, from the same binary.
"$bin" --out "$work/validation" --time-scale 3 >"$work/validation.out" 2>&1 || { cat "$work/validation.out" >&2; exit 1; }

python3 scripts/browser_check.py --serve "$viewer" --nodes "$a,$b,$c" \
  --static-page "$work/validation/traces.html" --screenshots docs/screenshots --profile "$work/profile"
