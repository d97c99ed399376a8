//! `#[traced]`: spans named after the function, nothing recorded unless listed, errors as
//! span status, checked on the spans a real SDK exports.
#![cfg(feature = "macros")]

use std::fmt;

use meshtrace::traced;
use opentelemetry::Value;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;

struct Harness {
    provider: SdkTracerProvider,
    exporter: InMemorySpanExporter,
}

impl Harness {
    fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Self { provider, exporter }
    }

    /// Runs `f` with a subscriber exporting to this harness, at most `level` enabled.
    fn run<R>(&self, level: LevelFilter, f: impl FnOnce() -> R) -> R {
        let subscriber = tracing_subscriber::registry()
            .with(level)
            .with(tracing_opentelemetry::layer().with_tracer(self.provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_spans().unwrap()
    }

    fn only_span(&self) -> SpanData {
        let mut spans = self.spans();
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.remove(0)
    }
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

/// Every attribute key and value and every event of `span`, as one string, to show that a
/// value appears nowhere.
fn everything(span: &SpanData) -> String {
    format!(
        "{:?} {:?} {:?}",
        span.attributes, span.events.events, span.status
    )
}

/// Attribute keys other than those tracing-opentelemetry's default layer adds to every span
/// (code location, thread, target, timings).
fn own_keys(span: &SpanData) -> Vec<String> {
    span.attributes
        .iter()
        .map(|kv| kv.key.as_str().to_owned())
        .filter(|key| {
            !key.starts_with("code.")
                && !key.starts_with("thread.")
                && !["target", "busy_ns", "idle_ns"].contains(&key.as_str())
        })
        .collect()
}

#[derive(Debug)]
struct PaymentError {
    #[allow(dead_code)]
    card_number: &'static str,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("card declined")
    }
}

impl std::error::Error for PaymentError {}

#[traced]
fn charge(user: &str, amount: u64, fail: bool) -> Result<u64, PaymentError> {
    let _ = user;
    if fail {
        return Err(PaymentError {
            card_number: "4111111111111111",
        });
    }
    Ok(amount)
}

#[test]
fn sync_fn_span_is_named_after_the_function_and_records_no_parameter() {
    let h = Harness::new();
    assert_eq!(
        h.run(LevelFilter::TRACE, || charge("alice", 1234, false))
            .unwrap(),
        1234
    );

    let span = h.only_span();
    assert_eq!(span.name, "charge");
    assert_eq!(
        own_keys(&span),
        Vec::<String>::new(),
        "{:?}",
        span.attributes
    );
    assert!(!everything(&span).contains("alice"));
    assert_eq!(span.status, Status::Unset);
    assert!(span.events.events.is_empty());
}

#[test]
fn err_sets_status_error_type_and_an_exception_event_with_the_message_only() {
    let h = Harness::new();
    assert!(
        h.run(LevelFilter::TRACE, || charge("bob", 5, true))
            .is_err()
    );

    let span = h.only_span();
    let type_name = std::any::type_name::<PaymentError>();
    assert_eq!(span.status, Status::error("card declined"));
    assert_eq!(attr(&span, "error.type"), Some(Value::from(type_name)));
    assert_eq!(span.events.events.len(), 1);
    let event = &span.events.events[0];
    assert_eq!(event.name, "exception");
    let event_attr = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(
        event_attr("exception.message"),
        Some(Value::from("card declined"))
    );
    assert_eq!(event_attr("exception.type"), Some(Value::from(type_name)));
    // No Debug dump of the error value.
    assert!(!everything(&span).contains("4111"), "{}", everything(&span));
}

#[traced(err(debug))]
fn charge_debug() -> Result<(), PaymentError> {
    Err(PaymentError {
        card_number: "5500",
    })
}

#[test]
fn err_debug_records_the_debug_representation() {
    let h = Harness::new();
    assert!(h.run(LevelFilter::TRACE, charge_debug).is_err());
    let span = h.only_span();
    assert_eq!(
        span.status,
        Status::error(r#"PaymentError { card_number: "5500" }"#)
    );
}

#[traced(name = "checkout.lookup", record(id, %region, ?tags), fields(user_id = %user, cached = true))]
fn lookup(id: u64, region: &str, tags: &[&str], user: String, secret: &str) -> usize {
    let _ = secret;
    id as usize + region.len() + tags.len() + user.len()
}

#[test]
fn only_listed_parameters_and_fields_are_recorded() {
    let h = Harness::new();
    h.run(LevelFilter::TRACE, || {
        lookup(7, "eu", &["a"], "u-1".to_owned(), "hunter2")
    });

    let span = h.only_span();
    assert_eq!(span.name, "checkout.lookup");
    assert_eq!(attr(&span, "id"), Some(Value::I64(7)));
    assert_eq!(attr(&span, "region"), Some(Value::from("eu")));
    assert_eq!(attr(&span, "tags"), Some(Value::from(r#"["a"]"#)));
    assert_eq!(attr(&span, "user_id"), Some(Value::from("u-1")));
    assert_eq!(attr(&span, "cached"), Some(Value::Bool(true)));
    let mut keys = own_keys(&span);
    keys.sort();
    assert_eq!(keys, ["cached", "id", "region", "tags", "user_id"]);
    assert!(!everything(&span).contains("hunter2"));
}

#[traced(record(name))]
fn greet(name: String) -> String {
    format!("hi {name}")
}

#[test]
fn owned_string_parameter_is_recorded_as_a_string() {
    let h = Harness::new();
    h.run(LevelFilter::TRACE, || greet("ann".to_owned()));
    assert_eq!(attr(&h.only_span(), "name"), Some(Value::from("ann")));
}

#[traced(level = "debug")]
fn chatty() -> u8 {
    1
}

#[traced(level = "info")]
fn normal() -> u8 {
    2
}

#[test]
fn level_is_applied_and_filtered() {
    let h = Harness::new();
    h.run(LevelFilter::INFO, || chatty() + normal());
    let names: Vec<_> = h.spans().into_iter().map(|span| span.name).collect();
    assert_eq!(names, ["normal"]);

    let h = Harness::new();
    h.run(LevelFilter::DEBUG, chatty);
    assert_eq!(h.only_span().name, "chatty");
}

#[derive(Debug)]
enum FetchError {
    Io(std::io::Error),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Io(err) => write!(f, "fetch failed: {err}"),
        }
    }
}

impl From<std::io::Error> for FetchError {
    fn from(err: std::io::Error) -> Self {
        FetchError::Io(err)
    }
}

#[traced]
async fn read_part(fail: bool) -> Result<u32, std::io::Error> {
    tokio::task::yield_now().await;
    if fail {
        Err(std::io::Error::other("disk gone"))
    } else {
        Ok(3)
    }
}

#[traced(record(fail))]
async fn fetch(fail: bool) -> Result<u32, FetchError> {
    // `?` converts the error: the return type must reach the async block.
    let part = read_part(fail).await?;
    Ok(part + 1)
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

#[test]
fn async_fn_spans_nest_and_errors_are_recorded_at_each_level() {
    let h = Harness::new();
    let result = h.run(LevelFilter::TRACE, || block_on(fetch(true)));
    assert!(result.is_err());

    let spans = h.spans();
    let outer = spans.iter().find(|s| s.name == "fetch").unwrap();
    let inner = spans.iter().find(|s| s.name == "read_part").unwrap();
    assert_eq!(inner.parent_span_id, outer.span_context.span_id());
    assert_eq!(inner.span_context.trace_id(), outer.span_context.trace_id());
    assert_eq!(attr(outer, "fail"), Some(Value::Bool(true)));
    assert_eq!(inner.status, Status::error("disk gone"));
    assert_eq!(
        attr(inner, "error.type"),
        Some(Value::from(std::any::type_name::<std::io::Error>()))
    );
    assert_eq!(outer.status, Status::error("fetch failed: disk gone"));
    assert_eq!(
        attr(outer, "error.type"),
        Some(Value::from(std::any::type_name::<FetchError>()))
    );
}

#[test]
fn async_fn_ok_leaves_status_unset() {
    let h = Harness::new();
    assert_eq!(
        h.run(LevelFilter::TRACE, || block_on(fetch(false)))
            .unwrap(),
        4
    );
    let spans = h.spans();
    assert_eq!(spans.len(), 2);
    for span in spans {
        assert_eq!(span.status, Status::Unset, "{}", span.name);
        assert!(attr(&span, "error.type").is_none());
    }
}

struct Store {
    secret: String,
    items: Vec<String>,
}

impl Store {
    #[traced(record(index))]
    fn get(&self, index: usize) -> Option<&str> {
        self.items.get(index).map(String::as_str)
    }

    #[traced]
    fn push(&mut self, item: String) -> Result<usize, String> {
        if item.is_empty() {
            return Err("empty item".to_owned());
        }
        self.items.push(item);
        Ok(self.items.len())
    }

    #[traced(name = "store.load")]
    async fn load(&self) -> Result<&str, std::fmt::Error> {
        tokio::task::yield_now().await;
        Ok(&self.secret)
    }

    #[traced]
    fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.items.iter().map(String::as_str)
    }
}

#[test]
fn methods_in_impl_blocks_never_record_self() {
    let h = Harness::new();
    let mut store = Store {
        secret: "s3cr3t".to_owned(),
        items: vec!["x".to_owned()],
    };
    h.run(LevelFilter::TRACE, || {
        assert_eq!(store.get(0), Some("x"));
        assert_eq!(store.push("y".to_owned()), Ok(2));
        assert!(store.push(String::new()).is_err());
        assert_eq!(block_on(store.load()), Ok("s3cr3t"));
        assert_eq!(store.names().count(), 2);
    });

    let spans = h.spans();
    let names: Vec<_> = spans.iter().map(|span| span.name.as_ref()).collect();
    assert_eq!(names, ["get", "push", "push", "store.load", "names"]);
    assert_eq!(attr(&spans[0], "index"), Some(Value::I64(0)));
    for span in &spans {
        assert!(!everything(span).contains("s3cr3t"), "{}", span.name);
    }
    assert_eq!(spans[1].status, Status::Unset);
    assert_eq!(spans[2].status, Status::error("empty item"));
    assert_eq!(
        attr(&spans[2], "error.type"),
        Some(Value::from("alloc::string::String"))
    );
}

#[traced]
fn unit_error() -> Result<(), ()> {
    Err(())
}

#[traced]
fn no_return(counter: &mut u32) {
    *counter += 1;
}

#[test]
fn errors_without_display_still_set_status_and_unit_functions_are_traced() {
    let h = Harness::new();
    let mut counter = 0;
    h.run(LevelFilter::TRACE, || {
        assert!(unit_error().is_err());
        no_return(&mut counter);
    });
    assert_eq!(counter, 1);
    let spans = h.spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].name, "unit_error");
    // `()` is not `Display`: status and type, but no message.
    assert_eq!(spans[0].status, Status::error(""));
    assert_eq!(attr(&spans[0], "error.type"), Some(Value::from("()")));
    let event = &spans[0].events.events[0];
    assert_eq!(event.name, "exception");
    assert!(
        event
            .attributes
            .iter()
            .all(|kv| kv.key.as_str() != "exception.message")
    );
    assert_eq!(spans[1].name, "no_return");
}

#[test]
fn compile_failures() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

#[traced(record(small, big, by_ref))]
fn sizes(small: u8, big: u64, by_ref: &usize) -> u64 {
    u64::from(small) + big.min(1) + *by_ref as u64
}

#[test]
fn unsigned_parameters_are_integers_when_they_fit_in_i64() {
    let h = Harness::new();
    h.run(LevelFilter::TRACE, || sizes(7, u64::MAX, &3));
    let span = h.only_span();
    assert_eq!(attr(&span, "small"), Some(Value::I64(7)));
    assert_eq!(attr(&span, "by_ref"), Some(Value::I64(3)));
    // OTel integers are signed: a larger value keeps its exact decimal form.
    assert_eq!(attr(&span, "big"), Some(Value::from(u64::MAX.to_string())));
}

#[derive(Debug)]
struct BadInput(String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad input: {}", self.0)
    }
}

