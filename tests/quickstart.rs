//! The README's quickstart, built as a new user builds it: a fresh binary crate, the
//! README's `cargo add` line, the README's code as `src/main.rs`.
//!
//! Only where meshtrace comes from differs: `--path` to this checkout instead of
//! crates.io (the line's meshtrace features are kept). Everything runs offline, from the
//! crates this workspace has already fetched, with this workspace's `Cargo.lock`, so the
//! test needs no network and resolves the versions CI has tested. It builds in its own
//! target directory (`target/quickstart`): cargo holds this workspace's build directory
//! while the tests run.
#![cfg(all(feature = "reqwest", feature = "axum"))]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cargo add` line and the code of the README's "Quickstart" section.
fn quickstart() -> (String, String) {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Quickstart\n")
        .nth(1)
        .expect("a Quickstart section")
        .split("\n## ")
        .next()
        .expect("its text");
    let add = section
        .lines()
        .find(|line| line.starts_with("cargo add "))
        .expect("a `cargo add` line")
        .to_owned();
    let code = section
        .split("```rust")
        .nth(1)
        .and_then(|rest| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split("\n```").next())
        .expect("a rust code block")
        .to_owned();
    (add, code)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo(dir: &Path, args: &[&str]) {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", root().join("target").join("quickstart"))
        .env("CARGO_NET_OFFLINE", "true")
        // What the surrounding `cargo test` sets must not leak into the new crate's build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_readme_quickstart_builds_as_a_new_crate_with_the_readme_cargo_add_line() {
    let (add, code) = quickstart();
    let dir = tempfile::tempdir().expect("temp dir");
    let krate = dir.path().join("checkout");
    cargo(
        dir.path(),
        &["new", "--bin", "--vcs", "none", "--offline", "checkout"],
    );

    // `cargo add meshtrace a@1 b@2 --features meshtrace/x,a/y`: meshtrace from this
    // checkout with its features, the rest exactly as written.
    let words: Vec<&str> = add.split_whitespace().skip(2).collect();
    let mut crates = Vec::new();
    let mut features = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        match word {
            "--features" | "-F" => features.extend(words.next().expect("features").split(',')),
            _ => crates.push(word),
        }
    }
    assert_eq!(crates.first(), Some(&"meshtrace"), "{add}");
    let (ours, theirs): (Vec<&str>, Vec<&str>) =
        features.iter().partition(|f| f.starts_with("meshtrace/"));
    let ours: Vec<&str> = ours.iter().map(|f| &f["meshtrace/".len()..]).collect();
    let path = root();
    let path = path.to_str().expect("a UTF-8 path");
    let mut meshtrace = vec!["add", "--offline", "--path", path];
    let ours = ours.join(",");
    if !ours.is_empty() {
        meshtrace.extend(["--features", &ours]);
    }
    cargo(&krate, &meshtrace);
    let theirs = theirs.join(",");
    let mut others = vec!["add", "--offline"];
    others.extend(&crates[1..]);
    if !theirs.is_empty() {
        others.extend(["--features", &theirs]);
    }
    cargo(&krate, &others);

    std::fs::copy(root().join("Cargo.lock"), krate.join("Cargo.lock")).expect("lock file");
    std::fs::write(krate.join("src").join("main.rs"), code).expect("main.rs");
    cargo(&krate, &["build", "--offline", "--quiet"]);
}
