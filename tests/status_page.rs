//! The status page (`GET /` on the admin listener) in a real browser:
//! headless Chromium driven through chromedriver (fantoccini), against a
//! running weir with real backends. What a person would see: a killed
//! backend turns DOWN, a backend named with HTML shows as text, the drain
//! button drains (and `/status` agrees) with the token, a change without
//! the right token is refused, a read-only weir says so, no console errors,
//! and a caching route's hit ratio shows after a miss and a hit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "page-test-token-0123456789";
/// A backend whose name is markup: the page must show it as text.
const HOSTILE: &str = "<img src=x id=pwned onerror=alert(1)>";

/// chromedriver on a free loopback port, killed (by pid) when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
    profile: TestDir,
}

impl Driver {
    fn start() -> Driver {
        let addr = free_addr();
        let child = Command::new("chromedriver")
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) must be installed");
        assert!(
            wait_port(addr, Duration::from_secs(10)),
            "chromedriver did not listen"
        );
        Driver {
            child,
            addr,
            profile: TestDir::create(),
        }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://{}", self.addr))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The browser is chromedriver's child; a test that failed before
        // closing its session would leave it running. Its command line
        // names this driver's own profile folder, which finds its pids.
        let profile = self.profile.path().display().to_string();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in browser_pids(&profile) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// Processes whose command line mentions `profile`.
fn browser_pids(profile: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(profile))
        })
        .collect()
}

