//! Per-plugin sandbox limits: wall-clock deadline, memory, fuel, tables, returned sizes, quarantine.

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
    /// Warm instances kept per plugin for reuse. Default 8.
    pub idle_instances: usize,
    /// Fuel (roughly, wasm instructions) one call may burn; `None` for no limit (default). Takes
    /// effect only in a runtime created with fuel metering ([`super::RuntimeConfig::fuel`]).
    pub fuel: Option<u64>,
    /// When repeated failures quarantine the plugin.
    pub quarantine: QuarantinePolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            max_value_bytes: 4 << 20,
            idle_instances: 8,
            fuel: None,
            quarantine: QuarantinePolicy::default(),
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
}
