//! `watch: true`: a change to the config file is applied by itself after
//! 1 s of quiet, whether an editor renames a new file over it, a program
//! writes it in place, or Kubernetes swaps a ConfigMap volume's `..data`
//! symlink; a bad file changes nothing. Each test asserts what a client sees
//! through the proxy: a route added to the file answering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// How long a change may take to be applied (1 s quiet + reload), bounded.
const APPLY: Duration = Duration::from_secs(10);

fn config(listen: SocketAddr, admin: SocketAddr, extra_route: &str) -> String {
    format!(
        r#"
watch: true
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{admin}" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
{extra_route}
  - name: base
    match: {{ path_prefix: /base }}
    respond: {{ status: 200, body: "base" }}
"#
    )
}

fn new_route(body: &str) -> String {
    format!(
        "  - name: new\n    match: {{ path_prefix: /new }}\n    respond: {{ status: 200, body: \"{body}\" }}\n"
    )
}

fn answers(listen: SocketAddr, body: &str) -> bool {
    let r = get(listen, "/new");
    r.status == 200 && r.body == body
}

fn failures(admin: SocketAddr) -> Option<u64> {
    let text = get_host(admin, &admin.to_string(), "/metrics").body;
    text.lines()
        .find(|l| l.starts_with("weir_config_reloads_total{result=\"failure\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn an_editors_write_and_rename_is_applied() {
    let (listen, admin) = (free_addr(), free_addr());
    let weir = WeirProcess::start(&config(listen, admin, ""), listen);
    assert_eq!(get(listen, "/new").status, 404);
    // TestDir::write is a temp file renamed over the config, as editors do.
    weir.write_config(&config(listen, admin, &new_route("renamed")));
    assert!(
        poll_until(APPLY, || answers(listen, "renamed")),
        "the renamed file was never applied\n{}",
        weir.logs()
    );
}

#[test]
fn a_write_in_place_is_applied() {
    let (listen, admin) = (free_addr(), free_addr());
    let weir = WeirProcess::start(&config(listen, admin, ""), listen);
    assert_eq!(get(listen, "/new").status, 404);
    let text = weir.dir().display().to_string();
    let yaml = config(listen, admin, &new_route("in place")).replace("{{DIR}}", &text);
    std::fs::write(weir.config_path(), yaml).unwrap();
    assert!(
        poll_until(APPLY, || answers(listen, "in place")),
        "the file written in place was never applied\n{}",
        weir.logs()
    );
}

#[test]
fn a_bad_file_changes_nothing_and_a_good_one_after_it_is_applied() {
    let (listen, admin) = (free_addr(), free_addr());
    let weir = WeirProcess::start(&config(listen, admin, &new_route("first")), listen);
    assert!(answers(listen, "first"));
    let before = failures(admin).unwrap_or(0);
    weir.write_config("routes: [ { upstream: nowhere } ]\nnot yaml: [\n");
    assert!(
        poll_until(APPLY, || failures(admin) == Some(before + 1)),
        "the bad file was not counted as a failed reload\n{}",
        weir.logs()
    );
    // The log line and the metric are written one after the other: wait
    // for the line rather than read once.
    assert!(
        poll_until(APPLY, || weir.logs().contains("config reload failed")),
        "{}",
        weir.logs()
    );
    // Still the old config.
    assert!(answers(listen, "first"));
    assert_eq!(get(listen, "/base").status, 200);
    weir.write_config(&config(listen, admin, &new_route("second")));
    assert!(
        poll_until(APPLY, || answers(listen, "second")),
        "the good file after a bad one was never applied\n{}",
        weir.logs()
    );
}

/// Lays out a ConfigMap volume as the kubelet does: the data in a
/// timestamped folder, `..data` pointing at it, `weir.yaml` pointing
/// through `..data`.
fn configmap_version(dir: &Path, version: &str, yaml: &str) {
    let data = dir.join(version);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("weir.yaml"), yaml).unwrap();
}

/// Points `..data` at `version` atomically: a new symlink renamed over it.
fn swap_data(dir: &Path, version: &str) {
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[test]
fn a_configmap_symlink_swap_is_applied() {
    let (listen, admin) = (free_addr(), free_addr());
    let dir = TestDir::create();
    let root = dir.path().display().to_string();
    let first = config(listen, admin, "").replace("{{DIR}}", &root);
    configmap_version(dir.path(), "..2026_12_07_18_00_00.000000001", &first);
    swap_data(dir.path(), "..2026_12_07_18_00_00.000000001");
    std::os::unix::fs::symlink("..data/weir.yaml", dir.path().join("weir.yaml")).unwrap();
    let path = dir.path().join("weir.yaml");
    let dir_path = dir.path().to_path_buf();
    let weir = WeirProcess::spawn_at(dir, path, &[]);
    weir.wait_ready(listen, START_TIMEOUT);
    weir.wait_ready(admin, START_TIMEOUT);
    assert_eq!(get(listen, "/new").status, 404);

    let second = config(listen, admin, &new_route("configmap")).replace("{{DIR}}", &root);
    configmap_version(&dir_path, "..2026_12_07_18_05_00.000000002", &second);
    swap_data(&dir_path, "..2026_12_07_18_05_00.000000002");
    // The kubelet then removes the old version.
    std::fs::remove_dir_all(dir_path.join("..2026_12_07_18_00_00.000000001")).unwrap();
    assert!(
        poll_until(APPLY, || answers(listen, "configmap")),
        "the ..data swap was never applied\n{}",
        weir.logs()
    );
}

#[test]
fn without_watch_nothing_is_reloaded() {
    let (listen, admin) = (free_addr(), free_addr());
    let plain = config(listen, admin, "").replace("watch: true", "watch: false");
    let weir = WeirProcess::start(&plain, listen);
    weir.write_config(
        &config(listen, admin, &new_route("x")).replace("watch: true", "watch: false"),
    );
    // Past the quiet time and a reload: still the old routes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(listen, "/new").status, 404);
}

/// A Secret volume version: `tls.crt` and `tls.key` for `names`.
fn secret_version(dir: &Path, version: &str, ca: &Ca, names: &[&str]) {
    let data = dir.join(version);
    std::fs::create_dir(&data).unwrap();
    let (cert, _key) = leaf(&data, "tls", ca, names, None);
    std::fs::rename(cert, data.join("tls.crt")).unwrap();
}

/// `curl https://NAME:PORT/` with NAME resolved to 127.0.0.1 and `ca` trusted.
fn tls_ok(name: &str, port: u16, ca: &Path) -> bool {
    std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg(format!("https://{name}:{port}/base"))
        .stdin(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_secret_symlink_swap_serves_the_new_certificate() {
    let (listen, admin) = (free_addr(), free_addr());
    let dir = TestDir::create();
    let ca = ca();
    let ca_path = write_ca(dir.path(), &ca);
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    secret_version(&tls, "..2026_12_07_18_00_00.1", &ca, &["old.test"]);
    swap_data(&tls, "..2026_12_07_18_00_00.1");
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), tls.join(f)).unwrap();
    }
    let yaml = config(listen, admin, "").replace(
        "listeners: [{ name: web, address: \"",
        "listeners: [{ name: web, protocol: https, tls: { certificates: [{ cert: tls/tls.crt, key: tls/tls.key }] }, address: \"",
    );
    let path = dir.path().join("weir.yaml");
    std::fs::write(
        &path,
        yaml.replace("{{DIR}}", &dir.path().display().to_string()),
    )
    .unwrap();
    let tls_dir = tls.clone();
    let weir = WeirProcess::spawn_at(dir, path, &[]);
    weir.wait_ready(listen, START_TIMEOUT);
    assert!(
        tls_ok("old.test", listen.port(), &ca_path),
        "{}",
        weir.logs()
    );
    assert!(!tls_ok("new.test", listen.port(), &ca_path));

    secret_version(&tls_dir, "..2026_12_07_19_00_00.2", &ca, &["new.test"]);
    swap_data(&tls_dir, "..2026_12_07_19_00_00.2");
    std::fs::remove_dir_all(tls_dir.join("..2026_12_07_18_00_00.1")).unwrap();
    assert!(
        poll_until(APPLY, || tls_ok("new.test", listen.port(), &ca_path)),
        "the renewed certificate was never served\n{}",
        weir.logs()
    );
}
