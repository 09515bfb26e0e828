//! TraceQL in the test: every example query of Tempo's TraceQL documentation page that
//! the kit supports, each against traces built for it, with the matches worked out by
//! hand from the documented semantics; the errors a bad query gets; the failure report of
//! `expect_query`; and the structural operators checked against the tree API on generated
//! traces.

use std::sync::Arc;

use p2p_otel_testkit::model::{
    ParentRef, Resource, Scope, SpanEvent, SpanId, SpanKind, SpanLink, SpanRecord, StatusCode,
    TraceId, Value,
};
use p2p_otel_testkit::traceql::Query;
use p2p_otel_testkit::tree::TraceSet;

const MS: u64 = 1_000_000;

fn resource(pairs: &[(&str, &str)]) -> Arc<Resource> {
    let mut resource = Resource::default();
    for (key, value) in pairs {
        resource.attributes.insert((*key).into(), (*value).into());
    }
    Arc::new(resource)
}

fn trace_id(n: u16) -> TraceId {
    let mut bytes = [0; 16];
    bytes[14..].copy_from_slice(&n.to_be_bytes());
    TraceId::from_bytes(bytes)
}

fn span_id(n: u8) -> SpanId {
    let mut bytes = [0; 8];
    bytes[7] = n;
    SpanId::from_bytes(bytes)
}

struct Span(SpanRecord);

impl Span {
    fn new(
        trace: u16,
        id: u8,
        name: &str,
        resource: &Arc<Resource>,
        start_ms: u64,
        end_ms: u64,
    ) -> Self {
        let mut span = SpanRecord::new(trace_id(trace), span_id(id), name);
        span.resource = resource.clone();
        span.start_unix_nanos = start_ms * MS;
        span.end_unix_nanos = Some(end_ms * MS);
        Span(span)
    }
    fn under(mut self, parent: u8, remote: bool) -> Self {
        self.0.parent = Some(ParentRef {
            span_id: span_id(parent),
            remote: Some(remote),
        });
        self
    }
    fn kind(mut self, kind: SpanKind) -> Self {
        self.0.kind = kind;
        self
    }
    fn status(mut self, code: StatusCode, message: &str) -> Self {
        self.0.status.code = code;
        self.0.status.message = message.into();
        self
    }
    fn attr(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.attributes.insert(key.into(), value.into());
        self
    }
}

