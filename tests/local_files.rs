//! Local files (SPEC §4 "Local files"): `weir stop` never signals a process
//! that is not weir, whatever the pid file says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::process::{Command, Stdio};

#[test]
fn stop_refuses_a_pid_file_naming_another_process() {
    let dir = TestDir::create();
    // An unrelated process whose pid a planted or stale pid file names.
    let mut victim = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.write("weir.pid", &format!("{}\n", victim.id()));
    let cfg = dir.write(
        "weir.yaml",
        &format!(
            "server: {{ pid_file: \"{}\" }}\nlisteners: [{{ name: web, address: 127.0.0.1:1 }}]\nroutes:\n  - respond: {{ status: 200 }}\n",
            pid_file.display()
        ),
    );
    for args in [vec!["stop"], vec!["stop", "--fast"], vec!["reload"]] {
        let mut full = args.clone();
        full.extend(["-c", cfg.to_str().unwrap()]);
        let out = run_weir(&full);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not weir"), "{args:?}: {err}");
    }
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the unrelated process was signalled"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
}
