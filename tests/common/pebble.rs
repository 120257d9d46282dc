//! A real ACME CA for tests: Debian's `pebble` with `pebble-challtestsrv`
//! as its DNS (every name resolves to 127.0.0.1), on free loopback ports,
//! with its own TLS certificate made by rcgen. Pebble validates http-01 on
//! `http_port` and tls-alpn-01 on `tls_port`: the test puts weir's
//! listeners there. Both processes are killed by pid on drop.

use super::{certs, free_port, poll_until, port_open, TestDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running Pebble and its DNS.
pub struct Pebble {
    /// Files: config, TLS certificate, logs, the issuing root.
    pub dir: TestDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The CA file weir needs to trust the directory (`acme.ca`).
    pub ca_file: PathBuf,
    /// Where Pebble validates http-01.
    pub http_port: u16,
    /// Where Pebble validates tls-alpn-01.
    pub tls_port: u16,
    listen: SocketAddr,
    management: SocketAddr,
    dns_port: u16,
    env: Vec<(String, String)>,
    validity: u64,
    pebble: Option<Child>,
    dns: Option<Child>,
}

/// Whether Pebble is installed (`apt-get install pebble`).
pub fn installed() -> bool {
    std::path::Path::new("/usr/bin/pebble").exists()
        && std::path::Path::new("/usr/bin/pebble-challtestsrv").exists()
}

impl Pebble {
    /// Starts Pebble issuing certificates valid for `validity` seconds,
    /// with extra environment variables (e.g. `PEBBLE_VA_ALWAYS_VALID`).
    pub fn start(validity: u64, env: &[(&str, &str)]) -> Pebble {
        Pebble::start_with_ports(validity, env, None)
    }

    /// Like [`Pebble::start`], validating on the given http and tls ports
    /// (another Pebble's, for a second CA in front of the same weir).
    pub fn start_with_ports(
        validity: u64,
        env: &[(&str, &str)],
        ports: Option<(u16, u16)>,
    ) -> Pebble {
        assert!(
            installed(),
            "pebble is not installed (apt-get install -y pebble)"
        );
        let dir = TestDir::create();
        let ca = certs::ca();
        let (cert, key) = certs::leaf(dir.path(), "pebble", &ca, &["localhost", "127.0.0.1"], None);
        let ca_file = certs::write_ca(dir.path(), &ca);
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (http_port, tls_port) = ports.unwrap_or_else(|| (free_port(), free_port()));
        let dns_port = free_port();
        let config = serde_json::json!({ "pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity,
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let mut p = Pebble {
            directory: format!("https://{listen}/dir"),
            dir,
            ca_file,
            http_port,
            tls_port,
            listen,
            management,
            dns_port,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            validity,
            pebble: None,
            dns: None,
        };
        p.start_dns();
        p.restart();
        p
    }

    fn start_dns(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("dns.log")).unwrap();
        let dns = format!("127.0.0.1:{}", self.dns_port);
        let mgmt = format!("127.0.0.1:{}", free_port());
        let child = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &dns,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args([
                "-management",
                &mgmt,
                "-defaultIPv6",
                "",
                "-defaultIPv4",
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("pebble-challtestsrv runs");
        self.dns = Some(child);
        let mgmt: SocketAddr = mgmt.parse().unwrap();
        assert!(
            poll_until(Duration::from_secs(10), || port_open(mgmt)),
            "challtestsrv did not start"
        );
    }

    /// (Re)starts Pebble itself (a new CA: new root, no accounts).
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("pebble.log")).unwrap();
        let dns = format!("127.0.0.1:{}", self.dns_port);
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("pebble.json"))
            .args(["-dnsserver", &dns])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("pebble runs");
        self.pebble = Some(child);
        let (l, m) = (self.listen, self.management);
        assert!(
            poll_until(Duration::from_secs(15), || port_open(l) && port_open(m)),
            "pebble did not start:\n{}",
            self.log()
        );
        let _ = self.validity;
    }

    /// Kills Pebble (the CA is down; its DNS stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            kill(&mut c);
        }
    }

    /// Pebble's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Writes the root that issues Pebble's certificates (from its
    /// management interface) to `root.pem` and returns its path.
    pub fn root(&self) -> PathBuf {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(&self.ca_file)
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .expect("curl runs");
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            pem.contains("BEGIN CERTIFICATE"),
            "no root from pebble: {pem}"
        );
        let path = self.dir.path().join("root.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// The number of orders Pebble finalized (from its log).
    pub fn finalized_orders(&self) -> usize {
        self.log().matches("POST /finalize-order/").count()
    }
}

fn kill(c: &mut Child) {
    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(c.id() as i32, libc::SIGKILL);
    }
    let _ = c.wait();
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut c) = self.dns.take() {
            kill(&mut c);
        }
    }
}
