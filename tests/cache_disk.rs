//! The disk tier (SPEC §1.1): entries survive a restart, a damaged entry
//! is a logged miss, entries are written without following symlinks, and
//! the tier stays within its size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache_common;
mod common;

use cache_common::{answer, metric, start, xcache, Setup};
use common::{poll_until, RawRequest, START_TIMEOUT};
use std::path::PathBuf;
use std::time::Duration;

const TOP: &str = "cache: { memory: 1MiB, disk: { path: cache, size: 1MiB } }\n";

fn setup() -> Setup {
    start("    cache: {}\n", TOP, |req: &RawRequest| {
        answer(
            200,
            &[("cache-control", "max-age=600")],
            &format!("stored {}", req.target),
        )
    })
}

/// The entry files of the disk tier.
fn entries(s: &Setup) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(s.weir.dir().join("cache"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
            if !f.file_name().to_string_lossy().contains(".tmp") {
                out.push(f.path());
            }
        }
    }
    out
}

/// Stops weir and starts it again on the same folder and config.
fn restart(s: &mut Setup) {
    s.weir.signal("TERM");
    assert!(s.weir.wait_exit(Duration::from_secs(10)).is_some());
    let next = s.weir.spawn_sibling(&[], &[]);
    next.wait_ready(s.listen, START_TIMEOUT);
    s.weir = next;
}

#[test]
fn entries_survive_a_restart() {
    let mut s = setup();
    assert_eq!(xcache(&s.get("/a")), "MISS");
    assert!(poll_until(Duration::from_secs(3), || entries(&s).len() == 1));
    restart(&mut s);
    let r = s.get("/a");
    assert_eq!((r.body.as_str(), xcache(&r)), ("stored /a", "HIT"));
    assert_eq!(s.hits(), 1);
}

#[test]
fn a_damaged_entry_is_a_logged_miss() {
    let mut s = setup();
    s.get("/t");
    assert!(poll_until(Duration::from_secs(3), || entries(&s).len() == 1));
    let file = entries(&s).remove(0);
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    restart(&mut s);
    let r = s.get("/t");
    assert_eq!(
        (r.status, r.body.as_str(), xcache(&r)),
        (200, "stored /t", "MISS")
    );
    assert!(
        s.weir.wait_for_log("damaged entry", Duration::from_secs(3)),
        "{}",
        s.weir.logs()
    );
    assert_eq!(s.hits(), 2);
}

#[test]
fn an_entry_path_that_is_a_symlink_is_never_followed() {
    let mut s = setup();
    s.get("/l");
    assert!(poll_until(Duration::from_secs(3), || entries(&s).len() == 1));
    let file = entries(&s).remove(0);
    let victim = s.weir.dir().join("victim");
    std::fs::write(&victim, "victim").unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    restart(&mut s);
    let r = s.get("/l");
    assert_eq!((r.body.as_str(), xcache(&r)), ("stored /l", "MISS"));
    assert!(poll_until(Duration::from_secs(3), || {
        std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file())
    }));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim");
}

#[test]
fn the_disk_tier_stays_within_its_size() {
    let big = "y".repeat(100 * 1024);
    let s = start("    cache: {}\n", TOP, move |_: &RawRequest| {
        answer(200, &[("cache-control", "max-age=600")], &big)
    });
    for i in 0..30 {
        s.get(&format!("/f/{i}"));
    }
    let ok = poll_until(Duration::from_secs(5), || {
        let m = s.metrics();
        metric(&m, r#"weir_cache_evictions_total{tier="disk"}"#) > 0.0
    });
    let m = s.metrics();
    assert!(ok, "{m}");
    let size = metric(&m, r#"weir_cache_size_bytes{tier="disk"}"#);
    assert!(size > 0.0 && size <= 1048576.0, "{m}");
    // Background writes may still land (each one evicts right after it).
    let on_disk = || -> u64 {
        entries(&s)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    };
    assert!(
        poll_until(Duration::from_secs(3), || on_disk() <= 1 << 20),
        "{} bytes in the folder",
        on_disk()
    );
}

#[test]
fn weir_check_accepts_a_disk_tier() {
    let dir = common::TestDir::create();
    let path = dir.write("weir.yaml", &format!("{TOP}listeners: [{{ name: web, address: \"127.0.0.1:1\" }}]\nroutes: [{{ upstream: p, cache: {{}} }}]\nupstreams: {{ p: {{ backends: [\"127.0.0.1:2\"] }} }}\n"));
    let out = common::run_weir(&["check", "-c", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
}
