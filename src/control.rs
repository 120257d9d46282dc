//! Commands that steer a running weir through its pid file: `reload`
//! (SIGHUP, live swap), `stop` (SIGTERM / SIGINT) and `upgrade` (a new
//! process takes the listening sockets over, then the old one drains).
//! Each validates what it can before it signals anything.

use crate::compile::{self, Loaded};
use crate::live::status_path;
use crate::server::server_conf;
use pingora_core::server::configuration::ServerConf;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn load(path: &Path) -> Result<(Loaded, ServerConf), String> {
    let loaded = compile::load_file(path, None).map_err(|e| e.to_string())?;
    let dir = loaded.file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let conf = server_conf(&loaded.config.server, &dir);
    Ok((loaded, conf))
}

/// Reads a pid file.
pub fn read_pid(pid_file: &str) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!("cannot read pid file {pid_file}: {e} (is weir running with this config?)")
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("pid file {pid_file} does not hold a pid"))
}

/// Whether a process exists and has not exited (a zombie waiting for its
/// parent to reap it counts as gone).
pub fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false);
    exists && !zombie
}

fn signal(pid: i32, sig: libc::c_int) -> Result<(), String> {
    // SAFETY: sending a signal to a pid has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn running_pid(conf: &ServerConf) -> Result<i32, String> {
    let pid = read_pid(&conf.pid_file)?;
    if !alive(pid) {
        return Err(format!(
            "no process {pid} (from {}): weir is not running",
            conf.pid_file
        ));
    }
    if !is_weir(pid) {
        return Err(format!(
            "process {pid} (from {}) is not weir; not signalling it (a stale or planted pid file?)",
            conf.pid_file
        ));
    }
    Ok(pid)
}

/// Whether `pid` runs a weir binary: its executable (or, when that file was
/// replaced by an upgrade, its command line) is named `weir…`.
pub fn is_weir(pid: i32) -> bool {
    let named_weir = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("weir"))
    };
    if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        if named_weir(&exe) {
            return true;
        }
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let argv0 = c.split(|&b| b == 0).next()?.to_vec();
            String::from_utf8(argv0).ok()
        })
        .is_some_and(|a| named_weir(Path::new(&a)))
}

