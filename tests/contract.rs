//! Telemetry contracts: loading Weaver registries (with the official semantic conventions
//! as a dependency), every finding id from a deliberately broken span or metric, load
//! errors with file and line, mutated files that never panic the loader, reports, the
//! generated production artifacts, and OTLP-JSON lines files as a Collector writes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use p2p_otel_testkit::contract::{generate, Contract, ContractError, CoverageGate, Level, Report};
use p2p_otel_testkit::model::{
    LogRecord, MetricKind, MetricPoint, ParentRef, PointValue, Resource, Scope, Signals, SpanEvent,
    SpanId, SpanKind, SpanRecord, StatusCode, Temporality, TraceId, Value,
};
use p2p_otel_testkit::TraceSet;
use proptest::prelude::*;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn shop() -> Contract {
    Contract::loader()
        .dependency(data("semconv/model"))
        .load(data("contract"))
        .unwrap()
}

fn node(instance: &str) -> Arc<Resource> {
    let mut resource = Resource::default();
    resource
        .attributes
        .insert("service.name".into(), "shop".into());
    resource
        .attributes
        .insert("service.instance.id".into(), instance.into());
    Arc::new(resource)
}

fn span(id: u8, parent: Option<u8>, name: &str, kind: SpanKind, on: &str) -> SpanRecord {
    let mut span = SpanRecord::new(
        TraceId::from_bytes([7; 16]),
        SpanId::from_bytes([id; 8]),
        name,
    );
    span.parent = parent.map(|p| ParentRef {
        span_id: SpanId::from_bytes([p; 8]),
        remote: Some(on == "node-b"),
    });
    span.kind = kind;
    span.start_unix_nanos = u64::from(id) * 10;
    span.end_unix_nanos = Some(1_000);
    span.resource = node(on);
    span.attributes
        .insert("shop.order.id".into(), "o-42".into());
    span
}

fn point(name: &str, kind: MetricKind, unit: &str, value: PointValue) -> MetricPoint {
    MetricPoint {
        name: name.into(),
        description: String::new(),
        unit: unit.into(),
        kind,
        temporality: Temporality::Cumulative,
        attributes: BTreeMap::new(),
        value,
        start_unix_nanos: 1,
        time_unix_nanos: 2,
        resource: node("node-a"),
        scope: Arc::new(Scope::default()),
    }
}

/// Telemetry that keeps the shop's contract.
struct Shop {
    spans: Vec<SpanRecord>,
    metrics: Vec<MetricPoint>,
    logs: Vec<LogRecord>,
}

impl Shop {
    fn good() -> Self {
        let mut checkout = span(1, None, "checkout", SpanKind::Internal, "node-a");
        checkout
            .attributes
            .insert("shop.order.items".into(), Value::Int(3));
        checkout
            .attributes
            .insert("shop.order.tags".into(), Value::Array(vec!["gift".into()]));
        checkout.events.push(SpanEvent {
            name: "order.placed".into(),
            time_unix_nanos: 15,
            attributes: BTreeMap::new(),
        });
        let mut pay = span(2, Some(1), "pay", SpanKind::Client, "node-a");
        pay.attributes
            .insert("shop.payment.method".into(), "card".into());
        pay.attributes
            .insert("server.address".into(), "pay.example".into());
        let mut charge = span(3, Some(2), "charge", SpanKind::Server, "node-b");
        charge
            .attributes
            .insert("shop.header.accept".into(), "application/json".into());
        let mut orders = point(
            "shop.orders",
            MetricKind::Sum { monotonic: true },
            "{order}",
            PointValue::Int(1),
        );
        orders
            .attributes
            .insert("shop.payment.method".into(), "card".into());
        let duration = point(
            "shop.checkout.duration",
            MetricKind::Histogram,
            "ms",
            PointValue::Distribution {
                count: 1,
                sum: Some(12.0),
                min: None,
                max: None,
                bounds: vec![10.0, 100.0],
                bucket_counts: vec![0, 1, 0],
            },
        );
        let placed = LogRecord {
            time_unix_nanos: 15,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: None,
            attributes: [("shop.order.id".to_owned(), Value::from("o-42"))].into(),
            event_name: "order.placed".into(),
            trace_id: None,
            span_id: None,
            resource: node("node-a"),
            scope: Arc::new(Scope::default()),
        };
        Shop {
            spans: vec![checkout, pay, charge],
            metrics: vec![orders, duration],
            logs: vec![placed],
        }
    }

    fn span(&mut self, name: &str) -> &mut SpanRecord {
        self.spans
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    }

    fn check(&self) -> Report {
        self.check_with(&shop())
    }

    fn check_with(&self, contract: &Contract) -> Report {
        contract.check(
            &TraceSet::new(self.spans.clone()),
            &self.metrics,
            &self.logs,
        )
    }
}