/// The browser's console entries at SEVERE level (errors), through
/// chromedriver's log endpoint (fantoccini has no call for it).
fn console_errors(driver: SocketAddr, session: &str) -> Vec<String> {
    let path = format!("/session/{session}/se/log");
    let body = br#"{"type":"browser"}"#;
    let r = request_with_body(
        driver,
        "POST",
        &path,
        &[("content-type", "application/json")],
        body,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    v["value"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// weir with an admin listener (`token` or read-only) in front of backends
/// `a` (plain) and `b` (named with markup), with fast health checks.
fn start(a: &TestBackend, b: &TestBackend, token: Option<&str>) -> (WeirProcess, SocketAddr) {
    let (listen, adm) = (free_addr(), free_addr());
    let token = token.map_or(String::new(), |t| format!(", token: {t}"));
    let cfg = format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{adm}"{token} }}
listeners: [{{ name: web, address: "{listen}" }}]
routes: [{{ name: main, upstream: pool }}]
upstreams:
  pool:
    backends:
      - {{ address: "{a}", name: alpha }}
      - {{ address: "{b}", name: "{HOSTILE}" }}
    health_check: {{ type: tcp, interval: 200ms, timeout: 100ms, unhealthy_threshold: 1, healthy_threshold: 1 }}
"#,
        a = a.addr(),
        b = b.addr()
    );
    let w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    for _ in 0..20 {
        let _ = get(listen, "/");
    }
    (w, adm)
}

/// Script text that finds the upstreams table row `r` whose first cell is
/// the script's first argument.
const FIND_ROW: &str = "const rows = [...document.querySelectorAll('#upstreams tr')];\
    const r = rows.find(r => r.cells[0] && r.cells[0].textContent === arguments[0]);";

/// The text of the upstreams table row for `backend` (its first cell).
async fn row_text(c: &Client, backend: &str) -> Option<String> {
    let script = format!("{FIND_ROW} return r ? r.innerText : null;");
    c.execute(&script, vec![json!(backend)])
        .await
        .ok()?
        .as_str()
        .map(str::to_string)
}

/// Polls `f` every 100 ms until it is true or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn status_state(adm: SocketAddr, addr: SocketAddr) -> Option<String> {
    let host = adm.to_string();
    let auth = format!("Bearer {TOKEN}");
    let r = request(
        adm,
        "GET",
        "/status",
        &[("host", host.as_str()), ("authorization", auth.as_str())],
    )
    .ok()?;
    status_backend(&r.body, "pool", addr).and_then(|b| b["state"].as_str().map(str::to_string))
}

#[test]
fn read_only_page_shows_state_escapes_names_and_follows_a_backend_down() {
    let a = TestBackend::start("a");
    let mut b = TestBackend::start("b");
    let (_w, adm) = start(&a, &b, None);
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let browser = driver.browser().await;
        let c = &browser;
        c.goto(&format!("http://{adm}/")).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || async move {
                row_text(c, "alpha").await.is_some_and(|t| t.contains("UP"))
            })
            .await,
            "backend alpha shown UP"
        );
        // The markup name is shown as its text, and nothing of it ran.
        let hostile = row_text(c, HOSTILE).await;
        assert!(
            hostile.is_some(),
            "the markup-named backend is listed as text"
        );
        let injected = c
            .execute("return document.getElementById('pwned') !== null;", vec![])
            .await
            .unwrap();
        assert_eq!(
            injected,
            json!(false),
            "markup from a backend name became an element"
        );
        let notice = c
            .find(Locator::Css("#notice"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(notice.contains("Read-only"), "{notice}");
        let buttons = c
            .execute(
                "return document.querySelectorAll('#upstreams button').length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(buttons, json!(0), "no change buttons on a read-only weir");
        // A killed backend turns DOWN within two refreshes (2 s each) of the
        // health check noticing (200 ms).
        b.stop();
        assert!(
            eventually(Duration::from_millis(4500), || async move {
                row_text(c, HOSTILE)
                    .await
                    .is_some_and(|t| t.contains("DOWN"))
            })
            .await,
            "the killed backend turned DOWN on the page: {:?}",
            row_text(c, HOSTILE).await
        );
        // ... and the recent events say so.
        assert!(
            eventually(Duration::from_secs(5), || async move {
                let t = c
                    .find(Locator::Css("#events"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                t.contains("DOWN")
            })
            .await,
            "a DOWN event on the page"
        );
        let shot = c.screenshot().await.unwrap();
        if let Ok(dir) = std::env::var("WEIR_PAGE_SCREENSHOT") {
            std::fs::write(dir, &shot).unwrap();
        }
        assert!(shot.len() > 1000, "a screenshot");
        let session = browser.session_id().await.unwrap().unwrap();
        let errors = console_errors(driver.addr, &session);
        assert!(errors.is_empty(), "console errors: {errors:?}");
        browser.close().await.unwrap();
    });
    drop(a);
}

#[test]
fn with_the_token_the_drain_button_drains_and_a_wrong_token_is_refused() {
    let a = TestBackend::start("a");
    let b = TestBackend::start("b");
    let (_w, adm) = start(&a, &b, Some(TOKEN));
    let a_addr = a.addr();
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let browser = driver.browser().await;
        let c = &browser;
        c.goto(&format!("http://{adm}/")).await.unwrap();
        let notice = move || async move {
            c.find(Locator::Css("#notice"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        assert!(
            eventually(Duration::from_secs(5), || async move {
                notice().await.contains("token")
            })
            .await,
            "the page asks for the token: {}",
            notice().await
        );
        let input = c.find(Locator::Css("#token")).await.unwrap();
        input.send_keys(&format!("{TOKEN}\u{E007}")).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || async move {
                row_text(c, "alpha").await.is_some()
            })
            .await,
            "the table appears once the token is typed"
        );
        // Drain alpha with its button.
        let drain = format!(
            "{FIND_ROW} r.querySelector('button[data-action=drain]').click(); return true;"
        );
        c.execute(&drain, vec![json!("alpha")]).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || async move {
                status_state(adm, a_addr).as_deref() == Some("draining")
            })
            .await,
            "/status shows alpha draining"
        );
        assert!(
            eventually(Duration::from_secs(5), || async move {
                row_text(c, "alpha")
                    .await
                    .is_some_and(|t| t.contains("draining"))
            })
            .await,
            "the page shows alpha draining"
        );
        // A wrong token (typed without a refresh): the change is refused.
        let disable = format!(
            "document.getElementById('token').value = 'wrong-token'; {FIND_ROW} \
             r.querySelector('button[data-action=disable]').click(); return true;"
        );
        c.execute(&disable, vec![json!("alpha")]).await.unwrap();
        assert!(
            eventually(Duration::from_secs(5), || async move {
                notice().await.contains("refused (401)")
            })
            .await,
            "the page says the change was refused: {}",
            notice().await
        );
        assert_eq!(status_state(adm, a.addr()).as_deref(), Some("draining"));
        // The refused call is the console's only error (which also shows
        // the console check of the other test reads real entries).
        let session = browser.session_id().await.unwrap().unwrap();
        let errors = console_errors(driver.addr, &session);
        assert!(
            !errors.is_empty() && errors.iter().all(|e| e.contains("401")),
            "console errors: {errors:?}"
        );
        browser.close().await.unwrap();
    });
}

