//! The trace viewer: a web page served at `/` on the receiver's HTTP address (so by
//! `serve`), its assets embedded in the binary, live over server-sent events
//! (`/api/stream`); and the same page as one self-contained file holding a trace set
//! ([`trace_viewer_html`]), which the validation writes as `traces.html`.
//!
//! Safe by default: the page and its API answer only requests addressed to an IP address
//! or `localhost` (a DNS-rebinding page cannot read them), send a Content-Security-Policy
//! that allows nothing but the page's own script and style, and render every name and
//! value as text.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::watch;

use super::ingest::Shared;
use super::TraceWatch;
use crate::contract::Contract;
use crate::model::spans_to_otlp;
use crate::traceql::Query;
use crate::tree::TraceSet;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// What the page may load: its own script and style, requests to its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub(crate) fn routes(stopped: watch::Receiver<bool>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(|| asset(INDEX_HTML, "text/html; charset=utf-8")))
        .route(
            "/ui/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/ui/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/api/stream",
            get(move |State(shared): State<Arc<Shared>>| stream(shared, stopped.clone())),
        )
}

/// The one gate of the page and its API (a layer on their routes, so no handler can
/// forget it): a request addressed to another host name is refused; every answer carries
/// the security headers.
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    if let Some(refused) = refuse_foreign_host(request.headers()) {
        return refused;
    }
    secured(next.run(request).await)
}

/// `None` when the request is addressed to an IP address or `localhost`; otherwise the
/// refusal. A page on another domain that resolves to 127.0.0.1 (DNS rebinding) sends
/// its own domain as `Host` and gets nothing.
fn refuse_foreign_host(headers: &HeaderMap) -> Option<Response> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        // `[::1]:4318`
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let trusted =
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok();
    if trusted {
        return None;
    }
    Some(
        (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "this receiver answers requests addressed to an IP address or localhost, not {host:?}"
            ),
        )
            .into_response(),
    )
}

/// The headers every page and API answer carries.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /api/stream`: an `event: changed` (data `{"traces": N}`) first and whenever
/// traces arrive; ends when the receiver stops, so an open page never holds a shutdown.
async fn stream(shared: Arc<Shared>, stopped: watch::Receiver<bool>) -> Response {
    let changed = |shared: &Shared| {
        Event::default()
            .event("changed")
            .data(format!("{{\"traces\":{}}}", shared.spans.trace_ids().len()))
    };
    let watch = TraceWatch::new(Arc::clone(&shared));
    let first = changed(&shared);
    let events = futures::stream::unfold(
        (Some(first), watch, shared, stopped),
        move |(pending, mut watch, shared, mut stopped)| async move {
            if let Some(event) = pending {
                return Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (None, watch, shared, stopped),
                ));
            }
            let arrived = tokio::select! {
                _ = watch.changed() => true,
                _ = stopped.wait_for(|stop| *stop) => false,
            };
            arrived.then(|| (Ok(changed(&shared)), (None, watch, shared, stopped)))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The trace viewer as one self-contained HTML file holding `traces`: the page `serve`
/// shows, its script and style inline, the traces embedded, nothing fetched. Open it from
/// disk; the list's filters and every trace's waterfall work, TraceQL search needs `serve`.
/// With a `contract`, each trace's findings are embedded and shown on their spans.
///
/// ```
/// # use p2p_otel_testkit::model::{SpanRecord, SpanId, TraceId};
/// # use p2p_otel_testkit::tree::TraceSet;
/// let traces = TraceSet::new([SpanRecord::new(TraceId::from_bytes([1; 16]), SpanId::from_bytes([2; 8]), "<b>dht_put</b>")]);
/// let page = p2p_otel_testkit::receiver::trace_viewer_html(&traces, None);
/// assert!(page.starts_with("<!DOCTYPE html>"));
/// // Data is embedded as JSON that cannot close its script element.
/// assert!(page.contains(r"\u003cb>dht_put\u003c/b>") && !page.contains("<b>dht_put"));
/// ```
pub fn trace_viewer_html(traces: &TraceSet, contract: Option<&Contract>) -> String {
    let search = match Query::parse("{ }") {
        Ok(all) => all.search_response(traces),
        Err(_) => serde_json::Value::Null,
    };
    let mut by_id = serde_json::Map::new();
    let mut findings = serde_json::Map::new();
    for trace in traces.traces() {
        let id = crate::traceql::tempo_trace_id(trace);
        let request = ExportTraceServiceRequest {
            resource_spans: spans_to_otlp(trace.records()),
        };
        if let Ok(json) = serde_json::to_value(&request) {
            by_id.insert(id.clone(), json);
        }
        if let Some(contract) = contract {
            let one = TraceSet::new(trace.records().iter().cloned());
            findings.insert(id, super::signals_api::findings_on_spans(contract, &one));
        }
    }
    let data = serde_json::json!({ "search": search, "traces": by_id, "findings": findings });
    // `<` only occurs inside JSON strings, where `\u003c` means the same: no `</script>`
    // or `<!--` in a name can end the data early.
    let data = data.to_string().replace('<', "\\u003c");
    INDEX_HTML
        .replace(
            r#"<link rel="stylesheet" href="/ui/app.css">"#,
            &format!("<style>\n{APP_CSS}\n</style>"),
        )
        .replace(
            r#"<script src="/ui/app.js"></script>"#,
            &format!(
                "<script type=\"application/json\" id=\"p2p-otel-data\">{data}</script>\n<script>\n{APP_JS}\n</script>"
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_its_assets_where_the_static_export_inlines_them() {
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/ui/app.css">"#));
        assert!(INDEX_HTML.contains(r#"<script src="/ui/app.js"></script>"#));
        let page = trace_viewer_html(&TraceSet::default(), None);
        assert!(!page.contains("/ui/app.js") && page.contains("p2p-otel-data"));
    }

    #[test]
    fn only_ip_addresses_and_localhost_are_trusted_hosts() {
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            refuse_foreign_host(&headers).is_none()
        };
        for host in [
            "127.0.0.1:4318",
            "localhost:4318",
            "LOCALHOST",
            "[::1]:4318",
            "10.0.0.7:80",
        ] {
            assert!(with_host(host), "{host}");
        }
        for host in [
            "evil.example:4318",
            "localhost.evil.example",
            "127.0.0.1.nip.io:4318",
            "",
        ] {
            assert!(!with_host(host), "{host}");
        }
    }
}
