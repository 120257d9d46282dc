//! Daemonized `weir` processes a test started (`-d`, upgrades): found
//! through the pid file and killed by pid when the test ends.

use std::path::{Path, PathBuf};

/// Kills every pid it has seen in the pid file when dropped.
pub struct Daemons {
    /// The pid file the daemons write.
    pub pid_file: PathBuf,
    /// Every pid seen there.
    pub pids: Vec<i32>,
}

impl Daemons {
    /// Follows `pid_file`.
    pub fn new(pid_file: PathBuf) -> Daemons {
        Daemons {
            pid_file,
            pids: Vec::new(),
        }
    }

    /// The pid in the pid file now (0 when there is none), remembered for
    /// the kill on drop.
    pub fn remember(&mut self) -> i32 {
        let pid = read_pid(&self.pid_file);
        if pid > 0 && !self.pids.contains(&pid) {
            self.pids.push(pid);
        }
        pid
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The pid in a pid file, 0 when it is missing or unreadable.
pub fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether a process runs (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}