impl From<std::num::ParseIntError> for BadInput {
    fn from(err: std::num::ParseIntError) -> Self {
        BadInput(err.to_string())
    }
}

#[traced]
fn sum<T>(inputs: &[&str]) -> Result<T, BadInput>
where
    T: std::str::FromStr<Err = std::num::ParseIntError> + std::iter::Sum,
{
    let mut values = Vec::new();
    for input in inputs {
        // `?` converts through `From` inside the generated closure.
        values.push(input.parse::<T>()?);
    }
    Ok(values.into_iter().sum())
}

#[test]
fn generic_sync_fn_with_question_mark() {
    let h = Harness::new();
    h.run(LevelFilter::TRACE, || {
        assert_eq!(sum::<u32>(&["1", "2"]).unwrap(), 3);
        assert!(sum::<u32>(&["1", "x"]).is_err());
    });
    let spans = h.spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].status, Status::Unset);
    assert_eq!(
        spans[1].status,
        Status::error("bad input: invalid digit found in string")
    );
}

#[traced]
fn background_job() -> String {
    let mut headers = http::HeaderMap::new();
    meshtrace::context::inject(&opentelemetry::Context::current(), &mut headers);
    headers["traceparent"].to_str().unwrap().to_owned()
}

#[traced]
fn outer_job() -> (String, String) {
    let outer = {
        let mut headers = http::HeaderMap::new();
        meshtrace::context::inject(&opentelemetry::Context::current(), &mut headers);
        headers["traceparent"].to_str().unwrap().to_owned()
    };
    (outer, background_job())
}

