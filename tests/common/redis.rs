use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, poll_until, TestDir};

/// Where Debian's `redis-server` package puts the binary.
pub const REDIS_BIN: &str = "/usr/bin/redis-server";

/// How long [`RedisServer::start`] waits for the server to answer PING.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A throw-away `redis-server` child process on 127.0.0.1 (no persistence,
/// its own temp dir); SIGKILLed by [`RedisServer::stop`] or on drop.
pub struct RedisServer {
    port: u16,
    dir: TestDir,
    child: Option<Child>,
    starts: usize,
}

impl RedisServer {
    /// Starts a server on a free loopback port; panics (with its log) if it
    /// does not answer PING within 10 s, or if `redis-server` is not installed.
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` (e.g. to bring a killed one back).
    pub fn start_on(port: u16) -> RedisServer {
        let mut server = RedisServer {
            port,
            dir: TestDir::create(),
            child: None,
            starts: 0,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(
            Path::new(REDIS_BIN).exists(),
            "{REDIS_BIN} is missing: install the redis-server package (apt-get install redis-server)"
        );
        self.starts += 1;
        let log_path = self.dir.path().join(format!("redis-{}.log", self.starts));
        let log = File::create(&log_path).expect("create redis log");
        let log_err = log.try_clone().expect("clone redis log");
        let child = Command::new(REDIS_BIN)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {REDIS_BIN}: {e}"));
        self.child = Some(child);
        let addr = self.addr();
        let up = poll_until(REDIS_START_TIMEOUT, || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server on {addr} exited with {status}:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
            ping(addr)
        });
        assert!(
            up,
            "redis-server on {addr} did not answer PING within {REDIS_START_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// The port it listens (or listened) on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>`, as written in weir's config.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the server and waits until it has exited and its port
    /// refuses connections. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let addr = self.addr();
        assert!(
            poll_until(Duration::from_secs(5), || !ping(addr)),
            "redis-server on {addr} still answers PING 5 s after it was killed"
        );
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// True while the child process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends one command (RESP array of bulk strings) and returns the first
    /// line of the reply, e.g. `+PONG` or `:3`.
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        command(self.addr(), args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True if a Redis server on `addr` answers `PING` with `+PONG` within 500 ms.
pub fn ping(addr: SocketAddr) -> bool {
    command(addr, &["PING"]).is_ok_and(|reply| reply == "+PONG")
}

/// Sends one command to `addr` on a fresh connection (500 ms timeouts) and
/// returns the first line of the reply without its CRLF.
pub fn command(addr: SocketAddr, args: &[&str]) -> io::Result<String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(out.as_bytes())?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "redis closed the connection",
            ));
        }
        reply.push(byte[0]);
        if reply.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
        }
    }
    reply.truncate(reply.len() - 2);
    Ok(String::from_utf8_lossy(&reply).into_owned())
}
