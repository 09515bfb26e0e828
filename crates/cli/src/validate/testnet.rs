//! `validate --nodes-from FILE`: a testnet's nodes, started elsewhere (other machines,
//! systemd units, `scripts/testnet.sh`), driven through their control APIs while their
//! telemetry comes to this run's receiver — directly, or through an OpenTelemetry
//! Collector whose OTLP exporter points here. The nodes keep their own settings and
//! their history, so the checks are those a long-lived network can show: every node
//! answers and is connected; a package published on one node reaches every other; a
//! search from another node finds it in one trace across processes, its handlers under
//! remote parents.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::node::api;

use super::Criterion;
use p2p_otel_testkit::model::Value;
use p2p_otel_testkit::process::Control;
use p2p_otel_testkit::receiver::OtlpReceiver;
use p2p_otel_testkit::tree::TraceSet;
use p2p_otel_testkit::SpanSource;

/// How long a testnet gets for each wait: production timings (a 1 s gossip heartbeat,
/// 5 s batch exports) and real networks.
const WAIT: Duration = Duration::from_secs(60);

/// The control endpoints in `text`: one per line, as a URL (`http://10.0.0.2:7000`) or
/// as a node's ready line (`node peer_id=… control=http://… …`); blank lines and `#`
/// comments skipped.
pub(super) fn endpoints(text: &str) -> Result<Vec<Control>, String> {
    let mut nodes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let url = match line.strip_prefix("node ") {
            Some(fields) => fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix("control="))
                .ok_or_else(|| {
                    format!(
                        "line {}: a ready line without control=: {line:?}",
                        number + 1
                    )
                })?,
            None => line,
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "line {}: {url:?} is not a control URL (http://host:port) nor a node's ready line",
                number + 1
            ));
        }
        nodes.push(Control::new(url));
    }
    if nodes.len() < 2 {
        return Err(format!(
            "{} node(s) listed: a testnet needs at least 2 (one publishes, another searches)",
            nodes.len()
        ));
    }
    Ok(nodes)
}

fn check(name: &str, passed: bool, evidence: impl Into<String>) -> Criterion {
    Criterion::new("9.3", name, passed, evidence.into())
}

/// A node's peer id, from its `/state`.
struct Known {
    control: Control,
    peer_id: String,
    packages: usize,
}

