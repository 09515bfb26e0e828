//! Capture, span model, trace trees and snapshots: one test binary for this area.

use std::time::Duration;

use p2p_otel_testkit::capture::{self, SpanCaptureLayer};
use p2p_otel_testkit::model::{
    spans_from_otlp, spans_to_otlp, ParentRef, Resource, SpanId, SpanKind, SpanRecord, StatusCode,
    TraceId, Value,
};
use p2p_otel_testkit::tree::{attr, expect, ChildOrder, RenderSettings};
use p2p_otel_testkit::SpanSource;
use p2p_otel_testkit::{CaptureHandle, TraceSet};
use tracing::{field, info_span, Dispatch};
use tracing_subscriber::layer::SubscriberExt;

/// Runs `f` with a fresh capturing subscriber as the thread's default; returns the handle.
fn captured(f: impl FnOnce()) -> CaptureHandle {
    let (dispatch, handle) = capture::dispatch();
    tracing::dispatcher::with_default(&dispatch, f);
    handle
}

fn only_span(handle: &CaptureHandle) -> SpanRecord {
    let spans = handle.spans();
    assert_eq!(
        spans.len(),
        1,
        "expected one span, got:\n{}",
        handle.traces()
    );
    spans.into_iter().next().unwrap()
}

/// Snapshots live in the top-level `snapshots/` folder.
macro_rules! assert_tree_snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

mod fields {
    use super::*;

    #[test]
    fn creation_fields_keep_their_types() {
        let handle = captured(|| {
            let _span = info_span!(
                "typed",
                int = -3i64,
                small_unsigned = 7u64,
                huge_unsigned = u64::MAX,
                double = 2.5f64,
                flag = true,
                text = "hello",
                display = %"shown",
                debug = ?vec![1, 2],
            );
        });
        let span = only_span(&handle);
        let a = &span.attributes;
        assert_eq!(a["int"], Value::Int(-3));
        // As the wire carries them: tracing-opentelemetry 0.34 exports unsigned fields as text.
        assert_eq!(a["small_unsigned"], Value::from("7"));
        assert_eq!(a["huge_unsigned"], Value::Str(u64::MAX.to_string()));
        assert_eq!(a["double"], Value::Double(2.5));
        assert_eq!(a["flag"], Value::Bool(true));
        assert_eq!(a["text"], Value::from("hello"));
        assert_eq!(a["display"], Value::from("shown"));
        assert_eq!(a["debug"], Value::from("[1, 2]"));
        assert!(span.unrecorded_fields.is_empty());
    }

    #[test]
    fn late_record_is_captured_and_counts_as_recorded() {
        let handle = captured(|| {
            let span = info_span!(
                "p2p_search",
                local_results = field::Empty,
                cache_hit = false
            );
            span.record("local_results", 4);
            span.record("cache_hit", true);
        });
        let span = only_span(&handle);
        assert_eq!(span.attributes["local_results"], Value::Int(4));
        assert_eq!(
            span.attributes["cache_hit"],
            Value::Bool(true),
            "a later record overwrites"
        );
        assert!(span.unrecorded_fields.is_empty());
    }

    #[test]
    fn declared_but_never_recorded_field_is_reported() {
        let handle = captured(|| {
            let _span = info_span!(
                "p2p_search",
                query_text = "serde",
                remote_results = field::Empty,
                total_latency_ms = field::Empty,
                otel.status_code = field::Empty,
            );
        });
        let span = only_span(&handle);
        let missing: Vec<&str> = span.unrecorded_fields.iter().map(String::as_str).collect();
        assert_eq!(
            missing,
            ["remote_results", "total_latency_ms"],
            "otel.* fields are control fields"
        );
        let error = handle
            .traces()
            .expect(&expect::span().named("p2p_search").fully_recorded())
            .unwrap_err();
        assert!(
            error
                .message()
                .contains("never recorded: remote_results, total_latency_ms"),
            "{error}"
        );
        assert!(handle
            .traces()
            .render()
            .contains("! declared but never recorded: remote_results, total_latency_ms"));
    }

    #[test]
    fn otel_fields_set_name_kind_and_status() {
        let handle = captured(|| {
            let span = info_span!(
                "request",
                otel.name = "GET /packages",
                otel.kind = "client",
                otel.status_code = field::Empty,
                otel.status_description = field::Empty,
            );
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", "peer refused");
        });
        let span = only_span(&handle);
        assert_eq!(span.name, "GET /packages");
        assert_eq!(span.kind, SpanKind::Client);
        assert_eq!(span.status.code, StatusCode::Error);
        assert_eq!(span.status.message, "peer refused");
        assert!(!span.attributes.contains_key("otel.kind"));
        assert!(span.unrecorded_fields.is_empty());
    }

