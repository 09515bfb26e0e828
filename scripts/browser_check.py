#!/usr/bin/env python3
"""The trace viewer in headless Chromium, driven over the DevTools protocol.

Called by scripts/browser-check.sh once `serve` runs and three node processes exported a
publish and a search to it. Python's standard library only: a small WebSocket client
speaks the DevTools protocol; every wait is a promise in the page that resolves when the
DOM changes (a MutationObserver), with a deadline that fails loudly.

Checks: the list shows what `serve` holds; a click opens the waterfall with one bar per
span, placed by start time, under a time axis; a TraceQL query filters the list; a trace
sent after the page loaded appears without a reload; a hostile span name renders as
text; the validation's static traces.html draws the same waterfall. Then it times the
list with 10,000 traces and a trace of 5,000 spans, and writes screenshots.
"""

import argparse
import base64
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request

TIMEOUT_S = 30


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


# ---- a minimal WebSocket client (RFC 6455), enough for the DevTools protocol ----------

class WebSocket:
    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                fail("the DevTools socket closed during the handshake")
            response += chunk
        head, self.buffer = response.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            fail(f"no WebSocket upgrade: {head!r}")

    def send(self, text):
        payload = text.encode()
        header = bytearray([0x81])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", length)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", length)
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                fail("the DevTools socket closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self):
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                fail("the browser closed the DevTools connection")
            if opcode in (0x9, 0xA):  # ping, pong: nothing to do
                continue
            message += payload
            if first & 0x80:
                return message.decode()


class Browser:
    """One Chromium, one tab, commands answered in order."""

    def __init__(self, profile):
        flags = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "--window-size=1400,900", "about:blank",
        ]
        binary = "chromium" if subprocess.run(["sh", "-c", "command -v chromium"],
                                               capture_output=True).returncode == 0 else "chromium-browser"
        self.process = subprocess.Popen([binary, *flags], stderr=subprocess.PIPE, text=True)
        url = None
        deadline = time.monotonic() + TIMEOUT_S
        lines = []
        while url is None:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stderr], [], [], max(remaining, 0))
            if not ready:
                fail("Chromium printed no DevTools address:\n" + "".join(lines))
            line = self.process.stderr.readline()
            if not line:
                fail("Chromium exited:\n" + "".join(lines))
            lines.append(line)
            if line.startswith("DevTools listening on "):
                url = line.split(" on ", 1)[1].strip()
        self.ws = WebSocket(url)
        self.next_id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        self.exceptions = []

    def call(self, method, params=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if getattr(self, "session", None) and not method.startswith("Target."):
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(self.ws.receive())
            if answer.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(answer["params"]["exceptionDetails"])
            # A Content-Security-Policy violation or a failed load is logged as an error.
            # (The bad query's 400 is the one error the checks cause on purpose.)
            if answer.get("method") == "Log.entryAdded" and answer["params"]["entry"]["level"] == "error":
                entry = answer["params"]["entry"]
                if "status of 400" not in entry.get("text", "") or "/api/search" not in entry.get("url", ""):
                    self.exceptions.append(entry)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    fail(f"{method}: {answer['error']}")
                return answer["result"]

    def evaluate(self, expression):
        """The value of `expression` (awaited if a promise); a thrown error fails the check."""
        result = self.call("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
        })
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            fail(f"in the page: {text}")
        return result["result"].get("value")

    def wait_for(self, condition, what, timeout_ms=TIMEOUT_S * 1000):
        """Resolves once `condition` (JS) is truthy, re-checked on every DOM change."""
        return self.evaluate(f"""new Promise((resolve, reject) => {{
            const check = () => {{ try {{ const v = ({condition}); if (v) {{ done(); resolve(v); }} }} catch (e) {{}} }};
            const observer = new MutationObserver(check);
            const timer = setTimeout(() => {{ observer.disconnect();
                reject(new Error('timed out waiting for ' + {json.dumps(what)} + '; the page shows: ' + document.body.innerText.slice(0, 2000))); }}, {timeout_ms});
            const done = () => {{ observer.disconnect(); clearTimeout(timer); }};
            observer.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
            check();
        }})""")

    def navigate(self, url):
        self.call("Page.navigate", {"url": url})

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))

    def close(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- talking to serve and the nodes -----------------------------------------------------

def get_json(url):
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return json.load(response)


def post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return json.loads(response.read() or b"null")


def search(serve, query="{ }"):
    return get_json(f"{serve}/api/search?limit=0&q={urllib.parse.quote(query)}")["traces"]


def otlp_span(trace_id, span_id, name, start, end, parent="", attributes=()):
    return {
        "traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name,
        "kind": 1, "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes],
        "status": {},
    }


def export(serve, spans, service="browser-check"):
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "browser-check"}, "spans": spans}],
    }]}
    post_json(f"{serve}/v1/traces", body)


