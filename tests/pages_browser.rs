//! A real browser loads the trace pages: headless Chromium (Debian's `chromium`) renders the
//! trace summary and a trace tree served on 127.0.0.1, and the test checks what it rendered:
//! the DOM it built (`--dump-dom`) and the pixels of a screenshot (the stylesheet applied:
//! the header, the heat, the errors in red, the bars).
//!
//! Without a browser the test says why and passes, unless `MESHTRACE_BROWSER_TESTS=1`
//! (what `.ci/run` sets, after installing `chromium`): then a missing browser fails it.
//! `MESHTRACE_CHROMIUM` names another binary. The browser never leaves 127.0.0.1: every
//! other host name resolves to nothing, background networking is off.
#![cfg(feature = "pages")]

mod common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use meshtrace::TracingManager;
use opentelemetry_sdk::trace::InMemorySpanExporter;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The browser to run, if any.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MESHTRACE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs the browser on `url` with `args`, at most 90 s; returns its stdout.
async fn browse(browser: &Path, profile: &Path, args: &[String], url: &str) -> Vec<u8> {
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-proxy-server",
            // Nothing but 127.0.0.1 resolves.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("the browser finished within 90 s")
        .expect("the browser runs");
    assert!(
        output.status.success(),
        "{} failed: {}",
        browser.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

async fn user(axum::extract::Path(id): axum::extract::Path<u64>) -> String {
    tracing::info_span!("load_user").in_scope(|| {
        tracing::info!(user = id, "user loaded");
        tracing::info_span!("query").in_scope(|| tracing::info!("select"));
    });
    format!("user {id}")
}

#[tokio::test]
async fn a_browser_renders_the_summary_and_a_trace_tree() {
    let Some(browser) = chromium() else {
        if std::env::var("MESHTRACE_BROWSER_TESTS").as_deref() == Ok("1") {
            panic!(
                "MESHTRACE_BROWSER_TESTS=1 but no browser: install Debian's `chromium` \
                 (apt-get install -y chromium) or set MESHTRACE_CHROMIUM"
            );
        }
        eprintln!(
            "skipped: no `chromium` on PATH (apt-get install -y chromium, or \
             MESHTRACE_CHROMIUM=<binary>); MESHTRACE_BROWSER_TESTS=1 makes this a failure"
        );
        return;
    };

    let (telemetry, layers) = TracingManager::builder()
        .service_name("browser-test")
        .span_exporter(InMemorySpanExporter::default())
        .metrics_enabled(false)
        .log_writer(std::io::sink)
        .build()
        .unwrap();
    let _guard = tracing::subscriber::set_default(layers.into_subscriber());
    let pages = telemetry
        .pages()
        .token("0123456789abcdef0123456789abcdef")
        .sample_interval(Duration::ZERO)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/users/{id}", get(user))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .merge(pages.router())
        .layer(telemetry.server_layer());
    let addr = common::serve(app).await;
    let client = reqwest::Client::new();
    for i in 0..30 {
        let mut request = client.get(format!("http://{addr}/users/{i}"));
        // The last one: the rings keep the newest samples.
        if i == 29 {
            request = request.header("traceparent", SAMPLED);
        }
        request.send().await.unwrap().bytes().await.unwrap();
    }
    for _ in 0..3 {
        client
            .get(format!("http://{addr}/fail"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }

    let profile = tempfile::tempdir().unwrap();
    let summary_url = format!("http://{addr}/debug/tracez");
    let trace_url = format!("http://{addr}/debug/tracez/trace/{TRACE_ID}");

    // The DOM the browser built from the summary.
    let dom = String::from_utf8(
        browse(
            &browser,
            profile.path(),
            &["--dump-dom".into()],
            &summary_url,
        )
        .await,
    )
    .unwrap();
    assert!(
        dom.contains("<title>Trace summary · meshtrace</title>"),
        "{dom}"
    );
    assert!(dom.contains("<table class=\"summary\">"), "{dom}");
    assert!(dom.contains("<th scope=\"row\" class=\"name\">GET /users/{id}</th>"));
    assert!(dom.contains("<th scope=\"row\" class=\"name\">GET /fail</th>"));
    assert_eq!(
        dom.matches("<th class=\"bucket\">").count(),
        9,
        "nine latency buckets"
    );
    assert!(
        dom.contains("class=\"num h5\""),
        "the busiest bucket is the hottest"
    );
    assert!(
        dom.contains("<td class=\"num err\">3<div class=\"classes\">"),
        "{dom}"
    );
    assert!(dom.contains("browser-test"));
    assert!(
        !dom.contains("tracez</th>"),
        "the pages are not a row of their own"
    );

    // The trace tree: three local spans, nested, with bars.
    let dom = String::from_utf8(
        browse(&browser, profile.path(), &["--dump-dom".into()], &trace_url).await,
    )
    .unwrap();
    assert!(
        dom.contains(&format!("<h1>Trace <code>{TRACE_ID}</code></h1>")),
        "{dom}"
    );
    assert_eq!(dom.matches("<tr class=\"span\">").count(), 3, "{dom}");
    assert!(dom.contains("<td class=\"name d0\"><details><summary>GET /users/{id}"));
    assert!(dom.contains("<td class=\"name d1\"><details><summary>load_user"));
    assert!(dom.contains("<td class=\"name d2\"><details><summary>query"));
    assert_eq!(dom.matches("<svg class=\"bar\"").count(), 3);
    assert!(dom.contains("user loaded"), "the event is on the page");

    // The browser asked the pages, and nothing else, for what they need (stylesheet, icon):
    // no request of its own reached the app (a `/favicon.ico` would be a traced 404).
    let summary: serde_json::Value = serde_json::from_slice(
        &client
            .get(format!("{summary_url}/api/summary"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let rows: Vec<&str> = summary["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rows, ["GET /fail", "GET /users/{id}"]);

    // What the browser painted: the stylesheet came with the pages and applies.
    let shot = profile.path().join("summary.png");
    browse(
        &browser,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,700".into(),
            "--hide-scrollbars".into(),
        ],
        &summary_url,
    )
    .await;
    let image = Png::read(&shot);
    for (what, rgb) in [
        ("the header", [0x1d, 0x23, 0x2a]),
        ("the hottest cell", [0x1f, 0x5f, 0xae]),
        ("the errors cell", [0xfd, 0xe7, 0xe6]),
    ] {
        assert!(
            image.has(rgb),
            "{what} ({rgb:02x?}) is not on the screenshot"
        );
    }
    let shot = profile.path().join("trace.png");
    browse(
        &browser,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,500".into(),
        ],
        &trace_url,
    )
    .await;
    let bars = Png::read(&shot);
    assert!(bars.has([0x2f, 0x6f, 0xb3]), "the bars are painted");
}

/// An 8-bit RGB or RGBA PNG, decoded (enough for a browser's screenshot).
struct Png {
    width: usize,
    channels: usize,
    pixels: Vec<u8>,
}

impl Png {
    fn read(path: &Path) -> Png {
        let bytes = std::fs::read(path).expect("the screenshot");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        let (mut width, mut height, mut channels) = (0, 0, 0);
        let mut data = Vec::new();
        let mut at = 8;
        while at + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = &bytes[at + 4..at + 8];
            let body = &bytes[at + 8..at + 8 + len];
            match kind {
                b"IHDR" => {
                    width = u32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
                    height = u32::from_be_bytes(body[4..8].try_into().unwrap()) as usize;
                    assert_eq!(body[8], 8, "8 bits per channel");
                    assert_eq!(body[12], 0, "not interlaced");
                    channels = match body[9] {
                        2 => 3,
                        6 => 4,
                        other => panic!("color type {other}"),
                    };
                }
                b"IDAT" => data.extend_from_slice(body),
                _ => {}
            }
            at += 12 + len;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&data[..])
            .read_to_end(&mut raw)
            .expect("zlib");
        let stride = width * channels;
        let mut pixels = vec![0u8; stride * height];
        for y in 0..height {
            let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
            let (filter, line) = (line[0], &line[1..]);
            for x in 0..stride {
                let a = if x >= channels {
                    pixels[y * stride + x - channels]
                } else {
                    0
                };
                let b = if y > 0 {
                    pixels[(y - 1) * stride + x]
                } else {
                    0
                };
                let c = if y > 0 && x >= channels {
                    pixels[(y - 1) * stride + x - channels]
                } else {
                    0
                };
                let predicted = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    4 => {
                        let p = i16::from(a) + i16::from(b) - i16::from(c);
                        let (pa, pb, pc) = (
                            (p - i16::from(a)).abs(),
                            (p - i16::from(b)).abs(),
                            (p - i16::from(c)).abs(),
                        );
                        if pa <= pb && pa <= pc {
                            a
                        } else if pb <= pc {
                            b
                        } else {
                            c
                        }
                    }
                    other => panic!("filter {other}"),
                };
                pixels[y * stride + x] = line[x].wrapping_add(predicted);
            }
        }
        Png {
            width,
            channels,
            pixels,
        }
    }

    /// Whether a pixel of this color (within 3 per channel) is painted.
    fn has(&self, rgb: [u8; 3]) -> bool {
        assert!(self.width > 0);
        self.pixels.chunks(self.channels).any(|p| {
            p[..3]
                .iter()
                .zip(rgb)
                .all(|(got, want)| got.abs_diff(want) <= 3)
        })
    }
}