    #[test]
    fn error_fields_are_attributes_and_the_status_comes_from_otel_fields_as_on_the_wire() {
        let handle = captured(|| {
            let span = info_span!(
                "only_fields",
                error = field::Empty,
                error_message = field::Empty
            );
            span.record("error", true);
            span.record("error_message", "DHT query timeout after 50ms");
            let span = info_span!(
                "otel_fields",
                error = field::Empty,
                otel.status_code = field::Empty,
                otel.status_description = field::Empty,
            );
            span.record("error", true);
            span.record("otel.status_code", "error");
            span.record("otel.status_description", "DHT query timeout after 50ms");
        });
        let spans = handle.spans();
        let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
        // tracing-opentelemetry 0.34 takes the status from the otel.* fields only.
        assert_eq!(named("only_fields").status.code, StatusCode::Unset);
        assert_eq!(named("only_fields").attributes["error"], Value::Bool(true));
        assert_eq!(named("otel_fields").status.code, StatusCode::Error);
        assert_eq!(
            named("otel_fields").status.message,
            "DHT query timeout after 50ms"
        );
    }

    #[test]
    fn explicit_ok_status_wins_over_error_events() {
        let handle = captured(|| {
            let span = info_span!("retry", otel.status_code = "ok");
            span.in_scope(|| tracing::error!("first attempt failed"));
        });
        let span = only_span(&handle);
        assert_eq!(span.status.code, StatusCode::Ok);
        assert_eq!(span.status.message, "", "OK carries no message");
    }

    #[test]
    fn error_level_event_marks_the_span_as_error() {
        let handle = captured(|| {
            info_span!("publish")
                .in_scope(|| tracing::error!(reason = "disk full", "store failed"));
        });
        assert_eq!(only_span(&handle).status.code, StatusCode::Error);
    }

    #[test]
    fn resource_attributes_count_as_present_on_every_span() {
        let (layer, handle) = SpanCaptureLayer::builder()
            .resource_attribute("service.name", "ggen-p2p")
            .scope("marketplace", "0.1.0")
            .build();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            info_span!("p2p_bootstrap").in_scope(|| {});
        });
        let traces = handle.traces();
        traces
            .expect(
                &expect::span()
                    .named("p2p_bootstrap")
                    .with_attr("service.name", "ggen-p2p"),
            )
            .unwrap();
        let span = only_span(&handle);
        assert_eq!(span.scope.name, "marketplace");
        assert!(
            !span.attributes.contains_key("service.name"),
            "kept on the resource only"
        );
    }
}

mod structure {
    use super::*;

    #[test]
    fn contextual_explicit_and_root_parents() {
        let handle = captured(|| {
            let outer = info_span!("outer");
            let other = info_span!("other");
            outer.in_scope(|| {
                info_span!("contextual_child").in_scope(|| {});
                info_span!(parent: &other, "explicit_child").in_scope(|| {});
                info_span!(parent: None, "explicit_root").in_scope(|| {});
            });
        });
        let traces = handle.traces();
        let outer = traces
            .expect(&expect::span().named("outer").root())
            .unwrap();
        let other = traces
            .expect(&expect::span().named("other").root())
            .unwrap();
        assert_eq!(outer.children_named("contextual_child").len(), 1);
        assert_eq!(other.children_named("explicit_child").len(), 1);
        traces
            .expect(&expect::span().named("explicit_root").root())
            .unwrap();
        assert_eq!(traces.traces().len(), 3, "three roots, three traces");
        let child = traces.find_named("contextual_child")[0];
        assert_eq!(child.record().trace_id, outer.record().trace_id);
        assert_eq!(child.record().parent.map(|p| p.remote), Some(Some(false)));
    }

    #[test]
    fn follows_from_becomes_a_link() {
        let handle = captured(|| {
            let cause = info_span!("gossipsub_announce");
            cause.in_scope(|| {});
            let effect = info_span!(parent: None, "gossipsub_receive");
            effect.follows_from(&cause);
        });
        let spans = handle.spans();
        let cause = spans
            .iter()
            .find(|s| s.name == "gossipsub_announce")
            .unwrap();
        let effect = spans
            .iter()
            .find(|s| s.name == "gossipsub_receive")
            .unwrap();
        assert_eq!(effect.links.len(), 1);
        assert_eq!(effect.links[0].span_id, cause.span_id);
        assert_eq!(effect.links[0].trace_id, cause.trace_id);
    }