#[test]
fn a_contract_that_refs_the_semantic_conventions_loads_and_kept_telemetry_passes() {
    let contract = shop();
    assert_eq!(contract.span_names(), ["charge", "checkout", "pay"]);
    assert_eq!(
        contract.metric_names(),
        ["shop.checkout.duration", "shop.orders"]
    );
    // `error.type` comes from the vendored semantic conventions, through `extends`.
    let report = Shop::good().check();
    report.assert_no_violations().unwrap();
    // Weaver's advice: the shop's own attributes, metrics and event are in development.
    let not_stable: Vec<&str> = report
        .at_level(Level::Improvement)
        .map(|f| {
            assert_eq!(f.id, "not_stable", "{report}");
            f.context["stability"].as_str()
        })
        .collect();
    assert!(not_stable.iter().all(|s| *s == "development"), "{report}");
    assert!(
        report.to_string().contains("improvement not_stable ×"),
        "{report}"
    );
    // Only what the good telemetry legitimately leaves out: the opt-in coupon and the
    // error type of spans that did not fail; and the header that is a template's.
    let mut information: Vec<(&str, &str)> = report
        .at_level(Level::Information)
        .map(|f| (f.id.as_str(), f.context["attribute_key"].as_str()))
        .collect();
    information.sort_unstable();
    information.dedup();
    assert_eq!(
        information,
        [
            ("conditionally_required_attribute_not_present", "error.type"),
            ("opt_in_attribute_not_present", "shop.coupon"),
            ("template_attribute", "shop.header.accept"),
        ]
    );
    assert_eq!(report.samples(), (3, 2, 1));
    // Without Weaver's advice: only the registry's own rules.
    let quiet = Shop::good().check_with(&shop().with_advice(false));
    assert_eq!(quiet.at_level(Level::Improvement).count(), 0, "{quiet}");
    assert_eq!(quiet.with_id("template_attribute").count(), 0, "{quiet}");
    let unseen: Vec<&str> = report
        .coverage()
        .groups
        .iter()
        .filter(|g| g.samples == 0)
        .map(|g| g.name.as_str())
        .collect();
    assert!(unseen.is_empty(), "{unseen:?}");
}

/// The good shop broken by `break_it`, its report, and the one finding `id` at `level`
/// whose message says `says` (fails unless there is exactly one).
fn the_one_finding(
    break_it: fn(&mut Shop),
    id: &str,
    level: Level,
    says: &str,
) -> (Shop, Report, p2p_otel_testkit::contract::Finding) {
    let mut shop = Shop::good();
    break_it(&mut shop);
    let report = shop.check();
    let found: Vec<_> = report
        .with_id(id)
        .filter(|f| f.level == level && f.message.contains(says))
        .cloned()
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {level} {id} saying {says:?}, got:\n{report}"
    );
    let finding = found[0].clone();
    (shop, report, finding)
}

/// Weaver's judgement beyond the registry: the resource's attributes against it, and the
/// built-in advice about names and stability, each from one misnamed sample.
#[test]
fn weavers_judgement_comes_from_deliberately_misnamed_telemetry() {
    type Break = fn(&mut Shop);
    let cases: Vec<(&str, Level, &str, Break)> = vec![
        (
            "missing_attribute",
            Level::Violation,
            "resource attribute deployment.region",
            |s| {
                let mut resource = (*s.spans[0].resource).clone();
                resource
                    .attributes
                    .insert("deployment.region".into(), "eu".into());
                s.spans[0].resource = Arc::new(resource);
            },
        ),
        (
            "type_mismatch",
            Level::Violation,
            "service.instance.id",
            |s| {
                let mut resource = (*s.spans[2].resource).clone();
                resource
                    .attributes
                    .insert("service.instance.id".into(), Value::Int(2));
                s.spans[2].resource = Arc::new(resource);
            },
        ),
        (
            "missing_attribute",
            Level::Violation,
            "shop.note on event order.placed",
            |s| {
                s.span("checkout").events[0]
                    .attributes
                    .insert("shop.note".into(), "gift".into());
            },
        ),
        ("missing_namespace", Level::Improvement, "orderid", |s| {
            s.span("pay")
                .attributes
                .insert("orderid".into(), "o-1".into());
        }),
        ("invalid_format", Level::Violation, "shop.Order", |s| {
            s.span("pay")
                .attributes
                .insert("shop.Order".into(), "o-1".into());
        }),
        (
            "invalid_format",
            Level::Violation,
            "metric name shop orders",
            |s| {
                s.metrics[0].name = "shop orders".into();
            },
        ),
        (
            "illegal_namespace",
            Level::Violation,
            "server.address",
            |s| {
                s.span("pay")
                    .attributes
                    .insert("server.address.family".into(), "inet".into());
            },
        ),
        ("extends_namespace", Level::Information, "shop.order", |s| {
            s.span("pay")
                .attributes
                .insert("shop.order.note".into(), "gift".into());
        }),
    ];
    for (id, level, says, break_it) in cases {
        let (broken, _, finding) = the_one_finding(break_it, id, level, says);
        // The registry's rules stay without the advice; the advice goes.
        let quiet = broken.check_with(&shop().with_advice(false));
        let registry_rule = ["missing_attribute", "type_mismatch"].contains(&id);
        assert_eq!(
            quiet.with_id(id).any(|f| f.message.contains(says)),
            registry_rule,
            "{id} without advice:\n{quiet}"
        );
        if finding.signal_type == "resource" {
            assert_eq!(finding.signal_name, "shop", "{finding}");
            assert!(finding.span.is_none());
        }
    }
    // One finding per resource attribute, counted once per node that carries it.
    let mut shop = Shop::good();
    for span in &mut shop.spans {
        let mut resource = (*span.resource).clone();
        resource
            .attributes
            .insert("deployment.region".into(), "eu".into());
        span.resource = Arc::new(resource);
    }
    let report = shop.check();
    let region: Vec<_> = report
        .with_id("missing_attribute")
        .filter(|f| f.context["attribute_key"] == "deployment.region")
        .collect();
    assert_eq!(region.len(), 1, "{report}");
    assert_eq!(region[0].occurrences, 2, "two nodes: {report}");
}