/// Runs the testnet checks; stops at the first that fails, whose evidence says why.
pub(super) async fn run(receiver: &OtlpReceiver, nodes: Vec<Control>) -> Vec<Criterion> {
    let mut checks = Vec::new();
    let mut known = Vec::new();
    let mut failures = Vec::new();
    for node in nodes {
        match node.get("/state").await {
            Ok(state) => known.push(Known {
                peer_id: state["peer_id"].as_str().unwrap_or_default().to_owned(),
                packages: state["packages"]
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or_default(),
                control: node,
            }),
            Err(error) => failures.push(error.to_string()),
        }
    }
    let answered = failures.is_empty();
    checks.push(check(
        "every listed node answers its control API",
        answered,
        if answered {
            format!(
                "{} node(s): {}",
                known.len(),
                known
                    .iter()
                    .map(|k| format!("{} at {}", k.peer_id, k.control.base_url()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            failures.join("\n")
        },
    ));
    if !answered {
        return checks;
    }
    let timeout_ms = WAIT.as_millis() as u64;
    let ready = api::Wait {
        connected_peers: 1,
        routing_peers: 1,
        topic_peers: 1,
        timeout_ms,
        ..api::Wait::default()
    };
    let connected =
        futures::future::join_all(known.iter().map(|k| k.control.post("/wait", &ready))).await;
    let unconnected: Vec<String> = connected
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    checks.push(check(
        "every node is connected, routes and subscribes to the packages topic",
        unconnected.is_empty(),
        if unconnected.is_empty() {
            "each has a connection, a routing entry and a topic subscriber".to_owned()
        } else {
            unconnected.join("\n")
        },
    ));
    if !unconnected.is_empty() {
        return checks;
    }
    let Some(reached) = publish_everywhere(&known, &mut checks).await else {
        return checks;
    };
    search_across(receiver, &known, &reached, &mut checks).await;
    checks
}

/// Publishes a package unique to this run on the first node and waits until every
/// other node indexed it; its id, or `None` when that failed (a failed check says why).
async fn publish_everywhere(known: &[Known], checks: &mut Vec<Criterion>) -> Option<String> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let id = format!("testnet/run-{stamp:x}");
    let published = known[0]
        .control
        .post(
            "/publish",
            &api::Publish {
                id: id.to_owned(),
                version: "1.0.0".to_owned(),
                title: Some("testnet validation".to_owned()),
                ..api::Publish::default()
            },
        )
        .await;
    let indexed = futures::future::join_all(known[1..].iter().map(|k| async move {
        let body = api::Wait {
            packages: k.packages + 1,
            timeout_ms: u64::try_from(WAIT.as_millis()).unwrap_or(u64::MAX),
            ..api::Wait::default()
        };
        k.control.post("/wait", &body).await
    }))
    .await;
    let missing: Vec<String> = known[1..]
        .iter()
        .zip(&indexed)
        .filter_map(|(k, r)| r.as_ref().err().map(|e| format!("{}: {e}", k.peer_id)))
        .collect();
    let passed = published.is_ok() && missing.is_empty();
    checks.push(check(
        "a package published on one node reaches every other",
        passed,
        match &published {
            Err(error) => format!("publish of {id} on {}: {error}", known[0].peer_id),
            Ok(_) if missing.is_empty() => format!(
                "{id} published on {} and indexed by {} other node(s)",
                known[0].peer_id,
                known.len() - 1
            ),
            Ok(_) => format!("{id} not indexed by:\n{}", missing.join("\n")),
        },
    ));
    passed.then_some(id)
}

/// The last node searches for `id`: it finds it, and the search is one trace with spans
/// of at least two processes, the remote handlers under remote parents.
async fn search_across(
    receiver: &OtlpReceiver,
    known: &[Known],
    id: &str,
    checks: &mut Vec<Criterion>,
) {
    let searcher = &known[known.len() - 1];
    let found = searcher
        .control
        .post(
            "/search",
            &api::Search {
                text: id.to_owned(),
                ..api::Search::default()
            },
        )
        .await;
    let hits = found
        .as_ref()
        .ok()
        .and_then(|f| f["packages"].as_array())
        .map_or(0, |p| p.iter().filter(|p| p["id"] == id).count());
    checks.push(check(
        "a search from another node finds it",
        hits == 1,
        match &found {
            Ok(answer) => format!("{} on {}: {answer}", id, searcher.peer_id),
            Err(error) => error.to_string(),
        },
    ));
    // Production nodes export in batches: ask each to export now.
    for node in known {
        let _ = node.control.post("/flush", &serde_json::Map::new()).await;
    }
    let searcher_id = Value::from(searcher.peer_id.as_str());
    let query = Value::from(id);
    let trace = receiver
        .wait_until("the search's trace with a remote handler", WAIT, |spans| {
            spans.iter().any(|search| {
                search.name == "p2p_search"
                    && search.attribute("query_text") == Some(&query)
                    && search.attribute("service.instance.id") == Some(&searcher_id)
                    && spans.iter().any(|h| {
                        h.trace_id == search.trace_id
                            && h.name == "handle_dht_query"
                            && h.parent.and_then(|p| p.remote) == Some(true)
                    })
            })
        })
        .await;
    let (passed, evidence) = match trace {
        Ok(traces) => one_trace(&traces, &query),
        Err(error) => (false, error.to_string()),
    };
    checks.push(check(
        "the search is one trace across processes, remote parents preserved",
        passed,
        evidence,
    ));
}

fn one_trace(traces: &TraceSet, query: &Value) -> (bool, String) {
    let Some(search) = traces
        .find_named("p2p_search")
        .into_iter()
        .find(|s| s.attribute("query_text") == Some(query))
    else {
        return (false, "no p2p_search span for the query".to_owned());
    };
    let trace = search.trace();
    let instances: BTreeSet<String> = trace
        .spans()
        .filter_map(|s| match s.attribute("service.instance.id") {
            Some(Value::Str(id)) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let pids = super::scenarios::pids(trace.spans());
    let handlers = trace
        .spans()
        .filter(|s| s.name() == "handle_dht_query")
        .filter(|h| h.parent().is_some_and(|p| p.name() == "send_request"))
        .count();
    (
        instances.len() >= 2 && handlers >= 1 && trace.spans().count() >= 3,
        format!(
            "{} span(s) from {} node(s) (process.pid {pids:?}); {handlers} handler(s) under a send_request of the searching node",
            trace.spans().count(),
            instances.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::endpoints;

    #[test]
    fn endpoints_are_urls_or_ready_lines() {
        let list = "# testnet\nhttp://10.0.0.1:7000\n\nnode peer_id=12D3 control=http://10.0.0.2:7000 listen=/ip4/x pid=3\n";
        let nodes = endpoints(list).unwrap();
        let urls: Vec<&str> = nodes.iter().map(|n| n.base_url()).collect();
        assert_eq!(urls, ["http://10.0.0.1:7000", "http://10.0.0.2:7000"]);
        let error = endpoints("10.0.0.1:7000\nhttp://a:1").err().unwrap();
        assert!(
            error.contains("line 1") && error.contains("not a control URL"),
            "{error}"
        );
        assert!(endpoints("http://a:1")
            .err()
            .unwrap()
            .contains("at least 2"));
        assert!(endpoints("node peer_id=x\nhttp://a:1")
            .err()
            .unwrap()
            .contains("without control="));
    }
}