def hex_id(length):
    return "".join(random.choice("0123456789abcdef") for _ in range(length - 1)) + "1"


# ---- the checks -------------------------------------------------------------------------

def check_live(browser, serve, nodes, shots):
    all_traces = search(serve)
    browser.navigate(f"{serve}/")
    browser.wait_for("document.body.dataset.ready === 'list'", "the list")
    shown = browser.wait_for(
        f"document.querySelector('#trace-count').textContent.startsWith('{len(all_traces)} ') && "
        f"document.querySelectorAll('.trace-row').length", "every trace in the list")
    print(f"ok: the list shows {len(all_traces)} traces ({shown} rows rendered)")

    # The hostile name is text: no element made from it, no script run.
    hostile = '<img src=x onerror="window.__xss=1">'
    assert_xss_free(browser, hostile)
    print("ok: a span named like markup shows as text, and nothing ran")

    # A three-node trace: a click opens its waterfall.
    three = sorted((t for t in search(serve) if len(t.get("nodes", [])) >= 3),
                   key=lambda t: t["rootTraceName"] != "p2p_publish")
    if not three:
        fail(f"no trace spans three nodes: {[(t['rootTraceName'], t.get('nodes')) for t in all_traces]}")
    trace = three[0]
    browser.screenshot(os.path.join(shots, "trace-list.png"))
    browser.evaluate(f"document.querySelector('.trace-row[data-trace-id=\"{trace['traceID']}\"]').click()")
    browser.wait_for("document.body.dataset.ready === 'trace'", "the waterfall")
    check_waterfall(browser, serve, trace["traceID"])
    # A handler on another node, selected: its details beside the waterfall.
    browser.evaluate("document.querySelector('.remote-parent').closest('.span-row').click()")
    browser.wait_for("document.querySelector('#span-details').textContent.includes('remote')",
                     "the selected span's details")
    browser.screenshot(os.path.join(shots, "trace-three-nodes.png"))

    # A query filters the list.
    query = '{ name = "p2p_search" }'
    expected = len(search(serve, query))
    browser.evaluate("location.hash = '#/'")
    browser.wait_for("document.body.dataset.ready === 'list'", "the list again")
    browser.evaluate(f"""(() => {{ const q = document.querySelector('#query');
        q.value = {json.dumps(query)}; q.dispatchEvent(new Event('input'));
        document.querySelector('#query-run').click(); }})()""")
    browser.wait_for(f"document.querySelector('#trace-count').textContent.startsWith('{expected} ')",
                     f"{expected} traces after the query")
    print(f"ok: the query {query} leaves {expected} of {len(all_traces)} traces")
    browser.evaluate(f"""(() => {{ const q = document.querySelector('#query');
        q.value = '{{ name = }}'; document.querySelector('#query-run').click(); }})()""")
    error = browser.wait_for("document.querySelector('#query-error').textContent", "the query error")
    if "invalid TraceQL query" not in error or "^" not in error:
        fail(f"the bad query's error: {error!r}")
    print("ok: a bad query shows the error with its caret")

    # A trace sent after the page loaded appears, without a reload.
    browser.evaluate("""(() => { const q = document.querySelector('#query');
        q.value = ''; document.querySelector('#query-run').click(); window.__stillHere = 1; })()""")
    browser.wait_for(f"document.querySelector('#trace-count').textContent.startsWith('{len(all_traces)} ')",
                     "the whole list")
    post_json(f"{nodes[0]}/publish", {"id": "acme/late", "version": "1.0.0", "title": "sent after load"})
    post_json(f"{nodes[0]}/flush", {})
    browser.wait_for(f"parseInt(document.querySelector('#trace-count').textContent) > {len(all_traces)}",
                     "the new trace in the list")
    if browser.evaluate("window.__stillHere") != 1:
        fail("the page reloaded")
    print("ok: a publish after the page loaded appears live")
    browser.screenshot(os.path.join(shots, "trace-list-live.png"))
    check_pages(browser, serve, shots)


