//! `traces.html`: one self-contained page (no CDN, works offline) drawing every trace as
//! a waterfall like Jaeger's: spans on a time axis, coloured by node, nested by depth,
//! details on click, error spans marked.

use serde::Serialize;

use p2p_otel_testkit::model::{StatusCode, Value};
use p2p_otel_testkit::tree::{SpanRef, TraceSet};

#[derive(Serialize)]
struct Row {
    name: String,
    depth: usize,
    start: u64,
    end: u64,
    node: String,
    error: bool,
    status: String,
    kind: String,
    attributes: Vec<(String, String)>,
    events: Vec<String>,
}

#[derive(Serialize)]
struct TraceRows {
    id: String,
    start: u64,
    end: u64,
    rows: Vec<Row>,
}

fn text(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

fn walk(span: SpanRef<'_>, depth: usize, rows: &mut Vec<Row>) {
    let record = span.record();
    rows.push(Row {
        name: record.name.clone(),
        depth,
        start: record.start_unix_nanos,
        end: record.end_unix_nanos.unwrap_or(record.start_unix_nanos),
        node: span
            .attribute("service.instance.id")
            .map(text)
            .unwrap_or_default(),
        error: record.status.code == StatusCode::Error,
        status: format!("{} {}", record.status.code, record.status.message),
        kind: record.kind.to_string(),
        attributes: record
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
        events: record.events.iter().map(|e| e.name.clone()).collect(),
    });
    for child in span.children() {
        walk(child, depth + 1, rows);
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>P2P traces</title>
<style>
body{font:13px system-ui,sans-serif;margin:16px;color:#222}
h2{font-size:14px;margin:18px 0 4px}
.row{display:flex;align-items:center;height:20px;cursor:pointer}
.label{width:320px;flex:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.axis{position:relative;flex:1;height:14px;background:#f4f4f4}
.bar{position:absolute;height:14px;min-width:2px;border-radius:2px}
.bar.error{outline:2px solid #d00}
.label.error{color:#d00;font-weight:bold}
.detail{display:none;margin:2px 0 6px 320px;padding:6px;background:#fafafa;border:1px solid #ddd;white-space:pre-wrap;font-family:monospace}
.row.open+.detail{display:block}
.legend span{display:inline-block;margin-right:12px}
</style></head><body>
<h1>P2P OpenTelemetry traces</h1>
<div class="legend" id="legend"></div>
<div id="traces"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
const traces = JSON.parse(document.getElementById('data').textContent);
const colours = {};
const palette = ['#4e79a7','#f28e2b','#59a14f','#b07aa1','#76b7b2','#edc948','#ff9da7','#9c755f'];
function colour(node){ if(!(node in colours)) colours[node]=palette[Object.keys(colours).length%palette.length]; return colours[node]; }
const root = document.getElementById('traces');
for (const t of traces) {
  const h = document.createElement('h2');
  const total = Math.max(1, t.end - t.start);
  h.textContent = 'trace ' + t.id + ' — ' + (total/1e6).toFixed(2) + ' ms';
  root.appendChild(h);
  for (const r of t.rows) {
    const row = document.createElement('div'); row.className = 'row';
    const label = document.createElement('div'); label.className = 'label' + (r.error ? ' error' : '');
    label.style.paddingLeft = (r.depth * 14) + 'px';
    label.textContent = r.name + (r.error ? ' ✗' : '');
    const axis = document.createElement('div'); axis.className = 'axis';
    const bar = document.createElement('div'); bar.className = 'bar' + (r.error ? ' error' : '');
    bar.style.left = ((r.start - t.start) / total * 100) + '%';
    bar.style.width = Math.max(0.2, (r.end - r.start) / total * 100) + '%';
    bar.style.background = colour(r.node);
    bar.title = r.name + ' ' + ((r.end - r.start)/1e6).toFixed(3) + ' ms on ' + r.node;
    axis.appendChild(bar); row.appendChild(label); row.appendChild(axis);
    const detail = document.createElement('div'); detail.className = 'detail';
    detail.textContent = 'node: ' + r.node + '\nkind: ' + r.kind + '\nstatus: ' + r.status + '\nduration: ' + ((r.end - r.start)/1e6).toFixed(3) + ' ms\n'
      + r.attributes.map(a => a[0] + ' = ' + a[1]).join('\n') + (r.events.length ? '\nevents: ' + r.events.join(', ') : '');
    row.addEventListener('click', () => row.classList.toggle('open'));
    root.appendChild(row); root.appendChild(detail);
  }
}
const legend = document.getElementById('legend');
for (const [node, c] of Object.entries(colours)) {
  const s = document.createElement('span'); s.innerHTML = '<b style="color:' + c + '">■</b> ';
  s.appendChild(document.createTextNode(node || 'unknown node')); legend.appendChild(s);
}
document.body.dataset.rendered = String(document.querySelectorAll('.bar').length);
</script></body></html>
"#;

/// The waterfall page for every trace in `traces`.
pub(super) fn waterfall(traces: &TraceSet) -> String {
    let data: Vec<TraceRows> = traces
        .traces()
        .iter()
        .map(|trace| {
            let mut rows = Vec::new();
            for root in trace.roots().into_iter().chain(trace.orphans()) {
                walk(root, 0, &mut rows);
            }
            let start = rows.iter().map(|r| r.start).min().unwrap_or(0);
            let end = rows.iter().map(|r| r.end).max().unwrap_or(start);
            TraceRows {
                id: trace.trace_id().to_string(),
                start,
                end,
                rows,
            }
        })
        .collect();
    // `</` inside the JSON would end the script element early.
    let json = serde_json::to_string(&data)
        .unwrap_or_else(|_| "[]".to_owned())
        .replace("</", "<\\/");
    PAGE.replace("__DATA__", &json)
}
