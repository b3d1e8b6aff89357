//! Per-plugin sandbox limits: wall-clock deadline, memory, fuel, tables, returned sizes and
//! counts, requeue floor, log rate, quarantine.

use super::output::LogLimits;
use super::quarantine::QuarantinePolicy;
use std::time::Duration;

/// Limits applied to every call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call (epoch interruption and a host timer). Default 5 s.
    pub call_timeout: Duration,
    /// Linear memory a plugin instance may grow to. Default 64 MiB.
    pub memory_bytes: usize,
    /// Elements a table may hold. Default 20 000.
    pub table_elements: usize,
    /// Largest JSON text or log record a plugin may hand the host in one value. Default 4 MiB.
    pub max_value_bytes: usize,
    /// Fuel (roughly, wasm instructions) one call may burn; `None` for no limit (default). Takes
    /// effect only in a runtime created with fuel metering ([`super::RuntimeConfig::fuel`]).
    pub fuel: Option<u64>,
    /// When repeated failures quarantine the plugin.
    pub quarantine: QuarantinePolicy,
    /// The shortest `requeue-after` honoured (component health, cleanup); also the interval at
    /// which one object may be reconciled once its burst is spent. Default 1 s.
    pub min_requeue_after: Duration,
    /// Entries one plan may hold. Default 256.
    pub max_plan_entries: usize,
    /// Components one health report may hold, and conditions one status update. Default 64.
    pub max_conditions: usize,
    /// Bytes of status one call may hand back: the text of a health report, or a status
    /// update's fields and conditions. Default 256 KiB (kube-apiserver refuses objects over
    /// 1.5 MiB).
    pub max_status_bytes: usize,
    /// How much guest output (stdout, stderr, the log import) reaches the host's log.
    pub log: LogLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            max_value_bytes: 4 << 20,
            fuel: None,
            quarantine: QuarantinePolicy::default(),
            min_requeue_after: Duration::from_secs(1),
            max_plan_entries: 256,
            max_conditions: 64,
            max_status_bytes: 256 << 10,
            log: LogLimits::default(),
        }
    }
}

impl Limits {
    /// Set the call deadline.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Set the memory limit.
    #[must_use]
    pub fn memory_bytes(mut self, bytes: usize) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// Set the largest value a call may return.
    #[must_use]
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Set the table size limit.
    #[must_use]
    pub fn table_elements(mut self, n: usize) -> Self {
        self.table_elements = n;
        self
    }

    /// Limit the fuel of one call.
    #[must_use]
    pub fn fuel(mut self, fuel: Option<u64>) -> Self {
        self.fuel = fuel;
        self
    }

    /// Set the quarantine policy.
    #[must_use]
    pub fn quarantine(mut self, policy: QuarantinePolicy) -> Self {
        self.quarantine = policy;
        self
    }

    /// Set the shortest requeue-after honoured.
    #[must_use]
    pub fn min_requeue_after(mut self, floor: Duration) -> Self {
        self.min_requeue_after = floor;
        self
    }

    /// Set the largest plan, in entries.
    #[must_use]
    pub fn max_plan_entries(mut self, n: usize) -> Self {
        self.max_plan_entries = n;
        self
    }

    /// Set the most components of a health report and conditions of a status update.
    #[must_use]
    pub fn max_conditions(mut self, n: usize) -> Self {
        self.max_conditions = n;
        self
    }

    /// Set the most bytes of status one call may hand back.
    #[must_use]
    pub fn max_status_bytes(mut self, bytes: usize) -> Self {
        self.max_status_bytes = bytes;
        self
    }

    /// Set the log output limits.
    #[must_use]
    pub fn log(mut self, log: LogLimits) -> Self {
        self.log = log;
        self
    }
}