/// Two traces, made so that each documented example has something to find or to miss.
///
/// ```text
/// T1 (id …1234, 0–150 ms)
/// └─ POST /api/orders   frontend server error "Forbidden"   (event "exception" at +3 ms, scope grpc 1.0.0)
///    ├─ GET /catalog    productcatalogservice client ok      (remote parent)
///    │  └─ db query     productcatalogservice client error
///    ├─ DELETE /cart    frontend client error
///    └─ GET /health     frontend server ok
/// T2 (id …5678, 1000–1050 ms)
/// └─ HTTP GET           gateway server ok                    (link to T1's POST)
///    └─ GET /catalog    productcatalogservice client unset   (remote parent)
/// ```
fn shop() -> TraceSet {
    let front = resource(&[
        ("service.name", "frontend"),
        ("deployment.environment", "prod-eu"),
        ("cloud.region", "us-east-1"),
        ("k8s.cluster.name", "service-name"),
    ]);
    let catalog = resource(&[
        ("service.name", "productcatalogservice"),
        ("deployment.environment", "production"),
        ("cloud.region", "us-west-1"),
    ]);
    let gateway = resource(&[
        ("service.name", "gateway"),
        ("deployment.environment", "staging"),
        ("cloud.region", "us-west-1"),
    ]);
    let mut orders = Span::new(0x1234, 1, "POST /api/orders", &front, 0, 150)
        .kind(SpanKind::Server)
        .status(StatusCode::Error, "Forbidden")
        .attr("http.method", "POST")
        .attr("http.status_code", 500)
        .attr("http.url", "/path/of/api")
        .attr("foo", vec![Value::from("bar"), Value::from("baz")])
        .attr(
            "http.request.header.Accept",
            vec![Value::from("application/json")],
        )
        .attr("retry_count", 0)
        .attr("value", 2.5)
        .attr("required_field", "x")
        .attr("attribute name with space", "value")
        .attr("bytesProcessed", 600_000_000)
        .attr("http.request_content_length", 20 * 1024 * 1024)
        .0;
    orders.events.push(SpanEvent {
        name: "exception".into(),
        time_unix_nanos: 3 * MS,
        attributes: Default::default(),
    });
    orders.scope = Arc::new(Scope {
        name: "grpc".into(),
        version: "1.0.0".into(),
        attributes: Default::default(),
    });
    let mut home = Span::new(0x5678, 11, "HTTP GET", &gateway, 1000, 1050)
        .kind(SpanKind::Server)
        .status(StatusCode::Ok, "")
        .attr("http.method", "GET")
        .attr("http.status_code", 200)
        .attr("foo", vec![Value::from("baz")])
        .0;
    home.links.push(SpanLink {
        trace_id: trace_id(0x1234),
        span_id: span_id(1),
        attributes: Default::default(),
    });
    TraceSet::new([
        orders,
        Span::new(0x1234, 2, "GET /catalog", &catalog, 10, 60)
            .under(1, true)
            .kind(SpanKind::Client)
            .status(StatusCode::Ok, "")
            .attr("http.method", "GET")
            .attr("http.status_code", 200)
            .attr("bytesProcessed", 600_000_000)
            .0,
        Span::new(0x1234, 3, "db query", &catalog, 20, 40)
            .under(2, false)
            .kind(SpanKind::Client)
            .status(StatusCode::Error, "")
            .attr("db.name", "db-shard-001")
            .0,
        Span::new(0x1234, 4, "DELETE /cart", &front, 70, 100)
            .under(1, false)
            .kind(SpanKind::Client)
            .status(StatusCode::Error, "")
            .attr("http.method", "DELETE")
            .attr("http.status_code", 503)
            .0,
        Span::new(0x1234, 5, "GET /health", &front, 110, 111)
            .under(1, false)
            .kind(SpanKind::Server)
            .status(StatusCode::Ok, "")
            .attr("http.method", "GET")
            .attr("http.status_code", 200)
            .0,
        home,
        Span::new(0x5678, 12, "GET /catalog", &catalog, 1010, 1030)
            .under(11, true)
            .kind(SpanKind::Client)
            .attr("http.method", "GET")
            .attr("http.status_code", 200)
            .attr("http.request.header.Accept", vec![Value::from("text/html")])
            .0,
    ])
}

const T1_ALL: &str = "T1: POST /api/orders, GET /catalog, db query, DELETE /cart, GET /health";
const T2_ALL: &str = "T2: HTTP GET, GET /catalog";