    #[test]
    fn events_keep_their_fields_and_land_in_their_span() {
        let handle = captured(|| {
            tracing::info!("before any span");
            let span = info_span!("p2p_publish");
            span.in_scope(|| tracing::info!(peers = 3u64, "announced"));
            tracing::warn!(parent: &span, kind = "slow", "explicit parent");
        });
        let span = only_span(&handle);
        assert_eq!(span.events.len(), 2);
        assert_eq!(span.events[0].name, "announced");
        assert_eq!(span.events[0].attributes["peers"], Value::from("3"));
        assert_eq!(span.events[0].attributes["level"], Value::from("INFO"));
        assert_eq!(span.events[1].name, "explicit parent");
        assert_eq!(span.events[1].attributes["level"], Value::from("WARN"));
        let outside = handle.events_outside_spans();
        assert_eq!(outside.len(), 1);
        assert_eq!(outside[0].name, "before any span");
    }

    #[test]
    fn close_times_are_recorded_and_busy_time_on_request() {
        let work = || {
            let span = info_span!("work");
            span.in_scope(|| std::hint::black_box((0..10_000u64).sum::<u64>()));
        };
        let handle = captured(work);
        let span = only_span(&handle);
        let end = span.end_unix_nanos.expect("closed spans have an end time");
        assert!(end >= span.start_unix_nanos);
        assert!(!span.attributes.contains_key("busy_ns"), "off by default");

        let (layer, handle) = SpanCaptureLayer::builder().track_busy_idle(true).build();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), work);
        let span = only_span(&handle);
        let busy = span.attributes["busy_ns"].as_i64().unwrap();
        let idle = span.attributes["idle_ns"].as_i64().unwrap();
        assert!(busy > 0);
        assert!(idle >= 0);
        assert!(busy + idle <= span.duration_nanos().unwrap() as i64 + 1_000);
    }

    #[test]
    fn an_open_span_keeps_its_values_when_the_closed_ones_are_cleared() {
        let (dispatch, handle) = capture::dispatch();
        let open = tracing::dispatcher::with_default(&dispatch, || {
            let before = info_span!("closed_before", n = 1);
            let open = info_span!(
                "still_open",
                query_text = "serde",
                local_results = field::Empty
            );
            drop(before);
            info_span!("closed_after", n = 2).in_scope(|| {});
            open
        });
        assert_eq!(handle.len(), 2);
        handle.clear();
        assert!(handle.is_empty());
        tracing::dispatcher::with_default(&dispatch, || {
            open.record("local_results", 3);
            info_span!("after_clear", n = 3).in_scope(|| {});
        });
        drop(open);
        let spans = handle.spans();
        let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
        assert_eq!(names, ["after_clear", "still_open"]);
        assert_eq!(spans[0].attributes["n"], Value::Int(3));
        assert_eq!(spans[1].attributes["query_text"], Value::from("serde"));
        assert_eq!(spans[1].attributes["local_results"], Value::Int(3));
        assert!(spans[1].unrecorded_fields.is_empty());
    }

    /// Logs while it is formatted, as a `Debug` implementation may.
    struct LogsWhenFormatted;

    impl std::fmt::Debug for LogsWhenFormatted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            tracing::info!("formatting");
            f.write_str("formatted")
        }
    }

    /// A late `record()` formats its value before the capture takes its lock: a value
    /// that logs while formatted, inside its span, would otherwise wait for that lock
    /// forever. (Tracing itself drops events logged while a span is being created.)
    #[test]
    fn a_value_that_logs_while_formatted_is_recorded_without_deadlock() {
        let (dispatch, handle) = capture::dispatch();
        let (done, finished) = std::sync::mpsc::channel();
        // A deadlock would hang this thread, not the test.
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                let span = info_span!("formats_late", detail = field::Empty);
                span.in_scope(|| {
                    span.record("detail", field::debug(LogsWhenFormatted));
                });
            });
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("recording a value that logs while formatted deadlocked");
        let span = only_span(&handle);
        assert_eq!(span.attributes["detail"], Value::from("formatted"));
        let events: Vec<&str> = span
            .events
            .iter()
            .map(|event| event.name.as_str())
            .collect();
        assert_eq!(
            events,
            ["formatting"],
            "the event lands in the span it was logged in"
        );
    }

    #[test]
    fn a_span_with_many_fields_keeps_every_one() {
        let handle = captured(|| {
            let span = info_span!(
                "wide",
                f00 = 0,
                f01 = 1,
                f02 = 2,
                f03 = 3,
                f04 = 4,
                f05 = 5,
                f06 = 6,
                f07 = 7,
                f08 = 8,
                f09 = 9,
                f10 = 10,
                f11 = 11,
                f12 = 12,
                f13 = 13,
                f14 = 14,
                f15 = 15,
                f16 = 16,
                f17 = 17,
                f18 = field::Empty,
                f19 = "nineteen",
            );
            span.record("f18", 18);
        });
        let span = only_span(&handle);
        assert_eq!(span.attributes.len(), 20, "{:?}", span.attributes);
        for i in 0..18 {
            assert_eq!(span.attributes[&format!("f{i:02}")], Value::Int(i));
        }
        assert_eq!(span.attributes["f18"], Value::Int(18));
        assert_eq!(span.attributes["f19"], Value::from("nineteen"));
        assert!(span.unrecorded_fields.is_empty());
    }

    #[test]
    fn open_spans_are_listed_until_they_close() {
        let (dispatch, handle) = capture::dispatch();
        let span = tracing::dispatcher::with_default(&dispatch, || info_span!("leaked"));
        let open = handle.open_spans();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].name, "leaked");
        assert!(handle.is_empty());
        drop(span);
        assert!(handle.open_spans().is_empty());
        assert_eq!(handle.len(), 1);
    }

    #[test]
    fn ids_are_distinct_and_children_share_the_trace() {
        let handle = captured(|| {
            for _ in 0..50 {
                info_span!("root").in_scope(|| info_span!("child").in_scope(|| {}));
            }
        });
        let spans = handle.spans();
        let span_ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
        let trace_ids: std::collections::HashSet<TraceId> =
            spans.iter().map(|s| s.trace_id).collect();
        assert_eq!(span_ids.len(), 100);
        assert_eq!(trace_ids.len(), 50);
        let traces = handle.traces();
        assert!(traces.orphans().is_empty());
        for trace in traces.traces() {
            assert_eq!(trace.len(), 2);
        }
    }
}