def check_pages(browser, serve, shots):
    """The metrics, logs and contract pages, and the contract's findings on spans."""
    points = get_json(f"{serve}/api/metrics")["points"]
    browser.evaluate("location.hash = '#/metrics'")
    browser.wait_for("document.body.dataset.ready === 'metrics'", "the metrics page")
    charts = browser.evaluate("document.querySelectorAll('canvas.metric-chart').length")
    names = {p["name"] for p in points}
    if names and charts == 0:
        fail(f"{len(points)} metric points of {sorted(names)}, no chart")
    print(f"ok: the metrics page draws {charts} series of {len(names)} metrics")
    browser.screenshot(os.path.join(shots, "metrics.png"))
    browser.evaluate("location.hash = '#/logs'")
    browser.wait_for("document.body.dataset.ready === 'logs'", "the logs page")
    records = len(get_json(f"{serve}/api/logs")["records"])
    rows = browser.wait_for("document.querySelectorAll('.log-row').length", "the log rows")
    assert_xss_free(browser, "<b>failed</b>", rows=".log-row")
    browser.evaluate("document.querySelector('.log-trace-link').click()")
    browser.wait_for("document.body.dataset.ready === 'trace' && document.querySelector('#span-details').textContent.includes('onerror')",
                     "the log's span, from its link")
    print(f"ok: the logs page lists {rows} of {records} records, as text, each linked to its span")
    browser.evaluate("location.hash = '#/contract'")
    browser.wait_for("document.body.dataset.ready === 'contract' && document.querySelector('#contract-coverage')",
                     "the contract page")
    coverage = browser.evaluate("document.querySelector('#contract-coverage').textContent")
    groups = browser.evaluate("document.querySelectorAll('tr.contract-group').length")
    if "%" not in coverage or groups == 0:
        fail(f"the contract page: coverage {coverage!r}, {groups} groups")
    print(f"ok: the contract page shows coverage {coverage} over {groups} groups")
    browser.screenshot(os.path.join(shots, "contract.png"))
    # The hostile span is no span the contract declares: a finding on it.
    hostile = [t for t in search(serve) if t["rootServiceName"] == "hostile"][0]
    browser.evaluate(f"location.hash = '#/trace/{hostile['traceID']}'")
    browser.wait_for("document.body.dataset.ready === 'trace' && document.querySelector('.finding-badge')",
                     "a finding badge on the undeclared span")
    browser.evaluate("document.querySelector('.span-row').click()")
    text = browser.wait_for("document.querySelector('#span-findings') && document.querySelector('#span-findings').textContent",
                            "the span's findings")
    if "undeclared" not in text and "not declared" not in text:
        fail(f"the hostile span's findings: {text!r}")
    print("ok: the contract's finding shows on the span it concerns")
    assert_xss_free(browser, '<img src=x onerror="window.__xss=1">', rows=".span-row")


def assert_xss_free(browser, hostile, rows=".trace-row"):
    browser.wait_for(f"[...document.querySelectorAll('{rows}')].some(r => r.textContent.includes({json.dumps(hostile)}))",
                     "the hostile span's row")
    if browser.evaluate("window.__xss === undefined && document.querySelectorAll('img').length === 0") is not True:
        fail("markup in a span name became an element")