/// Every example query of Tempo's "Construct a TraceQL query" page in the subset, with the
/// spansets it must return (one line per spanset: the trace, then its spans by start).
const DOC_EXAMPLES: &[(&str, &[&str])] = &[
    // Spanset filters.
    ("{ }", &[T1_ALL, T2_ALL]),
    (
        r#"{resource.service.name = "frontend" && name = "POST /api/orders"}"#,
        &["T1: POST /api/orders"],
    ),
    (
        r#"{ resource.service.name="frontend" && name = "POST /api/orders" && status = error }"#,
        &["T1: POST /api/orders"],
    ),
    (
        r#"{ resource.service.name="frontend" && name = "POST /api/orders" && span.http.status_code >= 500 }"#,
        &["T1: POST /api/orders"],
    ),
    (
        "{ span.http.status_code >= 200 && span.http.status_code < 300 }",
        &["T1: GET /catalog, GET /health", T2_ALL],
    ),
    (
        r#"{ span.http.method = "DELETE" && status != ok }"#,
        &["T1: DELETE /cart"],
    ),
    (
        r#"{ resource.deployment.environment =~ "prod-.*" && span.http.status_code = 200 }"#,
        &["T1: GET /health"],
    ),
    // Spanset operators.
    (
        r#"{ resource.deployment.environment = "production" } && { span.http.status_code = 200 }"#,
        &["T1: GET /catalog, db query, GET /health", T2_ALL],
    ),
    (
        r#"{ span.http.method = "GET" && status = ok } && { span.http.method = "DELETE" && status != ok }"#,
        &["T1: GET /catalog, DELETE /cart, GET /health"],
    ),
    (
        r#"{ resource.cloud.region = "us-east-1" } && { resource.cloud.region = "us-west-1" }"#,
        &[T1_ALL],
    ),
    (
        r#"{ resource.cloud.region = "us-east-1" && resource.cloud.region = "us-west-1" }"#,
        &[],
    ),
    (
        r#"{ resource.cloud.region = "us-east-1" } || { resource.cloud.region = "us-west-1" }"#,
        &[T1_ALL, T2_ALL],
    ),
    (
        r#"{ resource.cloud.region =~ "us-east-1|us-west-1" }"#,
        &[T1_ALL, T2_ALL],
    ),
    // Arrays.
    (r#"{ span.foo = "bar" }"#, &["T1: POST /api/orders"]),
    (r#"{ span.foo != "bar" }"#, &["T2: HTTP GET"]),
    (
        r#"{ span.http.request.header.Accept =~ "application.*" }"#,
        &["T1: POST /api/orders"],
    ),
    (
        r#"{ span.http.request.header.Accept !~ "application.*" }"#,
        &["T2: GET /catalog"],
    ),
    // Structural operators.
    (
        r#"{ resource.service.name="frontend" } >> { status = error }"#,
        &["T1: db query, DELETE /cart"],
    ),
    (
        r#"{ } !< { resource.service.name = "productcatalogservice" }"#,
        &["T1: db query", "T2: GET /catalog"],
    ),
    (
        r#"{ resource.service.name = "productcatalogservice" } ~ { resource.service.name="frontend" }"#,
        &["T1: DELETE /cart, GET /health"],
    ),
    (
        r#"{ span.http.url = "/path/of/api" } >> { span.db.name = "db-shard-001" }"#,
        &["T1: db query"],
    ),
    (
        r#"{ span.http.url = "/path/of/api" && status = error } &>> { status = error }"#,
        &["T1: POST /api/orders, db query, DELETE /cart"],
    ),
    (
        "{ status = error } !< { status = error }",
        &["T1: db query, DELETE /cart"],
    ),
    // Intrinsics.
    (r#"{ span:name = "foo" }"#, &[]),
    (r#"{ event:name = "foo" }"#, &[]),
    (r#"{ trace:id = "1234" }"#, &[T1_ALL]),
    (r#"{ link:traceID = "1234" }"#, &["T2: HTTP GET"]),
    (
        "{ span:status = ok }",
        &["T1: GET /catalog, GET /health", "T2: HTTP GET"],
    ),
    (
        r#"{ span:statusMessage = "Forbidden" }"#,
        &["T1: POST /api/orders"],
    ),
    ("{ span:duration > 100ms }", &["T1: POST /api/orders"]),
    (
        "{ span:kind = server }",
        &["T1: POST /api/orders, GET /health", "T2: HTTP GET"],
    ),
    (
        r#"{ span:id = "0000000000000001" }"#,
        &["T1: POST /api/orders"],
    ),
    ("{ trace:duration > 100ms }", &[T1_ALL]),
    (r#"{ trace:rootName = "HTTP GET" }"#, &[T2_ALL]),
    (r#"{ trace:rootService = "gateway" }"#, &[T2_ALL]),
    (r#"{ event:name = "exception" }"#, &["T1: POST /api/orders"]),
    ("{ event:timeSinceStart > 2ms}", &["T1: POST /api/orders"]),
    (r#"{ link:spanID = "0000000000000001" }"#, &["T2: HTTP GET"]),
    (
        r#"{ instrumentation:name = "grpc" }"#,
        &["T1: POST /api/orders"],
    ),
    (
        r#"{ instrumentation:version = "1.0.0" }"#,
        &["T1: POST /api/orders"],
    ),
    (
        r#"{ resource.k8s.cluster.name="service-name" && trace:rootName !~ ".*perf.*"}"#,
        &["T1: POST /api/orders, DELETE /cart, GET /health"],
    ),
    // Attributes and literals.
    (
        r#"{ span."attribute name with space" = "value" }"#,
        &["T1: POST /api/orders"],
    ),
    ("{ span.retry_count > -1 }", &["T1: POST /api/orders"]),
    ("{ span.value > 1.5 }", &["T1: POST /api/orders"]),
    ("{ span.optional_field = nil }", &[T1_ALL, T2_ALL]),
    ("{ span.required_field != nil }", &["T1: POST /api/orders"]),
    (r#"{ span.http.status_code >= "400" }"#, &[]),
    (
        r#"{ span.http.method =~ "DELETE|GET" }"#,
        &["T1: GET /catalog, DELETE /cart, GET /health", T2_ALL],
    ),
    // Pipelines.
    (
        "{ span.http.status_code >= 200 && span.http.status_code < 300 } | count() > 2",
        &[],
    ),
    ("{ } | sum(span.bytesProcessed) > 1000000000", &[T1_ALL]),
    ("avg(duration) > 20ms", &[T1_ALL, T2_ALL]),
    (
        "{ status = error } | by(resource.service.name) | count() > 1",
        &["T1: POST /api/orders, DELETE /cart"],
    ),
    (
        "{ span.http.request_content_length > 10 * 1024 * 1024 }",
        &["T1: POST /api/orders"],
    ),
    (
        "{ span.http.status_code = 200 } | select(resource.service.name)",
        &["T1: GET /catalog, GET /health", T2_ALL],
    ),
    (
        "{ status = error } | select(span.http.status_code, span.http.url)",
        &["T1: POST /api/orders, db query, DELETE /cart"],
    ),
];

/// Beyond the page: the other structural operators, the kit's remote-parent intrinsic,
/// precedence, and pipelines inside operators.
const MORE: &[(&str, &[&str])] = &[
    (
        r#"{ name = "POST /api/orders" } > { }"#,
        &["T1: GET /catalog, DELETE /cart, GET /health"],
    ),
    (r#"{ name = "db query" } < { }"#, &["T1: GET /catalog"]),
    (
        r#"{ name = "db query" } << { }"#,
        &["T1: POST /api/orders, GET /catalog"],
    ),
    (
        r#"{ name = "db query" } &< { }"#,
        &["T1: GET /catalog, db query"],
    ),
    (
        r#"{ name = "GET /catalog" } &~ { }"#,
        &["T1: GET /catalog, DELETE /cart, GET /health"],
    ),
    (
        r#"{ name = "GET /catalog" } !> { }"#,
        &[
            "T1: POST /api/orders, GET /catalog, DELETE /cart, GET /health",
            T2_ALL,
        ],
    ),
    (r#"{ } !~ { }"#, &["T1: POST /api/orders, db query", T2_ALL]),
    (
        "{ kind = server } > { span:remoteParent = true }",
        &["T1: GET /catalog", "T2: GET /catalog"],
    ),
    (
        "{ span:remoteParent = true } >> { status = error }",
        &["T1: db query"],
    ),
    (
        r#"{ resource.service.name = "gateway" } && { kind = server } > { kind = client }"#,
        &[T2_ALL],
    ),
    (
        "{ span.http.status_code >= 200 && span.http.status_code < 300 } | count() > 1",
        &["T1: GET /catalog, GET /health", T2_ALL],
    ),
    (
        "({ status = error } | count() > 2) && { kind = server }",
        &["T1: POST /api/orders, db query, DELETE /cart, GET /health"],
    ),
    (
        "{ .http.status_code = 200 || .http.status_code = 500 && kind = server }",
        &["T1: POST /api/orders, GET /health", "T2: HTTP GET"],
    ),
    (
        "{ duration - 10ms * 2 >= 30ms }",
        &["T1: POST /api/orders, GET /catalog", "T2: HTTP GET"],
    ),
    (
        "{ !(status = error) && kind = client }",
        &["T1: GET /catalog", "T2: GET /catalog"],
    ),
    ("{ } | max(duration) > 100ms", &[T1_ALL]),
    ("{ } | min(span.http.status_code) >= 200", &[T1_ALL, T2_ALL]),
    (
        "{ status = error } | by(resource.service.name) | coalesce() | count() = 3",
        &["T1: POST /api/orders, db query, DELETE /cart"],
    ),
    (
        r#"{ span.http.method = `GET` } | by(kind)"#,
        &[
            "T1: GET /catalog",
            "T1: GET /health",
            "T2: HTTP GET",
            "T2: GET /catalog",
        ],
    ),
];

fn describe(traces: &TraceSet, query: &str) -> Vec<String> {
    let first = traces.traces()[0].trace_id();
    traces
        .select(query)
        .unwrap_or_else(|error| panic!("{error}"))
        .iter()
        .map(|spanset| {
            let trace = if spanset.trace().trace_id() == first {
                "T1"
            } else {
                "T2"
            };
            let names: Vec<&str> = spanset.spans().iter().map(|span| span.name()).collect();
            format!("{trace}: {}", names.join(", "))
        })
        .collect()
}

fn check_table(table: &[(&str, &[&str])]) {
    let traces = shop();
    let mut failures = Vec::new();
    for (query, expected) in table {
        let got = describe(&traces, query);
        if got != *expected {
            failures.push(format!(
                "{query}\n    expected {expected:?}\n    got      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

#[test]
fn every_documented_example_finds_what_the_documentation_says() {
    check_table(DOC_EXAMPLES);
}

#[test]
fn structural_operators_precedence_and_pipelines_beyond_the_examples() {
    check_table(MORE);
}

#[test]
fn pipelines_attach_groups_aggregates_and_selected_fields() {
    let traces = shop();
    let found = traces
        .select("{ status = error } | by(resource.service.name) | count() > 1 | select(span.http.status_code, span:duration)")
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].labels(),
        [
            (
                "by(resource.service.name)".to_owned(),
                "\"frontend\"".to_owned()
            ),
            ("count()".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(
        found[0].selected(1),
        [
            ("span.http.status_code".to_owned(), "503".to_owned()),
            ("span:duration".to_owned(), "30ms".to_owned())
        ]
    );
    let average = traces.select("avg(duration) > 20ms").unwrap();
    assert_eq!(
        average[1].labels(),
        [("avg(duration)".to_owned(), "35ms".to_owned())]
    );
    let sum = traces
        .select("{ } | sum(span.bytesProcessed) > 1000000000")
        .unwrap();
    assert_eq!(sum[0].labels()[0].1, "1200000000");
}

#[test]
fn a_spanset_renders_the_matches_under_their_ancestors() {
    let traces = shop();
    let found = traces
        .select(
            r#"{ span.http.url = "/path/of/api" } >> { status = error } | select(span.db.name)"#,
        )
        .unwrap();
    insta::assert_snapshot!(found[0].to_string(), @r#"
    trace 00000000000000000000000000001234
    └─ POST /api/orders @"frontend" kind=server status=error 150ms
       ├─ GET /catalog @"productcatalogservice" kind=client status=ok (remote parent) 50ms
       │  └─ db query @"productcatalogservice" kind=client status=error 20ms ◀
       │       span.db.name = "db-shard-001"
       └─ DELETE /cart @"frontend" kind=client status=error 30ms ◀
    "#);
}

/// Bad queries: where the caret goes and what the message says.
#[test]
fn a_bad_query_gets_a_caret_and_what_was_expected() {
    let cases: &[(&str, usize, &str)] = &[
        (r#"{ name = "p2p_search" "#, 22, "expected `}`"),
        (
            r#"{ name = "p2p_search" } >> "#,
            27,
            "expected a spanset filter `{ … }` or `(`",
        ),
        (
            "{ status > error }",
            9,
            "status and kind take only `=` and `!=`, not `>`",
        ),
        (r#"{ name =~ "(" }"#, 10, "invalid regular expression"),
        ("{ span:foo = 1 }", 2, "unknown field `span:foo`"),
        (
            "{ foo = 1 }",
            2,
            "unknown field `foo`: attributes start with `.`",
        ),
        ("{ .a / 0 = 1 }", 5, "division by zero"),
        (
            "{ name = nil }",
            7,
            "`nil` cannot be compared with an intrinsic",
        ),
        (
            "({ .a = 1 } | by(.b)) > { }",
            22,
            "consider using coalesce()",
        ),
        (
            "{ duration > 12parsecs }",
            13,
            "`12parsecs` is not a number or a duration",
        ),
        (r#"{ .a = "x }"#, 11, "expected a closing `\"`"),
        ("{ } | rate()", 6, "`rate` is not a pipeline stage"),
        (
            "{ parent.a = 1 }",
            2,
            "`parent.` attributes are not supported",
        ),
        ("{ .a = 1 } extra", 11, "expected the end of the query"),
        (r#"{ .a = "\q" }"#, 8, "invalid escape `\\q`"),
        ("", 0, "expected a spanset filter such as"),
    ];
    let mut failures = Vec::new();
    for (query, offset, message) in cases {
        match Query::parse(query) {
            Ok(_) => failures.push(format!("{query:?} parsed")),
            Err(error) => {
                if error.offset() != *offset || !error.message().contains(message) {
                    failures.push(format!(
                        "{query:?}: wanted offset {offset} and {message:?}, got\n{error}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    insta::assert_snapshot!(Query::parse("{ span.http.status_code >= 500 && kind = sever }").unwrap_err().to_string(), @r#"
    invalid TraceQL query: unknown field `sever`: attributes start with `.`, `span.`, `resource.`, `event.`, `link.` or `instrumentation.`; intrinsics are name, status, statusMessage, kind, duration and span:duration, span:name, span:statusMessage, span:status, span:kind, span:id, span:parentID, span:remoteParent, trace:id, trace:duration, trace:rootName, trace:rootService, event:name, event:timeSinceStart, link:traceID, link:spanID, instrumentation:name, instrumentation:version; a string needs quotes: "sever"
      { span.http.status_code >= 500 && kind = sever }
                                               ^
    "#);
}

#[test]
fn expect_query_reports_how_far_the_query_matched() {
    let traces = shop();
    let error = traces
        .expect_query(r#"{ resource.service.name = "frontend" } > { kind = server && status = error } | count() > 0"#)
        .unwrap_err();
    insta::assert_snapshot!(error.message().split("received").next().unwrap_or_default(), @r#"
    expected the TraceQL query to match; it matched nothing
      { resource.service.name = "frontend" } > { kind = server && status = error } | count() > 0
    how far it matched, over 2 trace(s):
      { resource.service.name = "frontend" }  kept 3 of 7 spans offered
      { kind = server && status = error }  kept 1 of 7 spans offered
      stage 1 `{ resource.service.name = "frontend" } > { kind = server && status = error }` left 2 of 2 trace(s) with nothing

    "#);
    assert!(
        error.message().contains("└─ POST /api/orders"),
        "the trees follow:\n{error}"
    );
    traces
        .expect_query_none("{ status = error } !< { status = error } | count() > 2")
        .unwrap();
    let error = traces.expect_query_none("{ status = error }").unwrap_err();
    assert!(
        error
            .message()
            .contains("it matched 1 spanset(s):\ntrace 00000000000000000000000000001234\n"),
        "{error}"
    );
}

mod generated {
    //! The structural operators against the tree API (`SpanRef::parent`, `ancestors`),
    //! on generated traces with orphans, shared and missing parents.

    use p2p_otel_testkit::model::SpanRecord;
    use p2p_otel_testkit::tree::{SpanRef, TraceSet};
    use proptest::prelude::*;

    /// Valid trees with names from three, some spans dropped so that orphans (and
    /// orphans sharing a missing parent) occur.
    fn traces_with_names() -> impl Strategy<Value = TraceSet> {
        (
            p2p_otel_testkit::strategy::arb_span_set(),
            proptest::collection::vec(0u8..3, 24),
            proptest::collection::vec(any::<bool>(), 24),
        )
            .prop_map(
                |(spans, names, dropped): (Vec<SpanRecord>, Vec<u8>, Vec<bool>)| {
                    TraceSet::new(spans.into_iter().enumerate().filter_map(|(i, mut span)| {
                        span.name = ["a", "b", "c"][usize::from(names[i % 24])].to_owned();
                        (i == 0 || !dropped[i % 24]).then_some(span)
                    }))
                },
            )
    }

    fn named(span: &SpanRef<'_>, name: &str) -> bool {
        span.name() == name
    }

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids
    }

    fn query_ids(traces: &TraceSet, query: &str) -> Vec<String> {
        sorted(
            traces
                .select(query)
                .unwrap()
                .iter()
                .flat_map(|set| {
                    set.spans()
                        .iter()
                        .map(|span| span.record().span_id.to_string())
                })
                .collect(),
        )
    }

    fn api_ids(traces: &TraceSet, keep: impl Fn(&SpanRef<'_>) -> bool) -> Vec<String> {
        sorted(
            traces
                .spans()
                .filter(|span| keep(span))
                .map(|span| span.record().span_id.to_string())
                .collect(),
        )
    }

    proptest! {
        #![proptest_config(p2p_otel_testkit::strategy::config(64, "proptest-regressions/traceql.txt"))]
        #[test]
        fn structural_operators_agree_with_the_tree_api(traces in traces_with_names()) {
            prop_assert_eq!(
                query_ids(&traces, r#"{ name = "a" } > { name = "b" }"#),
                api_ids(&traces, |s| named(s, "b") && s.parent().is_some_and(|p| named(&p, "a")))
            );
            prop_assert_eq!(
                query_ids(&traces, r#"{ name = "a" } >> { name = "b" }"#),
                api_ids(&traces, |s| named(s, "b") && s.ancestors().any(|p| named(&p, "a")))
            );
            prop_assert_eq!(
                query_ids(&traces, r#"{ name = "a" } < { name = "b" }"#),
                api_ids(&traces, |s| named(s, "b") && s.children().iter().any(|c| named(c, "a")))
            );
            prop_assert_eq!(
                query_ids(&traces, r#"{ name = "a" } << { name = "b" }"#),
                api_ids(&traces, |s| named(s, "b") && s.descendants().iter().any(|d| named(d, "a")))
            );
            prop_assert_eq!(
                query_ids(&traces, r#"{ name = "a" } !>> { name = "b" }"#),
                api_ids(&traces, |s| named(s, "b") && !s.ancestors().any(|p| named(&p, "a")))
            );
            // Siblings: the same parent id (roots: no parent), another span than itself.
            let parent_of = |s: &SpanRef<'_>| s.record().parent.map(|p| p.span_id);
            prop_assert_eq!(
                query_ids(&traces, r#"{ name = "a" } ~ { name = "b" }"#),
                api_ids(&traces, |s| named(s, "b") && s.trace().spans().any(|o| {
                    o != *s && named(&o, "a") && parent_of(&o) == parent_of(s)
                }))
            );
        }
    }
}

/// Hostile queries and data: deep nesting is refused (not a stack overflow), an
/// oversized query is refused, `^` binds tighter than `*`, and parent links that form a
/// cycle neither hang the evaluator nor the rendering.
#[test]
fn hostile_queries_and_cyclic_traces_end_with_an_answer() {
    let deep = format!("{{ {}true }}", "!".repeat(60_000));
    let error = Query::parse(&deep).unwrap_err();
    assert!(
        error.message().contains("nests deeper than 128 levels"),
        "{}",
        error.message()
    );
    let parens = format!("{}{{ }}{}", "(".repeat(30_000), ")".repeat(30_000));
    assert!(Query::parse(&parens).is_err());
    let long = format!("{{ name = \"{}\" }}", "x".repeat(70_000));
    assert!(Query::parse(&long)
        .unwrap_err()
        .message()
        .contains("at most 65536"));
    assert!(Query::parse(&format!("{}{{ }}{}", "(".repeat(100), ")".repeat(100))).is_ok());

    let traces = shop();
    assert_eq!(
        describe(
            &traces,
            "{ 2 ^ 3 * 2 = 16 && 2 ^ 3 ^ 2 = 512 && 2 ^ -1 = 0.5 }"
        ),
        [T1_ALL, T2_ALL]
    );

    // Two spans, each the other's parent: walked, rendered, reported, never looped on.
    let mut a = SpanRecord::new(trace_id(9), span_id(1), "a");
    a.parent = Some(ParentRef {
        span_id: span_id(2),
        remote: None,
    });
    let mut b = SpanRecord::new(trace_id(9), span_id(2), "b");
    b.parent = Some(ParentRef {
        span_id: span_id(1),
        remote: None,
    });
    // The cycle is broken at its earliest span, which becomes an orphan: b under a.
    let cyclic = TraceSet::new([a, b]);
    assert_eq!(cyclic.orphans().len(), 1);
    assert_eq!(describe_ids(&cyclic, "{ } >> { }"), 1);
    assert_eq!(describe_ids(&cyclic, r#"{ name = "b" } << { }"#), 1);
    assert!(cyclic.render().contains("└─ b"), "{}", cyclic.render());
    let error = cyclic.expect_query_none("{ name = \"a\" }").unwrap_err();
    assert!(error.message().contains("◀"), "{error}");
}

fn describe_ids(traces: &TraceSet, query: &str) -> usize {
    traces
        .select(query)
        .unwrap()
        .iter()
        .map(|set| set.spans().len())
        .sum()
}