mod concurrency {
    use super::*;
    use tracing::instrument::{Instrument, WithSubscriber};

    async fn handle_query(node: i64) {
        let span = info_span!("handle_dht_query", node);
        async move {
            info_span!("dht_get", node).in_scope(|| {});
            tokio::task::yield_now().await;
            tracing::info!("answered");
        }
        .instrument(span)
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trace_spans_three_spawned_tasks() {
        let (dispatch, handle) = capture::dispatch();
        let root = tracing::dispatcher::with_default(&dispatch, || info_span!("p2p_search"));
        let tasks: Vec<_> = (1..=3i64)
            .map(|node| {
                tokio::spawn(
                    handle_query(node)
                        .instrument(root.clone())
                        .with_subscriber(dispatch.clone()),
                )
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        drop(root);
        let spans = handle
            .wait_for_span_named("p2p_search", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(spans.span_count(), 7);
        let traces = spans;
        assert_eq!(
            traces.traces().len(),
            1,
            "one trace across tasks:\n{traces}"
        );
        let root = traces
            .expect(&expect::span().named("p2p_search").root())
            .unwrap();
        assert_eq!(root.children().len(), 3);
        for node in 1..=3 {
            traces
                .expect(
                    &expect::span()
                        .named("handle_dht_query")
                        .with_attr("node", node)
                        .with_parent(expect::span().named("p2p_search"))
                        .with_child(expect::span().named("dht_get").with_attr("node", node))
                        .with_event("answered"),
                )
                .unwrap();
        }
        let settings = RenderSettings::default().child_order(ChildOrder::Name);
        assert_tree_snapshot!("spawned_tasks_by_name", traces.render_with(&settings));
    }

    #[test]
    fn parallel_captures_see_only_their_own_spans() {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                std::thread::spawn(move || {
                    let handle = captured(|| {
                        for i in 0..200 {
                            info_span!("work", worker, i).in_scope(|| {});
                        }
                    });
                    (worker, handle)
                })
            })
            .collect();
        for worker in workers {
            let (id, handle) = worker.join().unwrap();
            let spans = handle.spans();
            assert_eq!(spans.len(), 200);
            assert!(spans
                .iter()
                .all(|s| s.attributes["worker"] == Value::Int(id)));
        }
    }

    #[tokio::test]
    async fn two_dispatches_in_one_task_stay_apart() {
        let (a, handle_a) = capture::dispatch();
        let (b, handle_b) = capture::dispatch();
        async { info_span!("on_a").in_scope(|| {}) }
            .with_subscriber(a)
            .await;
        async { info_span!("on_b").in_scope(|| {}) }
            .with_subscriber(b)
            .await;
        assert_eq!(
            handle_a
                .spans()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["on_a"]
        );
        assert_eq!(
            handle_b
                .spans()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["on_b"]
        );
    }

    #[tokio::test]
    async fn waiting_times_out_loudly_with_what_arrived() {
        let handle = captured(|| info_span!("p2p_bootstrap", connected_peers = 2).in_scope(|| {}));
        let error = handle
            .wait_for_span_named("p2p_publish", Duration::from_millis(20))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("waiting for a span named \"p2p_publish\""),
            "{message}"
        );
        assert!(message.contains("1 span(s) arrived"), "{message}");
        assert!(message.contains("p2p_bootstrap"), "{message}");
        assert!(message.contains("connected_peers = 2"), "{message}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiting_wakes_on_a_span_closed_by_another_task() {
        let (dispatch, handle) = capture::dispatch();
        let producer = tokio::spawn(
            async {
                tokio::task::yield_now().await;
                info_span!("late").in_scope(|| {});
            }
            .with_subscriber(dispatch),
        );
        let spans = handle
            .wait_for_spans(1, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(spans.find_named("late").len(), 1);
        producer.await.unwrap();
    }
}

/// Honest waiting, checked deterministically: the wait futures are polled by hand with
/// tokio-test on a paused clock — no timing, no sleeps.
mod honest_waiting {
    use super::*;
    use tokio_test::{assert_pending, assert_ready};

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_wait_is_pending_until_the_span_closes_and_woken_by_it() {
        let (dispatch, handle) = capture::dispatch();
        let mut wait =
            tokio_test::task::spawn(handle.wait_for_span_named("late", Duration::from_secs(5)));
        assert_pending!(wait.poll());
        tracing::dispatcher::with_default(&dispatch, || {
            info_span!("other").in_scope(|| {});
        });
        assert!(wait.is_woken(), "every close wakes the waiter");
        assert_pending!(wait.poll(), "another span is not the one awaited");
        tracing::dispatcher::with_default(&dispatch, || {
            info_span!("late").in_scope(|| {});
        });
        assert!(wait.is_woken());
        let traces = assert_ready!(wait.poll()).unwrap();
        assert_eq!(traces.find_named("late").len(), 1);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_wait_fails_exactly_at_its_timeout_with_what_arrived() {
        let (dispatch, handle) = capture::dispatch();
        tracing::dispatcher::with_default(&dispatch, || {
            info_span!("p2p_bootstrap").in_scope(|| {});
        });
        let mut wait = tokio_test::task::spawn(handle.wait_for_spans(2, Duration::from_secs(5)));
        assert_pending!(wait.poll());
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_pending!(wait.poll(), "not before its timeout");
        tokio::time::advance(Duration::from_millis(1)).await;
        let error = assert_ready!(wait.poll()).unwrap_err().to_string();
        assert!(error.contains("waiting for 2 span(s)"), "{error}");
        assert!(error.contains("p2p_bootstrap"), "{error}");
    }
}

/// Builders for hand-made spans, for trees no single process produces.
fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, start: u64) -> SpanRecord {
    let mut record = SpanRecord::new(
        TraceId::from_bytes([trace; 16]),
        SpanId::from_bytes([id; 8]),
        name,
    );
    record.parent = parent.map(|p| ParentRef {
        span_id: SpanId::from_bytes([p; 8]),
        remote: Some(false),
    });
    record.start_unix_nanos = start;
    record.end_unix_nanos = Some(start + 10);
    record
}

fn node_resource(peer: &str) -> std::sync::Arc<Resource> {
    let mut resource = Resource::default();
    resource
        .attributes
        .insert("service.name".into(), "ggen-p2p".into());
    resource
        .attributes
        .insert("service.instance.id".into(), peer.into());
    std::sync::Arc::new(resource)
}

const PEER_A: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
const PEER_B: &str = "12D3KooWHFrmLWTTDD4NodngtRMEVYgxrsDMp4F9zvi7Qn5vFZkA";
const PEER_C: &str = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo";

/// A search on node A answered by B and C: three resources, remote parents.
fn distributed_search() -> Vec<SpanRecord> {
    let mut search = span(1, 1, None, "p2p_search", 100);
    search.resource = node_resource(PEER_A);
    search
        .attributes
        .insert("query_text".into(), "serde".into());
    search.attributes.insert("peer_id".into(), PEER_A.into());
    search
        .attributes
        .insert("total_latency_ms".into(), Value::Int(12));
    let mut spans = vec![search];
    for (i, peer) in [(2u8, PEER_B), (3, PEER_C)] {
        let mut request = span(1, i * 10, Some(1), "send_request", 100 + u64::from(i));
        request.kind = SpanKind::Client;
        request.resource = node_resource(PEER_A);
        request.attributes.insert("target_peer".into(), peer.into());
        let mut handle = span(
            1,
            i * 10 + 1,
            Some(i * 10),
            "handle_dht_query",
            105 + u64::from(i),
        );
        handle.kind = SpanKind::Server;
        handle.parent = handle.parent.map(|p| ParentRef {
            remote: Some(true),
            ..p
        });
        handle.resource = node_resource(peer);
        handle.attributes.insert("peer_id".into(), peer.into());
        handle
            .attributes
            .insert("dht_providers".into(), Value::Int(i64::from(i)));
        spans.extend([request, handle]);
    }
    spans
}

mod trees {
    use super::*;

    #[test]
    fn walks_children_descendants_and_ancestors() {
        let traces = TraceSet::new(distributed_search());
        let handler = traces
            .expect(
                &expect::span()
                    .named("handle_dht_query")
                    .with_attr("dht_providers", 2),
            )
            .unwrap();
        let path: Vec<&str> = handler.ancestors().from_root().map(|s| s.name()).collect();
        assert_eq!(path, ["p2p_search", "send_request"]);
        let root = handler.ancestors().last().unwrap();
        assert!(root.is_ancestor_of(handler));
        assert!(!handler.is_ancestor_of(root));
        assert_eq!(root.children().len(), 2);
        assert_eq!(root.descendants().len(), 4);
        assert_eq!(
            handler.attribute("service.instance.id"),
            Some(&Value::from(PEER_B)),
            "resource attributes are visible on the span"
        );
    }

    #[test]
    fn orphans_are_reported_never_dropped() {
        let spans = vec![
            span(1, 1, None, "root", 1),
            span(1, 2, Some(9), "orphan", 2),
            span(1, 3, Some(2), "orphan_child", 3),
        ];
        let traces = TraceSet::new(spans);
        assert_eq!(traces.span_count(), 3);
        let orphans = traces.orphans();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].name(), "orphan");
        assert_eq!(orphans[0].children()[0].name(), "orphan_child");
        assert!(!traces.traces()[0].is_complete());
        let error = traces.expect_no_orphans().unwrap_err();
        assert!(error.message().contains("found 1: orphan"), "{error}");
    }

    #[test]
    fn duplicates_are_kept_once_and_counted() {
        let spans = vec![span(1, 1, None, "root", 1), span(1, 1, None, "root", 1)];
        let traces = TraceSet::new(spans);
        assert_eq!(traces.span_count(), 1);
        assert_eq!(traces.duplicates(), 1);
    }

    #[test]
    fn attribute_matchers_are_typed() {
        let handle = captured(|| {
            let _span = info_span!(
                "p2p_publish",
                count = 3,
                ratio = 0.5,
                text = "3",
                package_id = "acme/tool",
                empty = "",
                flag = false
            );
        });
        let traces = handle.traces();
        let matches = |key: &str, m: p2p_otel_testkit::tree::AttrMatcher| {
            !traces.find(&expect::span().with_attr(key, m)).is_empty()
        };
        assert!(matches("count", attr::eq(3)));
        assert!(
            !matches("count", attr::eq("3")),
            "int 3 is not string \"3\""
        );
        assert!(!matches("count", attr::eq(3.0)), "int 3 is not double 3.0");
        assert!(matches("text", attr::eq("3")));
        assert!(matches("ratio", attr::between(0.0, 1.0)));
        assert!(!matches("ratio", attr::between(0.6, 1.0)));
        assert!(matches("count", attr::between(1.0, 3.0)));
        assert!(matches("package_id", attr::matches(r"^[a-z]+/[a-z]+$")));
        assert!(
            !matches("count", attr::matches(r"3")),
            "a regex matches strings only"
        );
        assert!(matches("empty", attr::exists()));
        assert!(!matches("empty", attr::non_empty()));
        assert!(
            matches("flag", attr::non_empty()),
            "any bool carries a value"
        );
        assert!(matches("missing", attr::absent()));
        assert!(!matches("count", attr::absent()));
    }

    #[test]
    fn an_invalid_regex_fails_with_its_reason() {
        let traces = TraceSet::new(vec![span(1, 1, None, "root", 1)]);
        let error = traces
            .expect(&expect::span().with_attr("name", attr::matches("(unclosed")))
            .unwrap_err();
        assert!(error.message().contains("invalid regex"), "{error}");
    }

    #[test]
    fn a_failed_expectation_shows_the_closest_spans_and_the_trees() {
        let traces = TraceSet::new(distributed_search());
        let error = traces
            .expect(
                &expect::span()
                    .named("handle_dht_query")
                    .with_attr("dht_providers", 5)
                    .with_status(StatusCode::Ok),
            )
            .unwrap_err();
        let message = error.message();
        assert!(
            message.starts_with("expected exactly one span \"handle_dht_query\""),
            "{message}"
        );
        assert!(message.contains("closest candidates:"), "{message}");
        assert!(
            message.contains("dht_providers == 5: was 2 (int); status was unset"),
            "{message}"
        );
        assert!(
            message.contains("received 1 trace(s), 5 span(s):"),
            "{message}"
        );
        assert!(message.contains("└─ p2p_search"), "{message}");
        assert_eq!(
            format!("{error:?}"),
            message,
            "unwrap() prints the readable message"
        );
    }

    #[test]
    fn relations_status_kind_and_nothing_unexpected() {
        let traces = TraceSet::new(distributed_search());
        traces
            .expect_count(
                &expect::span()
                    .named("handle_dht_query")
                    .with_kind(SpanKind::Server)
                    .with_ancestor(expect::span().named("p2p_search").root())
                    .with_parent(
                        expect::span()
                            .named("send_request")
                            .with_kind(SpanKind::Client),
                    ),
                2,
            )
            .unwrap();
        traces
            .expect(
                &expect::span()
                    .named("p2p_search")
                    .with_descendant(expect::span().named("handle_dht_query")),
            )
            .unwrap();
        traces
            .expect_none(&expect::span().with_status(StatusCode::Error))
            .unwrap();
        traces
            .expect_only(&[
                expect::span().named("p2p_search"),
                expect::span().named("send_request"),
                expect::span().named("handle_dht_query"),
            ])
            .unwrap();
        let error = traces
            .expect_only(&[expect::span().named("p2p_search")])
            .unwrap_err();
        assert!(
            error.message().starts_with("4 unexpected span(s)"),
            "{error}"
        );
    }
}

mod otlp {
    use super::*;