/// One broken sample per finding id, with the level and what the message must say.
#[test]
fn each_finding_id_comes_from_a_deliberately_broken_signal() {
    type Break = fn(&mut Shop);
    let cases: Vec<(&str, Level, &str, Break)> = vec![
        ("missing_attribute", Level::Violation, "shop.unknown", |s| {
            s.span("pay")
                .attributes
                .insert("shop.unknown".into(), "x".into());
        }),
        ("type_mismatch", Level::Violation, "shop.order.items", |s| {
            s.span("checkout")
                .attributes
                .insert("shop.order.items".into(), "three".into());
        }),
        ("type_mismatch", Level::Violation, "string[]", |s| {
            s.span("checkout")
                .attributes
                .insert("shop.order.tags".into(), Value::Array(vec![Value::Int(1)]));
        }),
        (
            "undefined_enum_variant",
            Level::Violation,
            "shop.payment.method",
            |s| {
                s.span("pay")
                    .attributes
                    .insert("shop.payment.method".into(), "iou".into());
            },
        ),
        // error.type's enum is open in the semantic conventions: information only.
        (
            "undefined_enum_variant",
            Level::Information,
            "error.type",
            |s| {
                s.span("pay")
                    .attributes
                    .insert("error.type".into(), "timeout".into());
            },
        ),
        (
            "required_attribute_not_present",
            Level::Violation,
            "shop.order.items",
            |s| {
                s.span("checkout").attributes.remove("shop.order.items");
            },
        ),
        (
            "recommended_attribute_not_present",
            Level::Improvement,
            "server.address",
            |s| {
                s.span("pay").attributes.remove("server.address");
            },
        ),
        ("deprecated", Level::Violation, "Coupons are gone", |s| {
            s.span("checkout")
                .attributes
                .insert("shop.coupon".into(), "SALE".into());
        }),
        ("deprecated", Level::Violation, "error.message", |s| {
            s.span("pay")
                .attributes
                .insert("error.message".into(), "declined".into());
        }),
        ("missing_metric", Level::Violation, "shop.refunds", |s| {
            let mut refunds = s.metrics[0].clone();
            refunds.name = "shop.refunds".into();
            s.metrics.push(refunds);
        }),
        (
            "unexpected_instrument",
            Level::Violation,
            "declares a counter",
            |s| {
                s.metrics[0].kind = MetricKind::Gauge;
            },
        ),
        (
            "unit_mismatch",
            Level::Violation,
            "with_unit(\"{order}\")",
            |s| {
                s.metrics[0].unit = "1".into();
            },
        ),
        (
            "required_attribute_not_present",
            Level::Violation,
            "KeyValue::new(\"shop.payment.method\"",
            |s| {
                s.metrics[0].attributes.clear();
            },
        ),
        ("missing_event", Level::Violation, "order.cancelled", |s| {
            s.logs[0].event_name = "order.cancelled".into();
        }),
        (
            "missing_child",
            Level::Violation,
            "at least 1 child span(s) pay of kind client",
            |s| {
                s.spans.retain(|span| span.name == "checkout");
            },
        ),
        ("unexpected_child", Level::Violation, "at most 1", |s| {
            let mut again = s.span("pay").clone();
            again.span_id = SpanId::from_bytes([9; 8]);
            s.spans.push(again);
        }),
        ("unexpected_parent", Level::Violation, "orphan", |s| {
            // An orphaned handler: its caller's span never arrived.
            s.spans.retain(|span| span.name != "pay");
        }),
        (
            "unexpected_parent",
            Level::Violation,
            "must be a root",
            |s| {
                s.span("checkout").parent = Some(ParentRef {
                    span_id: SpanId::from_bytes([5; 8]),
                    remote: Some(false),
                });
            },
        ),
        (
            "missing_remote_parent",
            Level::Violation,
            "same node",
            |s| {
                let charge = s.span("charge");
                charge.resource = node("node-a");
                charge.parent = Some(ParentRef {
                    span_id: SpanId::from_bytes([2; 8]),
                    remote: None,
                });
            },
        ),
        ("missing_remote_parent", Level::Violation, "local", |s| {
            s.span("charge").parent = Some(ParentRef {
                span_id: SpanId::from_bytes([2; 8]),
                remote: Some(false),
            });
        }),
        (
            "missing_required_event",
            Level::Violation,
            "order.placed",
            |s| {
                s.span("checkout").events.clear();
            },
        ),
        (
            "missing_error_attribute",
            Level::Violation,
            "status Error but no error.type",
            |s| {
                s.span("checkout").status.code = StatusCode::Error;
            },
        ),
        (
            "unexpected_span_kind",
            Level::Violation,
            "otel.kind = \"server\"",
            |s| {
                s.span("charge").kind = SpanKind::Internal;
            },
        ),
        ("undeclared_span", Level::Information, "refund", |s| {
            let mut refund = s.span("pay").clone();
            refund.name = "refund".into();
            refund.span_id = SpanId::from_bytes([8; 8]);
            s.spans.push(refund);
        }),
    ];
    for (id, level, says, break_it) in cases {
        let (_, report, finding) = the_one_finding(break_it, id, level, says);
        assert_eq!(
            report.has_violations(),
            level == Level::Violation,
            "{id}: {report}"
        );
        if finding.signal_type == "span" {
            let at = finding.span.as_ref().unwrap_or_else(|| panic!("{finding}"));
            assert!(at.node.starts_with("node-"), "{finding}");
        }
    }
}

