use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use meshtrace::sampler::{CustomSampler, SamplingConfig};
use meshtrace::server::TracingLayer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(10000);
    let sampler = CustomSampler::new(SamplingConfig::default()).unwrap();
    let provider = SdkTracerProvider::builder().with_sampler(sampler.clone()).build();
    let sub = tracing_subscriber::Registry::default()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("p")));
    let _g = tracing::subscriber::set_default(sub);
    let routes = Router::new().route("/users/{id}", get(|| async { "alice" }));
    let app = match mode.as_str() {
        "bare" => routes,
        _ => routes.layer(TracingLayer::new().sampler(sampler)),
    };
    let tp = match mode.as_str() {
        "sampled" => Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "root" => None,
        _ => Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let reqs: Vec<_> = (0..n)
        .map(|_| {
            let mut b = Request::get("/users/42").header("baggage", "userId=alice,tenant=acme");
            if let Some(tp) = tp {
                b = b.header("traceparent", tp);
            }
            b.body(Body::empty()).unwrap()
        })
        .collect();
    rt.block_on(async {
        for r in reqs {
            let resp = app.clone().oneshot(r).await.unwrap();
            let mut body = resp.into_body();
            while let Some(f) = body.frame().await {
                std::hint::black_box(f.unwrap());
            }
        }
    });
}