def check_waterfall(browser, serve, trace_id):
    otlp = get_json(f"{serve}/api/traces/{trace_id}")
    spans = [s for rs in otlp["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    starts = {s["spanId"]: int(s["startTimeUnixNano"]) for s in spans}
    begin = min(starts.values())
    end = max(int(s["endTimeUnixNano"]) for s in spans)
    rows = browser.evaluate("""[...document.querySelectorAll('.span-row')].map(r => ({
        id: r.dataset.spanId, left: parseFloat(r.querySelector('.bar').style.left)}))""")
    if sorted(r["id"] for r in rows) != sorted(starts):
        fail(f"{len(rows)} rows for {len(spans)} spans")
    # Each bar stands where its span starts on the axis, so the bars are in time order.
    for row in rows:
        expected = (starts[row["id"]] - begin) / max(end - begin, 1000) * 100
        if abs(row["left"] - expected) > 1.0:
            fail(f"span {row['id']}: bar at {row['left']}%, its start is at {expected:.1f}%")
    by_bar = [r["id"] for r in sorted(rows, key=lambda r: r["left"])]
    by_start = sorted(starts, key=lambda s: starts[s])
    if [starts[s] for s in by_bar] != [starts[s] for s in by_start]:
        fail("the bars are not in start order")
    ticks = browser.evaluate("[...document.querySelectorAll('.axis .tick')].map(t => t.textContent)")
    if len(ticks) < 3:
        fail(f"the time axis has {len(ticks)} ticks: {ticks}")
    remote = browser.evaluate("document.querySelectorAll('.span-row .remote-parent').length")
    print(f"ok: trace {trace_id}: {len(rows)} bars in start order, axis {ticks[0]} … {ticks[-1]}, "
          f"{remote} remote-parent edge(s)")
    if remote == 0:
        fail("a three-node trace without a remote-parent edge")


def check_static(browser, page):
    browser.navigate(f"file://{os.path.abspath(page)}")
    browser.wait_for("document.body.dataset.ready === 'list'", "the static list")
    first = browser.evaluate("document.querySelector('.trace-row').dataset.traceId")
    browser.evaluate("document.querySelector('.trace-row').click()")
    browser.wait_for("document.body.dataset.ready === 'trace' && document.querySelectorAll('.axis .tick').length >= 3",
                     "the static waterfall with its axis")
    bars = browser.evaluate("document.querySelectorAll('.span-row .bar').length")
    print(f"ok: traces.html draws trace {first} with {bars} bars under a time axis")


def timed(browser, serve):
    """Time to first render and to scroll: the list with 10,000 traces, a 5,000-span trace."""
    start = 1_800_000_000_000_000_000
    batch = []
    for i in range(10_000):
        trace = f"{i + 1:032x}"
        batch.append(otlp_span(trace, f"{i + 1:016x}", f"load {i}", start + i * 1000, start + i * 1000 + 500))
        if len(batch) == 2_000:
            export(serve, batch, "load")
            batch = []
    big = hex_id(32)
    spans = [otlp_span(big, f"{1:016x}", "root", start, start + 5_000_000)]
    for i in range(2, 5_001):
        parent = f"{max(1, i // 4):016x}"
        spans.append(otlp_span(big, f"{i:016x}", f"child {i}", start + i * 900, start + i * 900 + 700, parent))
    export(serve, spans, "big")
    figures = {}
    for name, url, ready, scroller in [
        ("list of 10,000+ traces", f"{serve}/", "list", ".list-scroll, #trace-list"),
        ("trace of 5,000 spans", f"{serve}/#/trace/{big.lstrip('0')}", "trace", ".waterfall-scroll, #waterfall"),
    ]:
        browser.navigate("about:blank")
        browser.navigate(url)
        first = browser.wait_for(f"document.body.dataset.ready === '{ready}' && performance.now()", name, 60_000)
        scroll = browser.evaluate(f"""new Promise(resolve => {{
            const el = document.querySelector({json.dumps(scroller)}) || document.scrollingElement;
            const t = performance.now(); el.scrollTop = el.scrollHeight;
            requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - t))); }})""")
        figures[name] = (first, scroll)
        print(f"timed: {name}: first render {first:.0f} ms after navigation, scroll to the end {scroll:.0f} ms")
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", required=True)
    parser.add_argument("--nodes", required=True, help="control URLs, comma-separated")
    parser.add_argument("--static-page", required=True)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--profile", required=True)
    args = parser.parse_args()
    nodes = args.nodes.split(",")
    os.makedirs(args.screenshots, exist_ok=True)
    # The hostile span and a log record of it, from a plain OTLP/JSON client.
    trace, span = hex_id(32), hex_id(16)
    export(args.serve, [otlp_span(trace, span, '<img src=x onerror="window.__xss=1">', 1, 2,
                                  attributes=[("note", "<script>window.__xss=2</script>")])], "hostile")
    post_json(f"{args.serve}/v1/logs", {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "hostile"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "2", "severityNumber": 17, "severityText": "ERROR",
            "body": {"stringValue": "<b>failed</b> <img src=x onerror=\"window.__xss=3\">"},
            "traceId": trace, "spanId": span,
        }]}],
    }]})
    browser = Browser(args.profile)
    try:
        check_live(browser, args.serve, nodes, args.screenshots)
        check_static(browser, args.static_page)
        timed(browser, args.serve)
        if browser.exceptions:
            fail(f"the page threw: {browser.exceptions[0]}")
    finally:
        browser.close()
    print("PASS: the trace viewer works in Chromium")


if __name__ == "__main__":
    main()
