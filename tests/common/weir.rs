use std::fs::{self, File};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{poll_until, port_open, POLL_INTERVAL};

/// Path of the `weir` binary built by cargo for this test run.
pub const WEIR_BIN: &str = env!("CARGO_BIN_EXE_weir");

/// How long [`WeirProcess::start`] waits for the port to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long [`run_weir`] lets the binary run before killing it and panicking.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique temp dir (`weir-test-<pid>-<counter>-<nanos>`), removed on drop
/// unless the env var `WEIR_KEEP_TEST_DIRS` is set.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates a fresh directory under `std::env::temp_dir()`.
    pub fn create() -> TestDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "weir-test-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestDir { path }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces every `{{DIR}}` in `text` with this directory's path.
    pub fn expand(&self, text: &str) -> String {
        text.replace("{{DIR}}", &self.path.display().to_string())
    }

    /// Writes `text` (with `{{DIR}}` expanded) to `name` inside the directory,
    /// atomically (temp file + rename); returns the file's path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(
            ".{name}.tmp-{}",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        fs::write(&tmp, self.expand(text))
            .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("WEIR_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A running `weir` child process with its own temp dir; SIGKILLed on drop.
///
/// Layout of [`WeirProcess::dir`]: `weir.yaml` (config), `stdout.log`,
/// `stderr.log`; siblings started with [`WeirProcess::spawn_sibling`] log to
/// `stdout-<n>.log` / `stderr-<n>.log` in the same dir.
pub struct WeirProcess {
    dir: Arc<TestDir>,
    config_path: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    child: Mutex<Child>,
    pid: u32,
}

/// `admin.listen` of a config, when it names a fixed address.
fn admin_listen(config_yaml: &str) -> Option<SocketAddr> {
    let doc: serde_yaml::Value = serde_yaml::from_str(config_yaml).ok()?;
    let addr: SocketAddr = doc.get("admin")?.get("listen")?.as_str()?.parse().ok()?;
    (addr.port() != 0 && !addr.ip().is_unspecified()).then_some(addr)
}

impl WeirProcess {
    /// Writes `config_yaml` (with `{{DIR}}` expanded), runs `weir -c <path>`
    /// and waits up to 15 s for `wait_for` to accept TCP connections; panics
    /// with stderr.log if the process exits first or the timeout passes.
    pub fn start(config_yaml: &str, wait_for: SocketAddr) -> WeirProcess {
        Self::start_with_env(config_yaml, &[], &[], wait_for)
    }

    /// Like [`WeirProcess::start`], running `weir -c <path> <extra_args...>`.
    pub fn start_with_args(
        config_yaml: &str,
        extra_args: &[&str],
        wait_for: SocketAddr,
    ) -> WeirProcess {
        Self::start_with_env(config_yaml, extra_args, &[], wait_for)
    }

    /// Like [`WeirProcess::start_with_args`] with extra environment variables
    /// (e.g. `("RUST_LOG", "debug")`; `RUST_LOG` is otherwise unset).
    pub fn start_with_env(
        config_yaml: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
        wait_for: SocketAddr,
    ) -> WeirProcess {
        let process = Self::spawn(config_yaml, extra_args, envs);
        process.wait_ready(wait_for, START_TIMEOUT);
        // The admin API is a service of its own and may listen a moment
        // after the proxy: tests talk to it right away.
        if let Some(admin) = admin_listen(config_yaml).filter(|a| *a != wait_for) {
            process.wait_ready(admin, START_TIMEOUT);
        }
        process
    }

    /// Writes the config and spawns `weir -c <path> <extra_args...>` without
    /// waiting for anything (for tests expecting startup to fail).
    pub fn spawn(config_yaml: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> WeirProcess {
        let dir = Arc::new(TestDir::create());
        let config_path = dir.write("weir.yaml", config_yaml);
        Self::spawn_in(dir, config_path, "", extra_args, envs)
    }

    /// Spawns another `weir` with the same dir and config file (current
    /// contents), e.g. the new process of a graceful upgrade (`-u`). Logs go
    /// to `stdout-<n>.log` / `stderr-<n>.log`. Does not wait for anything.
    pub fn spawn_sibling(&self, extra_args: &[&str], envs: &[(&str, &str)]) -> WeirProcess {
        let suffix = format!("-{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        Self::spawn_in(
            Arc::clone(&self.dir),
            self.config_path.clone(),
            &suffix,
            extra_args,
            envs,
        )
    }

    /// Spawns `weir -c <config_path>` for a config file the test laid out
    /// itself in `dir` (e.g. behind symlinks), without waiting for anything.
    pub fn spawn_at(dir: TestDir, config_path: PathBuf, extra_args: &[&str]) -> WeirProcess {
        Self::spawn_in(Arc::new(dir), config_path, "", extra_args, &[])
    }

    fn spawn_in(
        dir: Arc<TestDir>,
        config_path: PathBuf,
        log_suffix: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> WeirProcess {
        let stdout_path = dir.path().join(format!("stdout{log_suffix}.log"));
        let stderr_path = dir.path().join(format!("stderr{log_suffix}.log"));
        let stdout = File::create(&stdout_path).expect("create stdout.log");
        let stderr = File::create(&stderr_path).expect("create stderr.log");
        let mut cmd = Command::new(WEIR_BIN);
        cmd.arg("-c")
            .arg(&config_path)
            .args(extra_args)
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {WEIR_BIN}: {e}"));
        let pid = child.id();
        WeirProcess {
            dir,
            config_path,
            stdout_path,
            stderr_path,
            child: Mutex::new(child),
            pid,
        }
    }

    /// Waits until `addr` accepts TCP connections; panics with the logs if the
    /// process exits first or `timeout` passes.
    pub fn wait_ready(&self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "weir exited with {status} before {addr} accepted connections\n{}",
                    self.logs()
                );
            }
            if port_open(addr) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "weir did not accept connections on {addr} within {timeout:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The process's temp dir (what `{{DIR}}` expands to).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the config file passed with `-c`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Atomically replaces the config file (with `{{DIR}}` expanded).
    pub fn write_config(&self, text: &str) {
        let name = self
            .config_path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("config file name");
        self.dir.write(name, text);
    }

    /// Atomically writes another file into the temp dir (with `{{DIR}}` expanded).
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        self.dir.write(name, text)
    }

    /// Current contents of this process's stderr log.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Current contents of this process's stdout log.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Both logs, labelled, for panic messages.
    pub fn logs(&self) -> String {
        format!(
            "--- weir stderr ({}) ---\n{}\n--- weir stdout ---\n{}",
            self.stderr_path.display(),
            self.stderr(),
            self.stdout()
        )
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends a signal via `kill -<SIG> <pid>` (`"HUP"`, `"SIGTERM"`, `"QUIT"`…);
    /// panics if `kill` fails.
    pub fn signal(&self, sig: &str) {
        let sig = sig.trim_start_matches('-');
        let sig = sig.strip_prefix("SIG").unwrap_or(sig);
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("run kill: {e}"));
        assert!(
            status.success(),
            "kill -{sig} {} failed: {status}",
            self.pid
        );
    }

    /// The exit status if the process has exited (non-blocking).
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().ok().flatten()
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        self.try_exit_status().is_none()
    }

    /// Polls every 20 ms for the process to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        poll_until(timeout, || {
            status = self.try_exit_status();
            status.is_some()
        });
        status
    }

    /// Polls stderr+stdout every 20 ms until `needle` appears; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.log_count(needle) > 0)
    }

    /// Number of occurrences of `needle` in stderr+stdout so far.
    pub fn log_count(&self, needle: &str) -> usize {
        self.stderr().matches(needle).count() + self.stdout().matches(needle).count()
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!("weir pid {} (test failed):\n{}", self.pid, self.logs());
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Runs `weir <args...>` to completion (e.g. `check`/`explain`) with
/// `RUST_LOG` unset; panics if it runs longer than 30 s.
pub fn run_weir(args: &[&str]) -> Output {
    let mut child = Command::new(WEIR_BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {WEIR_BIN}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "weir {args:?} still running after {RUN_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