/// The cells' texts of the row in table box `#id` whose first cell is `first`.
async fn cells_in(c: &Client, id: &str, first: &str) -> Option<Vec<String>> {
    let script = "const rows = [...document.querySelectorAll('#' + arguments[0] + ' tr')];\
        const r = rows.find(r => r.cells[0] && r.cells[0].textContent === arguments[1]);\
        return r ? [...r.cells].map(c => c.textContent) : null;";
    let v = c
        .execute(script, vec![json!(id), json!(first)])
        .await
        .ok()?;
    serde_json::from_value(v).ok()
}

/// `/status`'s `cache.routes` entry of `route` (no token: read-only weir).
fn status_cache_route(adm: SocketAddr, route: &str) -> Option<Value> {
    let host = adm.to_string();
    let r = request(adm, "GET", "/status", &[("host", host.as_str())]).ok()?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    v["cache"]["routes"]
        .as_array()?
        .iter()
        .find(|r| r["route"] == route)
        .cloned()
}

#[test]
fn a_caching_routes_hit_ratio_shows_after_a_miss_and_a_hit() {
    let a = TestBackend::start("a");
    let (listen, adm) = (free_addr(), free_addr());
    let cfg = format!(
        r#"
server: {{ threads: 1, pid_file: "{{{{DIR}}}}/weir.pid", upgrade_sock: "{{{{DIR}}}}/up.sock" }}
admin: {{ listen: "{adm}" }}
listeners: [{{ name: web, address: "{listen}" }}]
routes:
  - {{ name: assets, match: {{ path_prefix: /static }}, upstream: pool, cache: {{ default_ttl: 60s }} }}
  - {{ name: main, upstream: pool }}
upstreams:
  pool: {{ backends: ["{a}"] }}
"#,
        a = a.addr()
    );
    let _w = WeirProcess::start(&cfg, listen);
    assert!(wait_port(adm, START_TIMEOUT), "admin never listened");
    let first = get(listen, "/static/app.js");
    assert_eq!(first.header("x-cache"), Some("MISS"), "{first:?}");
    let second = get(listen, "/static/app.js");
    assert_eq!(second.header("x-cache"), Some("HIT"), "{second:?}");
    assert_eq!(a.requests(), 1, "the hit never reached the backend");
    // /status: one miss, one hit, ratio 0.5; only the caching route listed.
    assert!(
        poll_until(Duration::from_secs(5), || {
            status_cache_route(adm, "assets").is_some_and(|r| r["hits"] == 1 && r["misses"] == 1)
        }),
        "/status cache: {:?}",
        status_cache_route(adm, "assets")
    );
    let route = status_cache_route(adm, "assets").unwrap();
    assert_eq!(route["hit_ratio"], json!(0.5), "{route}");
    assert_eq!(route["bypass"], json!(0), "{route}");
    assert!(
        status_cache_route(adm, "main").is_none(),
        "main does not cache"
    );
    let host = adm.to_string();
    let status = request(adm, "GET", "/status", &[("host", host.as_str())]).unwrap();
    let v: Value = serde_json::from_str(&status.body).unwrap();
    let memory = v["cache"]["tiers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["tier"] == "memory"))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        memory["objects"].as_i64() >= Some(1) && memory["size_bytes"].as_i64() > Some(0),
        "memory tier: {memory}"
    );
    // The page: route, hit ratio, hits, misses.
    let driver = Driver::start();
    runtime().block_on(async {
        let browser = driver.browser().await;
        let c = &browser;
        c.goto(&format!("http://{adm}/")).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || async move {
                cells_in(c, "cache", "assets")
                    .await
                    .is_some_and(|t| t.len() >= 4 && t[1] == "50.0 %" && t[2] == "1" && t[3] == "1")
            })
            .await,
            "the page shows assets at 50.0 % (1 hit, 1 miss): {:?}",
            cells_in(c, "cache", "assets").await
        );
        assert!(cells_in(c, "cache", "main").await.is_none());
        let tier = cells_in(c, "cache", "memory").await.unwrap_or_default();
        assert!(
            tier.len() == 3
                && tier[1].ends_with('B')
                && tier[2].parse::<i64>().ok() == memory["objects"].as_i64(),
            "memory tier row: {tier:?}"
        );
        let session = browser.session_id().await.unwrap().unwrap();
        let errors = console_errors(driver.addr, &session);
        assert!(errors.is_empty(), "console errors: {errors:?}");
        browser.close().await.unwrap();
    });
}
