//! What `weir certs` and `GET /certificates` show: one row per certificate
//! and listener, file and ACME alike. The ACME service publishes its rows
//! after every pass; file rows come from the running snapshot.

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One certificate as served by one listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The https listener.
    pub listener: String,
    /// Its DNS names (for ACME: the names configured).
    pub names: Vec<String>,
    /// `file` or `acme`.
    pub source: String,
    /// `notAfter`, RFC 3339 (none while an ACME certificate is not obtained yet).
    pub not_after: Option<String>,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: Option<i64>,
    /// When weir renews it next (ACME only), RFC 3339.
    pub next_renewal: Option<String>,
    /// The last failed order's error, until an order succeeds (ACME only).
    pub last_error: Option<String>,
}

static ACME_ROWS: LazyLock<ArcSwap<Vec<Row>>> = LazyLock::new(Default::default);

/// Replaces the ACME rows.
pub fn publish(rows: Vec<Row>) {
    ACME_ROWS.store(Arc::new(rows));
}

/// The ACME rows as last published.
pub fn acme_rows() -> Arc<Vec<Row>> {
    ACME_ROWS.load_full()
}

/// Now, in Unix seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unix seconds as RFC 3339 (UTC, seconds).
pub fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A row for a certificate read from files.
pub fn file_row(listener: &str, names: &[String], not_after: i64) -> Row {
    Row {
        listener: listener.to_string(),
        names: names.to_vec(),
        source: "file".into(),
        not_after: Some(rfc3339(not_after)),
        days_left: Some(days_left(not_after)),
        next_renewal: None,
        last_error: None,
    }
}

/// Whole days from now to `unix` (rounded down, negative when past).
pub fn days_left(unix: i64) -> i64 {
    (unix - now_unix()).div_euclid(24 * 3600)
}

/// The rows as a table (for `weir certs`).
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<12} {:<6} {:<22} {:>9} {:<22} {:<30} {}\n",
        "LISTENER", "SOURCE", "NOT AFTER", "DAYS LEFT", "NEXT RENEWAL", "NAMES", "LAST ERROR"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:<6} {:<22} {:>9} {:<22} {:<30} {}\n",
            r.listener,
            r.source,
            r.not_after.as_deref().unwrap_or("-"),
            r.days_left.map_or("-".to_string(), |d| d.to_string()),
            r.next_renewal.as_deref().unwrap_or("-"),
            r.names.join(","),
            r.last_error.as_deref().unwrap_or("-"),
        ));
    }
    out
}
