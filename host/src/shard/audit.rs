//! The audit log of a sharded replica (`--shard-audit-log FILE`): one line per reconcile,
//! `<identity> <uid> <start> <end>`, the interval on the machine's monotonic clock
//! (`CLOCK_MONOTONIC`, nanoseconds), so the logs of replicas on one machine can be compared to
//! prove that no object was reconciled by two replicas at once; and one line per handler event
//! delivered, `<identity> event <kind> <uid> <resourceVersion>`, to prove each change was
//! delivered by one replica.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// Why the audit log cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the shard audit log {path}")]
pub struct AuditError {
    /// The file.
    pub path: String,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// An append-only audit log; cheap to clone.
#[derive(Debug, Clone)]
pub struct Audit {
    identity: Arc<str>,
    file: Arc<Mutex<std::io::LineWriter<std::fs::File>>>,
}

impl Audit {
    /// Append to `path` (created if missing) as `identity`.
    ///
    /// # Errors
    /// [`AuditError`] when the file cannot be opened.
    pub fn open(path: &Path, identity: &str) -> Result<Self, AuditError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            identity: identity.into(),
            file: Arc::new(Mutex::new(std::io::LineWriter::new(file))),
        })
    }

    /// Record that `uid` was worked on from `start` to `end` ([`now`] values).
    pub fn record(&self, uid: &str, start: u64, end: u64) {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = writeln!(file, "{} {uid} {start} {end}", self.identity) {
            tracing::warn!(error = %e, "cannot write the shard audit log");
        }
    }

    /// Record that the change of `kind` with resourceVersion `rv` to `uid` was delivered here.
    pub fn record_event(&self, kind: &impl std::fmt::Display, uid: &str, rv: &str) {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = writeln!(file, "{} event {kind} {uid} {rv}", self.identity) {
            tracing::warn!(error = %e, "cannot write the shard audit log");
        }
    }
}

/// The machine's monotonic clock in nanoseconds (the same clock in every process).
#[must_use]
pub fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}
