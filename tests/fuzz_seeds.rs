//! The fuzz targets' checks on stable (README "Fuzzing"): every seed in
//! `fuzz/seeds/TARGET/` and every input that once crashed a target, kept in
//! `fuzz/regressions/TARGET/`, goes through the same function the cargo-fuzz
//! binary calls (`fuzz/src/lib.rs`, included here), so the entry points
//! cannot rot and a fixed crash stays fixed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// The files of `fuzz/KIND/TARGET/`, sorted (none when it does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs `check` on every seed and regression input of `target`; fails
/// naming each input that panicked.
fn run(target: &str, check: fn(&[u8])) {
    let seeds = inputs("seeds", target);
    assert!(
        seeds.len() >= 3,
        "fuzz/seeds/{target} has {} files",
        seeds.len()
    );
    let mut failed = Vec::new();
    for file in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(file).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            failed.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(failed.is_empty(), "{target}: failing inputs {failed:#?}");
}

#[test]
fn path_seeds_and_regressions() {
    run("path", checks::path);
}

#[test]
fn host_seeds_and_regressions() {
    run("host", checks::host);
}

#[test]
fn proxy_protocol_seeds_and_regressions() {
    run("proxy_protocol", checks::proxy_protocol);
}

#[test]
fn config_seeds_and_regressions() {
    run("config", checks::config);
}

#[test]
fn admin_path_seeds_and_regressions() {
    run("admin_path", checks::admin_path);
}