#[test]
fn a_failed_span_may_miss_a_required_attribute_it_never_got() {
    let mut shop = Shop::good();
    let checkout = shop.span("checkout");
    checkout.status.code = StatusCode::Error;
    checkout
        .attributes
        .insert("error.type".into(), "timeout".into());
    checkout.attributes.remove("shop.order.items");
    checkout.events.clear();
    shop.spans.retain(|s| s.name == "checkout");
    let report = shop.check();
    report.assert_no_violations().unwrap();
    assert!(report
        .with_id("required_attribute_not_present")
        .any(|f| f.level == Level::Information && f.message.contains("the span failed")));
}

#[test]
fn the_same_problem_on_many_spans_is_one_finding_counted() {
    let mut shop = Shop::good();
    for id in 10..20 {
        let mut pay = shop.span("pay").clone();
        pay.span_id = SpanId::from_bytes([id; 8]);
        pay.attributes.insert("shop.unknown".into(), "x".into());
        shop.spans.push(pay);
    }
    let report = shop.check();
    let found: Vec<_> = report.with_id("missing_attribute").collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].occurrences, 10);
}

#[test]
fn a_violation_prints_the_findings_next_to_the_rendered_trees() {
    let mut shop = Shop::good();
    shop.span("checkout").attributes.remove("shop.order.items");
    let error = shop.check().assert_no_violations().unwrap_err();
    let message = error.message();
    assert!(
        message.starts_with("1 violation(s) of the contract"),
        "{message}"
    );
    assert!(
        message.contains("required attribute shop.order.items is not present on span checkout"),
        "{message}"
    );
    assert!(
        message.contains("add `shop.order.items = …` to the span's fields"),
        "{message}"
    );
    assert!(message.contains("traces with violations:"), "{message}");
    assert!(message.contains("└─ pay"), "{message}");
    assert!(message.contains("coverage"), "{message}");
}

#[test]
fn the_json_report_has_live_checks_shape() {
    let mut shop = Shop::good();
    shop.metrics[0].unit = "1".into();
    let json = shop.check().to_json();
    let finding = json["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == "unit_mismatch"))
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(finding["level"], "violation");
    assert_eq!(finding["signal_type"], "metric");
    assert_eq!(finding["signal_name"], "shop.orders");
    assert_eq!(finding["context"]["expected"], "{order}");
    assert_eq!(finding["context"]["found"], "1");
    let statistics = &json["statistics"];
    assert_eq!(statistics["advice_level_counts"]["violation"], 1);
    assert_eq!(statistics["advice_type_counts"]["unit_mismatch"], 1);
    assert_eq!(statistics["highest_advice_level"], "violation");
    assert_eq!(statistics["total_spans"], 3);
    assert!(statistics["registry_coverage"]
        .as_f64()
        .is_some_and(|c| c > 0.5));
    let junit = shop.check().to_junit("shop");
    assert!(
        junit.contains("<testcase classname=\"contract\" name=\"metric shop.orders\">"),
        "{junit}"
    );
    assert!(junit.contains("failures=\"1\""), "{junit}");
}

#[test]
fn a_coverage_gate_fails_groups_never_seen() {
    let mut shop = Shop::good();
    shop.spans.retain(|s| s.name != "charge");
    let report = shop.check();
    assert!(!report.has_violations(), "{report}");
    let gated = report
        .clone()
        .gate(CoverageGate::overall(0.99).per_group(0.5));
    let below: Vec<&str> = gated
        .with_id("coverage_below_minimum")
        .map(|f| f.signal_name.as_str())
        .collect();
    assert_eq!(below, ["charge", "contract"], "{gated}");
    assert!(gated
        .with_id("coverage_below_minimum")
        .any(|f| f.message.contains("no sample at all: exercise it")));
    report
        .gate(CoverageGate::overall(0.5))
        .assert_no_violations()
        .unwrap();
}

fn problems(files: &[(&str, &str)]) -> Vec<String> {
    match Contract::loader().load_sources(files.iter().copied()) {
        Ok(_) => panic!("{files:?} loaded"),
        Err(error) => error.problems().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn load_errors_name_the_file_the_line_and_the_fix() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "groups:\n  - id: span.a\n    type: span\n    span_knd: client\n",
            "a.yaml:4:5: groups[0]: unknown field `span_knd`",
        ),
        (
            "groups:\n  - id: span.a\n    type: span\n   brief: bad indent\n",
            "a.yaml:4",
        ),
        (
            "groups:\n  - id: registry.a\n    type: attribute_group\n    attributes:\n      - id: a.b\n        type: string\n  - id: span.a\n    type: span\n    attributes:\n      - ref: a.c\n",
            "a.yaml:10: ref: no attribute \"a.c\" in the contract or its dependencies — did you mean \"a.b\"?",
        ),
        (
            "groups:\n  - id: a\n    type: attribute_group\n    extends: b\n    attributes: []\n  - id: b\n    type: attribute_group\n    extends: a\n    attributes: []\n",
            "groups include each other in a cycle: a → b → a",
        ),
        (
            "groups:\n  - id: r\n    type: attribute_group\n    attributes:\n      - id: x\n        type: strin\n",
            "a.yaml:5: attribute x has an unknown type \"strin\"",
        ),
        (
            "groups:\n  - id: metric.m\n    type: metric\n    metric_name: m\n    instrument: countr\n",
            "a.yaml:2: group metric.m: instrument \"countr\"",
        ),
        (
            "groups:\n  - id: span.a\n    type: span\n    annotations:\n      structure:\n        childs: []\n",
            "structure: unknown field `childs`",
        ),
        (
            "file_format: definition/3\n",
            "a.yaml:1: unknown file_format \"definition/3\"",
        ),
        ("groups: [\n", "a.yaml:2"),
        (
            "file_format: definition/2\nmetrics:\n  - name: m\n    instrument: counter\n    unit: \"1\"\n    stability: development\n    requirement_level: required\n",
            "a.yaml:7: metric m: requirement_level \"required\" — a definition/2 signal is `recommended` or `opt_in`",
        ),
    ];
    for (yaml, expected) in cases {
        let found = problems(&[("a.yaml", yaml)]);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {found:#?}"
        );
    }
    // Two files defining one attribute: both places named.
    let found = problems(&[
        ("a.yaml", "file_format: definition/2\nattributes:\n  - key: x\n    type: int\n    stability: development\n    brief: x\n"),
        ("b.yaml", "file_format: definition/2\nattributes:\n  - key: x\n    type: int\n    stability: development\n    brief: x\n"),
    ]);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("b.yaml:3: attribute x is defined twice (first at a.yaml:3)")),
        "{found:#?}"
    );
}