    #[test]
    fn spans_survive_an_otlp_round_trip() {
        let mut spans = distributed_search();
        spans[0].events.push(p2p_otel_testkit::model::SpanEvent {
            name: "cache miss".into(),
            time_unix_nanos: 101,
            attributes: [("key".to_owned(), Value::from("serde"))].into(),
        });
        spans[0].status.code = StatusCode::Error;
        spans[0].status.message = "timeout".into();
        spans[1]
            .attributes
            .insert("bytes".into(), Value::Bytes(vec![0, 255]));
        spans[1]
            .attributes
            .insert("list".into(), Value::Array(vec![1.into(), 2.into()]));
        let back = spans_from_otlp(&spans_to_otlp(&spans)).unwrap();
        let key = |s: &SpanRecord| s.span_id;
        let (mut a, mut b) = (spans.clone(), back);
        a.sort_by_key(key);
        b.sort_by_key(key);
        assert_eq!(a, b);
    }

    #[test]
    fn captured_and_otlp_round_tripped_spans_render_identically() {
        let handle = captured(|| {
            info_span!("p2p_publish", package_id = "acme/tool").in_scope(|| {
                info_span!("dht_put", dht_replication = 2).in_scope(|| {});
                tracing::info!(subscriber_count = 2, "announced");
            });
        });
        let spans = handle.spans();
        let received = spans_from_otlp(&spans_to_otlp(&spans)).unwrap();
        assert_eq!(
            TraceSet::new(spans).render(),
            TraceSet::new(received).render()
        );
    }

