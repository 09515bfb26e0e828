#!/usr/bin/env bash
# Renders traces.html in headless Chromium and checks the waterfall was drawn: the
# page's script counts the bars it drew into <body data-rendered="N">, and a screenshot
# is written beside the report for a human look.
#
# Needs Debian's chromium (`apt-get install chromium`); not part of .ci/run, which must
# work with only the Rust toolchain. Usage: scripts/check-waterfall.sh [report folder]
set -euo pipefail
folder="${1:-target/p2p-otel-validation}"
page="$(cd "$folder" && pwd)/traces.html"
[ -f "$page" ] || { echo "no $page: run 'cargo run --release' first" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --user-data-dir="$profile")
dom="$(chromium "${flags[@]}" --dump-dom "file://$page" 2>/dev/null)"
bars="$(grep -o 'data-rendered="[0-9]*"' <<<"$dom" | grep -o '[0-9]*' || true)"
chromium "${flags[@]}" --window-size=1400,900 --screenshot="$folder/traces.png" "file://$page" >/dev/null 2>&1
if [ -z "$bars" ] || [ "$bars" -eq 0 ]; then
  echo "FAIL: the waterfall drew no bars" >&2
  exit 1
fi
echo "PASS: the waterfall drew $bars bars; screenshot: $folder/traces.png"