fn wait(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn finish(result: Result<String, String>) -> i32 {
    match result {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `weir reload`: validate, then `POST /reload` when the admin API is
/// configured and reachable, else SIGHUP and wait for the process to report.
pub fn reload(path: &Path) -> i32 {
    finish((|| {
        let (loaded, conf) = load(path)?;
        // Without a token the API is read-only (its POST /reload answers
        // 403): the local operator, who owns the pid, signals instead.
        if loaded
            .config
            .admin
            .as_ref()
            .is_some_and(|a| a.token.is_some())
        {
            let target = crate::admin_client::Target::resolve(path, None, None)?;
            match target.call("POST", "/reload", None) {
                Ok((200, v)) => {
                    return Ok(format!("reloaded: {}", v["changed"].as_str().unwrap_or("")));
                }
                Ok((403, _)) => log::debug!("admin API is read-only; using SIGHUP"),
                Ok((code, v)) => {
                    let why = v["error"]
                        .as_str()
                        .map_or_else(|| format!("admin API answered {code}"), str::to_string);
                    return Err(format!(
                        "reload failed, the running config is unchanged:\n{why}"
                    ));
                }
                Err(e) => log::debug!("admin API not reachable ({e}); using SIGHUP"),
            }
        }
        let pid = running_pid(&conf)?;
        let status = status_path(&conf.pid_file);
        let _ = std::fs::remove_file(&status);
        signal(pid, libc::SIGHUP)?;
        let mut text = String::new();
        if !wait(Duration::from_secs(10), || {
            text = std::fs::read_to_string(&status).unwrap_or_default();
            !text.is_empty()
        }) {
            return Err(format!("process {pid} did not report a reload within 10 s"));
        }
        let mut parts = text.trim_end().splitn(3, ' ');
        let _generation = parts.next();
        match (parts.next(), parts.next().unwrap_or("")) {
            (Some("ok"), summary) => Ok(format!("reloaded (pid {pid}): {summary}")),
            (_, why) => Err(format!(
                "reload failed, the running config is unchanged:\n{why}"
            )),
        }
    })())
}

/// `weir stop`: SIGTERM (graceful) or SIGINT (fast), then wait for exit.
pub fn stop(path: &Path, fast: bool) -> i32 {
    finish((|| {
        let conf = match load(path) {
            Ok((_, c)) => c,
            // A file broken since start-up must not prevent stopping: its server
            // section alone is enough to find the pid file.
            Err(e) => server_section_only(path)
                .ok_or_else(|| format!("cannot read the config to find the pid file:\n{e}"))?,
        };
        let pid = running_pid(&conf)?;
        signal(pid, if fast { libc::SIGINT } else { libc::SIGTERM })?;
        let grace = conf.grace_period_seconds.unwrap_or(0)
            + conf.graceful_shutdown_timeout_seconds.unwrap_or(0);
        let limit = Duration::from_secs(if fast { 10 } else { grace + 15 });
        if wait(limit, || !alive(pid)) {
            Ok(format!("stopped (pid {pid})"))
        } else {
            Err(format!(
                "process {pid} is still running after {} s",
                limit.as_secs()
            ))
        }
    })())
}

fn server_section_only(path: &Path) -> Option<ServerConf> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let server: crate::config::model::ServerSection =
        serde_yaml::from_value(value.get("server").cloned().unwrap_or_default()).ok()?;
    let file = std::path::absolute(path).ok()?;
    Some(server_conf(
        &server,
        file.parent().unwrap_or(Path::new("/")),
    ))
}

/// Waits until the old process has exited and returns its account (or
/// why there is none).
fn account(conf: &ServerConf, old: i32) -> String {
    let limit = conf.grace_period_seconds.unwrap_or(0)
        + conf.graceful_shutdown_timeout_seconds.unwrap_or(0)
        + 15;
    if !wait(Duration::from_secs(limit), || !alive(old)) {
        return format!("pid {old} is still draining after {limit} s");
    }
    let read = || crate::observe::account::read(&conf.pid_file, old as u32);
    let mut found = None;
    // Written just before it exits; a moment for the rename to land.
    wait(Duration::from_secs(2), || {
        found = read();
        found.is_some()
    });
    match found {
        Some(a) => a.describe(),
        None => format!("pid {old} exited without leaving its account"),
    }
}

fn sock_inode(path: &str) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// `weir upgrade`: start a new process with `-u -d`, hand it the sockets
/// with SIGQUIT to the old one, and wait until the new one runs.
pub fn upgrade(path: &Path) -> i32 {
    finish((|| {
        let (loaded, conf) = load(path)?;
        let old = running_pid(&conf)?;
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the weir binary: {e}"))?;
        let probe = Command::new(&exe).arg("--version").output();
        if !probe.map(|o| o.status.success()).unwrap_or(false) {
            return Err(format!(
                "{} does not run; the old process keeps serving",
                exe.display()
            ));
        }
        let before = sock_inode(&conf.upgrade_sock);
        let mut child = Command::new(&exe)
            .arg("-c")
            .arg(&loaded.file)
            .args(["-u", "-d"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the new process: {e}"))?;
        // The new process listens on upgrade_sock before the old one may send.
        let mut exited = None;
        let listening = wait(Duration::from_secs(10), || {
            exited = child.try_wait().ok().flatten();
            exited.is_some() || sock_inode(&conf.upgrade_sock).is_some_and(|i| Some(i) != before)
        });
        if let Some(status) = exited {
            return Err(format!("the new process exited ({status}) before taking over; the old one (pid {old}) keeps serving"));
        }
        if !listening {
            let _ = child.kill();
            return Err(format!(
                "the new process never opened {}; the old one (pid {old}) keeps serving",
                conf.upgrade_sock
            ));
        }
        signal(old, libc::SIGQUIT)?;
        let mut status = None;
        wait(Duration::from_secs(30), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(s) if s.success() => {}
            Some(s) => return Err(format!("the new process failed ({s}) after the old one (pid {old}) was told to hand over; check the error log")),
            None => {
                let _ = child.kill();
                return Err("the new process did not finish starting within 30 s".into());
            }
        }
        let mut new = 0;
        wait(Duration::from_secs(5), || {
            new = read_pid(&conf.pid_file).unwrap_or(0);
            new != old && new > 0 && alive(new)
        });
        if new == old || new == 0 {
            return Err(format!("the pid file {} still names {old}", conf.pid_file));
        }
        Ok(format!(
            "upgraded: pid {new} now serves; {}",
            account(&conf, old)
        ))
    })())
}