    #[test]
    fn invalid_ids_are_errors_that_name_the_span() {
        let mut request = spans_to_otlp(&[span(1, 1, None, "bad_span", 1)]);
        request[0].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
        let error = spans_from_otlp(&request).unwrap_err();
        assert_eq!(
            error.to_string(),
            "span \"bad_span\" (resource #0, scope #0, span #0): span id must be 8 bytes, got 3"
        );
        request[0].scope_spans[0].spans[0].span_id = vec![0; 8];
        let error = spans_from_otlp(&request).unwrap_err();
        assert!(error.to_string().contains("all zeroes"), "{error}");
    }
}

mod snapshots {
    use super::*;
    use proptest::prelude::*;

    fn publish_tree() -> CaptureHandle {
        let (layer, handle) = SpanCaptureLayer::builder()
            .resource_attribute("service.name", "ggen-p2p")
            .resource_attribute("service.instance.id", PEER_A)
            .build();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let publish = info_span!(
                "p2p_publish",
                operation = "publish",
                peer_id = PEER_A,
                package_id = "acme/tool",
                package_version = "1.2.0",
                dht_replication = 2,
                gossipsub_peers = field::Empty,
            );
            publish.in_scope(|| {
                info_span!(
                    "dht_put",
                    operation = "store_package",
                    package_id = "acme/tool",
                    dht_key = "/ggen/pkg/acme/tool/1.2.0",
                    dht_replication = 2,
                    put_latency_ms = 3,
                )
                .in_scope(|| {});
                info_span!(
                    "gossipsub_announce",
                    otel.kind = "producer",
                    operation = "announce_package",
                    topic = "/ggen/packages/v1",
                    message_id = "5f2a",
                    subscriber_count = 2,
                )
                .in_scope(|| tracing::info!(bytes = 312, "published"));
            });
        });
        handle
    }

    #[test]
    fn snapshot_publish_with_children_and_a_forgotten_record() {
        assert_tree_snapshot!("publish_tree", publish_tree().traces().render());
    }

    #[test]
    fn snapshot_publish_as_yaml() {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_yaml_snapshot!("publish_tree_yaml", publish_tree().traces().normalized());
        });
    }

    #[test]
    fn snapshot_search_timeout_error() {
        let handle = captured(|| {
            let search = info_span!(
                "p2p_search",
                query_text = "tokio",
                query_limit = 10,
                cache_hit = false,
                error = field::Empty,
                error_type = field::Empty,
                error_message = field::Empty,
                otel.status_code = field::Empty,
                otel.status_description = field::Empty,
            );
            search.in_scope(|| {
                info_span!(
                    "dht_get",
                    otel.kind = "client",
                    dht_key = "/ggen/index/tokio"
                )
                .in_scope(|| tracing::warn!(peer = "unreachable", "no answer"));
                search.record("error", true);
                search.record("error_type", "timeout");
                search.record("error_message", "DHT query timeout after 50ms");
                // What makes it an error on the wire (tracing-opentelemetry 0.34).
                search.record("otel.status_code", "error");
                search.record("otel.status_description", "DHT query timeout after 50ms");
            });
        });
        assert_tree_snapshot!("search_timeout_error", handle.traces().render());
    }

    #[test]
    fn snapshot_distributed_search_across_three_nodes() {
        assert_tree_snapshot!(
            "distributed_search",
            TraceSet::new(distributed_search()).render()
        );
    }

    #[test]
    fn snapshot_links_and_separate_traces() {
        let handle = captured(|| {
            let announce = info_span!("gossipsub_announce", topic = "/ggen/packages/v1");
            announce.in_scope(|| {});
            let receive = info_span!(parent: None, "gossipsub_receive", otel.kind = "consumer", propagation_ms = 4);
            receive.follows_from(&announce);
            receive.in_scope(|| {});
        });
        assert_tree_snapshot!("links_and_separate_traces", handle.traces().render());
    }

    #[test]
    fn snapshot_incomplete_trace_with_duplicates() {
        let mut spans = vec![
            span(7, 1, None, "p2p_search", 10),
            span(7, 2, Some(1), "dht_get", 11),
            span(7, 3, Some(42), "handle_dht_query", 12),
            span(7, 4, Some(3), "local_lookup", 13),
        ];
        spans.push(spans[1].clone());
        spans[2].attributes.insert(
            "parent_span".into(),
            Value::from(SpanId::from_bytes([42; 8]).to_string()),
        );
        assert_tree_snapshot!("incomplete_trace", TraceSet::new(spans).render());
    }

    #[test]
    fn raw_settings_show_everything() {
        let spans = vec![span(1, 1, None, "op", 1)];
        let mut with_ms = spans.clone();
        with_ms[0]
            .attributes
            .insert("took_ms".into(), Value::Int(7));
        let default = TraceSet::new(with_ms.clone()).render();
        let raw = TraceSet::new(with_ms).render_with(&RenderSettings::raw());
        assert!(default.contains("took_ms = [redacted]"), "{default}");
        assert!(raw.contains("took_ms = 7"), "{raw}");
        let custom = RenderSettings::default()
            .redact_key("nonce")
            .alias_pattern(r"node-\d+", "node")
            .unwrap();
        let mut s = span(1, 1, None, "op", 1);
        s.attributes.insert("nonce".into(), Value::Int(99));
        s.attributes
            .insert("from".into(), Value::from("reply from node-17 to node-3"));
        let rendered = TraceSet::new(vec![s]).render_with(&custom);
        assert!(rendered.contains("nonce = [redacted]"), "{rendered}");
        assert!(
            rendered.contains("from = \"reply from [node 1] to [node 2]\""),
            "{rendered}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn rendering_ignores_arrival_order(spans in Just({
            let mut all = distributed_search();
            all.extend(super::snapshots_fixture());
            all
        }).prop_shuffle()) {
            let expected = {
                let mut all = distributed_search();
                all.extend(super::snapshots_fixture());
                TraceSet::new(all).render()
            };
            prop_assert_eq!(TraceSet::new(spans).render(), expected);
        }
    }
}

/// A second trace with same-time siblings and a link, to stress ordering ties.
fn snapshots_fixture() -> Vec<SpanRecord> {
    let mut spans = vec![
        span(2, 1, None, "p2p_publish", 500),
        span(2, 2, Some(1), "dht_put", 501),
        span(2, 3, Some(1), "dht_put", 501),
        span(2, 4, Some(1), "gossipsub_announce", 501),
        span(2, 5, Some(77), "stray", 502),
    ];
    spans[1].attributes.insert("dht_key".into(), "a".into());
    spans[2].attributes.insert("dht_key".into(), "b".into());
    spans[3].links.push(p2p_otel_testkit::model::SpanLink {
        trace_id: TraceId::from_bytes([1; 16]),
        span_id: SpanId::from_bytes([1; 8]),
        attributes: Default::default(),
    });
    spans
}

#[test]
fn dispatch_type_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Dispatch>();
    assert_send_sync::<CaptureHandle>();
}