#[test]
fn a_folder_without_yaml_and_a_missing_folder_are_clear_errors() {
    let empty =
        std::env::temp_dir().join(format!("p2p-otel-empty-contract-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let error = Contract::load(&empty).unwrap_err();
    assert!(matches!(error, ContractError::Empty { .. }), "{error}");
    std::fs::remove_dir_all(&empty).unwrap();
    let error = Contract::load(data("no-such-contract")).unwrap_err();
    assert!(error.to_string().contains("no-such-contract"), "{error}");
    assert!(std::error::Error::source(&error).is_some());
}

/// Edits that keep a file YAML-shaped often enough to reach the resolver.
fn mutate(text: &str, edits: &[(usize, usize, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    const ALPHABET: &[u8] = b" :-\n\t#'\"[]{}|>&*!%@`,?abc0123.\\";
    for &(at, len, pick) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match pick % 4 {
            0 => {
                let end = (at + len % 12).min(bytes.len());
                bytes.drain(at..end);
            }
            1 => bytes.insert(at, ALPHABET[usize::from(pick) % ALPHABET.len()]),
            2 => {
                let end = (at + len % 40).min(bytes.len());
                let copy: Vec<u8> = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes[at] = ALPHABET[len % ALPHABET.len()],
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the edits, loading returns a contract or problems that each name the file
    /// and a line inside it (or 0): never a panic.
    #[test]
    fn mutated_contract_files_never_panic_the_loader(
        file in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..6),
    ) {
        let names = ["registry.yaml", "spans.yaml", "metrics.yaml"];
        let mut files: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.to_string(), std::fs::read_to_string(data("contract").join(n)).unwrap()))
            .collect();
        files[file].1 = mutate(&files[file].1, &edits);
        let lines = files[file].1.lines().count() + 1;
        match Contract::loader().dependency(data("semconv/model")).load_sources(files.clone()) {
            Ok(contract) => {
                // Whatever loaded checks the good telemetry without panicking.
                let shop = Shop::good();
                let _ = contract.check(&TraceSet::new(shop.spans), &shop.metrics, &shop.logs);
            }
            Err(error) => {
                prop_assert!(!error.problems().is_empty(), "{error}");
                for problem in error.problems() {
                    prop_assert!(names.contains(&problem.path.as_str()) || problem.path.contains("semconv"), "{problem}");
                    if problem.path == names[file] {
                        prop_assert!(problem.line <= lines, "{problem} beyond {lines} lines");
                    }
                    prop_assert!(!problem.message.is_empty());
                }
            }
        }
    }
}

#[test]
fn generated_rules_dashboard_and_collector_config_use_the_contracts_names() {
    let contract = shop();
    let rules: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&generate::prometheus_rules(&contract)).unwrap();
    let rules = &rules["groups"][0]["rules"];
    assert_eq!(rules[0]["alert"], "ShopCheckoutSlow");
    assert_eq!(
        rules[0]["expr"].as_str().unwrap(),
        "histogram_quantile(0.99, sum by (le) (rate(shop_checkout_duration_bucket[5m])))\n  > 250"
    );
    assert_eq!(rules[0]["for"], "1m");
    assert_eq!(rules[1]["alert"], "ShopPaymentsFailing");
    assert!(rules[1]["expr"]
        .as_str()
        .unwrap()
        .starts_with("sum by () (rate(shop_orders{shop_payment_method=\"cash\"}[5m]))"));
    assert_eq!(rules[1]["labels"]["severity"], "warning");

    let dashboard: serde_json::Value =
        serde_json::from_str(&generate::grafana_dashboard(&contract, "Shop")).unwrap();
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert_eq!(
        exprs,
        [
            "histogram_quantile(0.5, sum by (le) (rate(shop_checkout_duration_bucket[$__rate_interval])))",
            "histogram_quantile(0.95, sum by (le) (rate(shop_checkout_duration_bucket[$__rate_interval])))",
            "sum by (shop_payment_method) (rate(shop_orders[$__rate_interval]))",
        ]
    );

    let options = generate::CollectorOptions::default();
    let config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&generate::collector_config(&contract, &options)).unwrap();
    assert_eq!(
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        "0.0.0.0:4317"
    );
    assert_eq!(
        config["exporters"]["prometheus"]["add_metric_suffixes"],
        false
    );
    assert_eq!(config["exporters"]["otlp"]["endpoint"], "jaeger:4317");
    let traces = &config["service"]["pipelines"]["traces"]["exporters"];
    assert_eq!(
        *traces,
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[debug, file, otlp]").unwrap()
    );
}

#[test]
fn collector_file_exporter_lines_mixing_signals_are_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("p2p-otel-contract-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("otel-output.jsonl");
    // What a Collector's file exporter writes: one request per line, any signal.
    std::fs::write(
        &path,
        concat!(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.instance.id","value":{"stringValue":"node-a"}}]},"scopeSpans":[{"scope":{},"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"pay","kind":3,"startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"shop.order.id","value":{"stringValue":"o-1"}},{"key":"shop.payment.method","value":{"stringValue":"iou"}}],"status":{}}]}]}]}"#,
            "\n\n",
            r#"{"resourceMetrics":[{"resource":{"attributes":[]},"scopeMetrics":[{"scope":{},"metrics":[{"name":"shop.orders","unit":"{order}","sum":{"dataPoints":[{"attributes":[{"key":"shop.payment.method","value":{"stringValue":"card"}}],"asInt":"3","timeUnixNano":"2"}],"aggregationTemporality":2,"isMonotonic":true}}]}]}]}"#,
            "\n",
        ),
    )
    .unwrap();
    let mut telemetry = Signals::default();
    telemetry.read_file(&path).unwrap();
    assert_eq!((telemetry.spans.len(), telemetry.metrics.len()), (1, 1));
    let report = shop().check(&TraceSet::new(telemetry.spans), &telemetry.metrics, &[]);
    let ids: Vec<&str> = report
        .at_level(Level::Violation)
        .map(|f| f.id.as_str())
        .collect();
    // The handler's caller never arrived, and `iou` is not a payment method.
    assert_eq!(
        ids,
        ["undefined_enum_variant", "unexpected_parent"],
        "{report}"
    );

    std::fs::write(&path, "{\"resourceSpans\": 3}\n").unwrap();
    let error = Signals::default().read_file(&path).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("otel-output.jsonl:1: not an OTLP-JSON export request"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_weaver_manifest_names_the_dependencies_as_weaver_reads_them() {
    let dir = std::env::temp_dir().join(format!("p2p-otel-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["registry.yaml", "spans.yaml", "metrics.yaml"] {
        std::fs::copy(data("contract").join(file), dir.join(file)).unwrap();
    }
    let manifest = format!(
        "name: shop\nsemconv_version: 0.1.0\nschema_base_url: https://example.com/schemas/\ndependencies:\n  - name: otel\n    registry_path: {}\n",
        data("semconv/model").display()
    );
    std::fs::write(dir.join("manifest.yaml"), manifest).unwrap();
    // No `.dependency(..)`: the manifest says where `server.address` and `error.type` are.
    let contract = Contract::load(&dir).unwrap();
    let shop = Shop::good();
    contract
        .check(&TraceSet::new(shop.spans), &shop.metrics, &shop.logs)
        .assert_no_violations()
        .unwrap();
    std::fs::write(
        dir.join("manifest.yaml"),
        "dependencies:\n  - name: otel\n    registry_path: https://github.com/open-telemetry/semantic-conventions.git[model]\n",
    )
    .unwrap();
    let error = Contract::load(&dir).unwrap_err().to_string();
    assert!(
        error.contains("manifest.yaml:3: dependency \"otel\" is fetched from https://"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A lost trace context fails several checks at once; the harness reports them all, the
/// contract's `missing_remote_parent` — the cause — before the extra root it causes.
#[tokio::test]
async fn a_lost_context_is_reported_cause_first_by_the_harness() {
    use p2p_otel_testkit::capture;
    use p2p_otel_testkit::strategy::invariants::Executed;
    use p2p_otel_testkit::strategy::sequence::{Harness, System};
    use p2p_otel_testkit::CaptureHandle;

    let contract = Contract::loader()
        .load_sources([(
            "echo.yaml",
            "groups:\n  - id: span.send\n    type: span\n    span_kind: client\n    stability: development\n    brief: Sends.\n  - id: span.handle\n    type: span\n    span_kind: server\n    stability: development\n    brief: Handles, under the sender's span on the other node.\n    annotations:\n      structure:\n        remote_parent: true\n",
        )])
        .unwrap();

    /// Sends, and handles in a span that forgot the caller's context: a root of its own.
    struct Forgetful {
        dispatch: tracing::Dispatch,
        finished: bool,
    }
    impl System for Forgetful {
        type Operation = ();
        type Outcome = ();
        async fn run(&mut self, (): &()) {
            tracing::dispatcher::with_default(&self.dispatch, || {
                tracing::info_span!("send", otel.kind = "client").in_scope(|| {});
                tracing::info_span!("handle", otel.kind = "server").in_scope(|| {});
            });
        }
        fn check(&mut self, (): &(), (): &()) -> Result<(), String> {
            Ok(())
        }
        fn expected_root(&self, (): &(), (): &()) -> Option<Executed> {
            Some(Executed {
                instance: "node-0".to_owned(),
                root: "send",
                failed: false,
            })
        }
        async fn flush(&self) -> Result<(), String> {
            Ok(())
        }
        fn finish(&mut self) -> Result<(), String> {
            self.finished = true;
            Ok(())
        }
    }

    let (dispatch, handle): (tracing::Dispatch, CaptureHandle) = capture::Builder::default()
        .resource_attribute("service.instance.id", "node-0")
        .dispatch();
    let mut system = Forgetful {
        dispatch,
        finished: false,
    };
    let error = Harness::new()
        .contract(contract)
        .run(&mut system, &[()], &handle)
        .await
        .unwrap_err();
    assert!(system.finished, "the final model check ran");
    let cause = error.find("missing_remote_parent");
    let symptom = error.find("root span(s)");
    assert!(
        error.starts_with("2 problems, the likely cause first") && cause < symptom,
        "{error}"
    );
    assert!(cause.is_some() && symptom.is_some(), "{error}");
}

/// A draft inferred from the shop's telemetry loads, keeps that telemetry, refers to the
/// semantic conventions instead of declaring their attributes again, and catches a
/// required attribute going missing.
#[test]
fn a_contract_inferred_from_a_run_keeps_it_and_catches_a_regression() {
    let shop_telemetry = Shop::good();
    let traces = TraceSet::new(shop_telemetry.spans.clone());
    let draft = p2p_otel_testkit::contract::infer(
        &traces,
        &shop_telemetry.metrics,
        &shop_telemetry.logs,
        Some(&data("semconv/model")),
    )
    .unwrap();
    let names: Vec<&str> = draft
        .files()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        ["registry.yaml", "spans.yaml", "metrics.yaml", "events.yaml"]
    );
    let registry = &draft.files()[0].1;
    assert!(
        registry.contains("# server.address: defined by the dependency registry"),
        "{registry}"
    );
    insta::assert_snapshot!("inferred_spans", draft.files()[1].1);
    insta::assert_snapshot!(
        "inferred_metrics_and_events",
        format!("{}{}", draft.files()[2].1, draft.files()[3].1)
    );
    let contract = draft.load().unwrap();
    let report = contract.check(&traces, &shop_telemetry.metrics, &shop_telemetry.logs);
    assert!(!report.has_violations(), "{report}");
    assert_eq!(report.coverage().ratio(), 1.0, "{report}");

    let mut broken = Shop::good();
    broken.span("pay").attributes.remove("shop.payment.method");
    broken.span("charge").kind = SpanKind::Internal;
    let report = contract.check(&TraceSet::new(broken.spans), &broken.metrics, &broken.logs);
    let ids: Vec<&str> = report
        .at_level(Level::Violation)
        .map(|f| f.id.as_str())
        .collect();
    assert!(ids.contains(&"required_attribute_not_present"), "{report}");
    assert!(ids.contains(&"unexpected_span_kind"), "{report}");
}

/// A metric label fed a per-request id exceeds its cardinality budget; a bounded label
/// keeps it. The finding names the attribute, the count and examples.
#[test]
fn a_label_fed_a_per_request_id_exceeds_its_cardinality_budget() {
    // The points' resources carry service.* attributes: the semantic conventions define them.
    let contract = Contract::loader()
        .dependency(data("semconv/model"))
        .load_sources([(
            "metrics.yaml",
            r#"
groups:
  - id: metric.requests
    type: metric
    metric_name: requests
    instrument: counter
    unit: "{request}"
    stability: development
    brief: Requests.
    attributes:
      - id: route
        type: string
        stability: development
        brief: The route.
        requirement_level: required
      - id: request_id
        type: string
        stability: development
        brief: What no label should be.
        requirement_level: recommended
    annotations:
      cardinality:
        route: 5
        request_id: 10
"#,
        )])
        .unwrap();
    let request = |route: &str, id: Option<usize>| {
        let mut point = point(
            "requests",
            MetricKind::Sum { monotonic: true },
            "{request}",
            PointValue::Int(1),
        );
        point.attributes.insert("route".into(), route.into());
        if let Some(id) = id {
            point
                .attributes
                .insert("request_id".into(), format!("req-{id:04}").into());
        }
        point
    };
    let bounded: Vec<MetricPoint> = (0..200)
        .map(|i| request(["/a", "/b", "/c"][i % 3], None))
        .collect();
    let report = contract.check(&TraceSet::default(), &bounded, &[]);
    assert!(!report.has_violations(), "{report}");

    let per_request: Vec<MetricPoint> = (0..200).map(|i| request("/a", Some(i))).collect();
    let report = contract.check(&TraceSet::default(), &per_request, &[]);
    let exceeded: Vec<_> = report.with_id("cardinality_exceeded").collect();
    assert_eq!(exceeded.len(), 1, "{report}");
    assert_eq!(exceeded[0].level, Level::Violation);
    assert_eq!(exceeded[0].context["attribute_key"], "request_id");
    assert_eq!(exceeded[0].context["distinct"], "200");
    assert_eq!(
        exceeded[0].context["examples"],
        "req-0000, req-0001, req-0002"
    );
    assert!(
        exceeded[0].message.starts_with(
            "attribute request_id of metric requests took 200 distinct values, its budget is 10"
        ),
        "{}",
        exceeded[0].message
    );

    let broken = Contract::loader().load_sources([(
        "metrics.yaml",
        "groups:\n  - id: metric.x\n    type: metric\n    metric_name: x\n    instrument: counter\n    unit: \"1\"\n    stability: development\n    brief: X.\n    annotations:\n      cardinality: {route: none}\n",
    )]);
    let problems = broken.unwrap_err().to_string();
    assert!(
        problems.contains("annotations.cardinality") && problems.contains("e.g. `{operation: 20}`"),
        "{problems}"
    );
}

/// The harness checks each operation's trace against the span count its system expects.
#[tokio::test]
async fn the_harness_checks_the_spans_each_operation_leaves() {
    use p2p_otel_testkit::capture;
    use p2p_otel_testkit::strategy::invariants::Executed;
    use p2p_otel_testkit::strategy::sequence::{Harness, System};

    /// A publish that stores once: two spans a run.
    struct Publisher {
        dispatch: tracing::Dispatch,
        expected: usize,
    }
    impl System for Publisher {
        type Operation = ();
        type Outcome = ();
        async fn run(&mut self, (): &()) {
            tracing::dispatcher::with_default(&self.dispatch, || {
                tracing::info_span!("publish")
                    .in_scope(|| tracing::info_span!("store").in_scope(|| {}));
            });
        }
        fn check(&mut self, (): &(), (): &()) -> Result<(), String> {
            Ok(())
        }
        fn expected_root(&self, (): &(), (): &()) -> Option<Executed> {
            Some(Executed {
                instance: "node-0".to_owned(),
                root: "publish",
                failed: false,
            })
        }
        fn expected_spans(&self, (): &(), (): &()) -> Option<usize> {
            Some(self.expected)
        }
        async fn flush(&self) -> Result<(), String> {
            Ok(())
        }
    }
    for (expected, passes) in [(2, true), (3, false)] {
        let (dispatch, handle) = capture::Builder::default()
            .resource_attribute("service.instance.id", "node-0")
            .dispatch();
        let mut system = Publisher { dispatch, expected };
        let result = Harness::new().run(&mut system, &[(), ()], &handle).await;
        match (result, passes) {
            (Ok(verified), true) => assert_eq!(verified.executed.len(), 2),
            (Err(error), false) => assert!(
                error.contains("node node-0, op 0 (publish): its trace holds 2 span(s), the system expects 3: publish, store"),
                "{error}"
            ),
            (result, _) => panic!("expected {expected} spans: {result:?}"),
        }
    }
}

/// What a run can contain that a naive draft would get wrong: mixed kinds under one name,
/// orphans, names that sanitise to the same id, control characters.
#[test]
fn an_inferred_draft_loads_and_keeps_awkward_telemetry() {
    let mut spans = vec![
        span(1, None, "rpc", SpanKind::Client, "node-a"),
        span(2, Some(1), "rpc", SpanKind::Server, "node-b"),
        span(3, Some(99), "dht-put", SpanKind::Internal, "node-a"),
        span(4, Some(1), "dht_put", SpanKind::Internal, "node-a"),
        span(5, Some(1), "Dht_Put", SpanKind::Internal, "node-a"),
    ];
    spans[0]
        .attributes
        .insert("note\u{7f}".into(), Value::from("bell\u{7}\u{85}"));
    // One package over and over is a string, not an enum of one member.
    for span in &mut spans {
        span.attributes
            .insert("package".into(), Value::from("acme/tool"));
    }
    let traces = TraceSet::new(spans);
    let draft = p2p_otel_testkit::contract::infer(&traces, &[], &[], None).unwrap();
    let contract = draft
        .load()
        .unwrap_or_else(|e| panic!("{e}\n{}", draft.files()[1].1));
    // The draft keeps the telemetry by the registry's rules; Weaver's advice judges the
    // names it chose (a key with a control character), which no draft can change.
    let report = contract.clone().with_advice(false).check(&traces, &[], &[]);
    assert!(!report.has_violations(), "{report}\n{}", draft.files()[1].1);
    let advised = contract.check(&traces, &[], &[]);
    let violations: Vec<_> = advised.at_level(Level::Violation).collect();
    assert_eq!(violations.len(), 1, "{advised}");
    assert_eq!(violations[0].id, "invalid_format", "{advised}");
    assert!(
        draft.files()[1].1.contains("span.dht_put_2"),
        "{}",
        draft.files()[1].1
    );
    assert!(
        draft.files()[0]
            .1
            .contains("- key: \"package\"\n    type: string"),
        "{}",
        draft.files()[0].1
    );
    // A budget on a key the group does not carry is a load error, not a silent pass.
    let error = Contract::loader()
        .load_sources([(
            "m.yaml",
            "groups:\n  - id: metric.x\n    type: metric\n    metric_name: x\n    instrument: counter\n    unit: \"1\"\n    stability: development\n    brief: X.\n    annotations:\n      cardinality: {rout: 5}\n",
        )])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("rout is not an attribute of this group"),
        "{error}"
    );
}