#[test]
fn a_traced_root_sends_the_random_flag_and_its_children_keep_the_trace() {
    let harness = Harness::new();
    let traceparent = harness.run(LevelFilter::INFO, background_job);
    // A new trace started here: sampled (01) and random (02).
    assert!(traceparent.ends_with("-03"), "{traceparent}");
    let span = harness.only_span();
    assert!(traceparent.contains(&span.span_context.trace_id().to_string()));

    let harness = Harness::new();
    let (outer, inner) = harness.run(LevelFilter::INFO, outer_job);
    assert!(
        outer.ends_with("-03") && inner.ends_with("-03"),
        "{outer} {inner}"
    );
    let spans = harness.spans();
    assert_eq!(spans.len(), 2);
    // The nested call stays in the outer trace, as a child.
    assert_eq!(
        spans[0].span_context.trace_id(),
        spans[1].span_context.trace_id()
    );
    assert_eq!(spans[0].parent_span_id, spans[1].span_context.span_id());
}

/// An error whose message is 1 MiB.
#[derive(Debug)]
struct Huge;

impl fmt::Display for Huge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for _ in 0..(1 << 20) / 8 {
            f.write_str("too long")?;
        }
        Ok(())
    }
}

#[traced]
fn fails_loudly() -> Result<(), Huge> {
    Err(Huge)
}

#[traced(err(debug))]
fn fails_loudly_in_debug() -> Result<(), Vec<u8>> {
    Err(vec![7; 1 << 20])
}

#[test]
fn error_messages_are_bounded_where_they_are_recorded() {
    // The default bound of every string meshtrace records on a span.
    const LIMIT: usize = 4096;
    let harness = Harness::new();
    harness.run(LevelFilter::TRACE, || {
        let _ = fails_loudly();
        let _ = fails_loudly_in_debug();
    });
    let spans = harness.spans();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        let Status::Error { description } = &span.status else {
            panic!("{}: status {:?}", span.name, span.status)
        };
        assert!(
            !description.is_empty() && description.len() <= LIMIT,
            "{}: a {}-byte status description",
            span.name,
            description.len()
        );
        let event = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .expect("event");
        let message = event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "exception.message")
            .expect("exception.message");
        assert!(message.value.as_str().len() <= LIMIT, "{}", span.name);
    }
}
