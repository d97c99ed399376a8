//! The program `scripts/callgrind.sh` runs under `valgrind --tool=callgrind`: one case of
//! `benches/common`, N requests, so that instructions per request are
//! `(Ir(40k) - Ir(20k)) / 20k` minus the same difference of a run that only builds (and
//! drops) the requests.
//!
//! ```text
//! instructions list                  # every case: name <TAB> headers label
//! instructions case <name> <n>       # build the case, warm up, serve n requests, flush
//! instructions requests <label> <n>  # only build n requests of these headers and drop them
//! ```
//!
//! Run through `cargo bench` (no arguments but `--bench`) it only says how to use it.

mod common;

use common::{Headers, cases, runtime};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["list"] => {
            for case in cases() {
                println!("{}\t{}", case.name, case.headers.label());
            }
        }
        ["case", name, n] => run_case(name, parse(n)),
        ["requests", label, n] => {
            let headers = Headers::parse(label).unwrap_or_else(|| fail("unknown headers"));
            let requests: Vec<_> = (0..parse(n)).map(|_| headers.request()).collect();
            drop(std::hint::black_box(requests));
        }
        _ => {
            eprintln!(
                "instruction counts: run scripts/callgrind.sh (this bench measures nothing by itself)"
            );
        }
    }
}

fn parse(n: &str) -> u64 {
    n.parse().unwrap_or_else(|_| fail("n must be a number"))
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

fn run_case(name: &str, n: u64) {
    let case = cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| fail("unknown case (see `instructions list`)"));
    let built = case.setup.build();
    let rt = runtime();
    let run = || {
        // Lazily initialised state (thread-locals, interned routes, the SDK's first
        // span) is paid here, in both runs of the difference.
        let warm_up: Vec<_> = (0..200).map(|_| case.headers.request()).collect();
        rt.block_on(built.drive(warm_up));
        let requests: Vec<_> = (0..n).map(|_| case.headers.request()).collect();
        rt.block_on(built.drive(requests));
    };
    match &built.dispatch {
        Some(dispatch) => tracing::dispatcher::with_default(dispatch, run),
        None => run(),
    }
    if let Some((exported, dropped)) = built.exported() {
        let dropped = dropped.map_or(String::new(), |d| format!(" dropped={d}"));
        println!("exported={exported}{dropped}");
    }
    built.shutdown();
}
