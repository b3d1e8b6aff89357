//! The host's Prometheus metrics, registered under the `capstan` prefix and encoded as OpenMetrics text.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// How one reconcile ended, as the `result` label of `capstan_reconciles_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// The object settled with nothing scheduled, or is gone (`ok`).
    Ok,
    /// The reconcile asked to be called again: after a time (a component's `requeue-after`, a
    /// phase deadline) or, while not settled, after a backoff (`requeue`).
    Requeue,
    /// The object failed terminally: nothing more until its spec changes (`terminal`).
    Terminal,
    /// The reconcile itself failed: a plugin trap or limit, a write the API server refused
    /// (`error`); retried with backoff.
    Error,
}

impl ReconcileResult {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Requeue => "requeue",
            Self::Terminal => "terminal",
            Self::Error => "error",
        }
    }
}

impl EncodeLabelValue for ReconcileResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// A plugin's lifecycle state, as the `state` label of `capstan_plugin_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginStateLabel {
    /// Loaded and serving (`running`).
    Running,
    /// Quarantined after repeated failures (`degraded`).
    Degraded,
    /// Refused at load or reload (`rejected`).
    Rejected,
}

impl PluginStateLabel {
    /// Every state, in the order the series are written.
    pub const ALL: [Self; 3] = [Self::Running, Self::Degraded, Self::Rejected];

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Degraded => "degraded",
            Self::Rejected => "rejected",
        }
    }
}

impl EncodeLabelValue for PluginStateLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// How one reload ended, as the `result` label of `capstan_plugin_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new version replaced the old one (`swapped`).
    Swapped,
    /// The new version was refused and the old one kept (`rejected`).
    Rejected,
    /// The plugin was removed (`unloaded`).
    Unloaded,
}

impl ReloadResult {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Swapped => "swapped",
            Self::Rejected => "rejected",
            Self::Unloaded => "unloaded",
        }
    }
}

impl EncodeLabelValue for ReloadResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Whether a call into a plugin returned normally, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CallOutcome {
    Ok,
    Error,
}

impl EncodeLabelValue for CallOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Ok => "ok",
            Self::Error => "error",
        })
    }
}

/// A change of this replica's leadership, as the `transition` label of
/// `capstan_leader_transitions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaderTransition {
    /// It took the Lease (`acquired`).
    Acquired,
    /// It could not renew the Lease in time, or saw another holder (`lost`).
    Lost,
    /// It gave the Lease up at shutdown (`released`).
    Released,
}

impl LeaderTransition {
    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acquired => "acquired",
            Self::Lost => "lost",
            Self::Released => "released",
        }
    }
}

impl EncodeLabelValue for LeaderTransition {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    transition: LeaderTransition,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: CallOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReconcileLabels {
    plugin: String,
    result: ReconcileResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    plugin: String,
    export: String,
    outcome: CallOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExportLabels {
    plugin: String,
    export: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    plugin: String,
    state: PluginStateLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InfoLabels {
    plugin: String,
    version: String,
    hash: String,
    /// The compilation tier its code comes from: `baseline` or `optimized`.
    tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

/// 0.5 ms to 8.2 s, doubling: 15 buckets.
fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// 5 µs to 5.2 s, quadrupling: 11 buckets.
fn plugin_call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_005, 4.0, 11))
}

/// 1 ms to 16 s, doubling: 15 buckets (a renew must finish within the renew deadline).
fn renew_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// 1 ms to 33 s, doubling: 16 buckets (a swap compiles the new component).
fn reload_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Family<PluginLabels, Histogram>,
    queue_depth: Family<PluginLabels, Gauge>,
    plugin_calls: Family<CallLabels, Counter>,
    plugin_call_duration: Family<ExportLabels, Histogram>,
    bus_dropped: Family<ReasonLabels, Counter>,
    plugin_state: Family<StateLabels, Gauge>,
    plugin_info: Family<InfoLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    reload_duration: Histogram,
    log_dropped: Family<PluginLabels, Counter>,
    log_dropped_bytes: Family<PluginLabels, Counter>,
    leader: Gauge,
    leader_transitions: Family<TransitionLabels, Counter>,
    lease_renew_duration: Family<OutcomeLabels, Histogram>,
    shard_members: Gauge,
    shard_objects_owned: Family<PluginLabels, Gauge>,
    shard_handovers: Counter,
    applies_skipped: Family<PluginLabels, Counter>,
    /// The info series each plugin has now; held while changing a plugin's state or info
    /// series so concurrent updates of one plugin never leave two series at 1.
    info: Mutex<HashMap<String, InfoLabels>>,
}

/// The host's metrics: cheap to clone, shareable across tasks, every handle writing to one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// One plugin's call metrics (`capstan_plugin_calls_total`, `capstan_plugin_call_duration_seconds`):
/// each export's series are looked up once, so recording a call allocates no labels and searches no
/// family. Cheap to clone; clones share the series.
#[derive(Debug, Clone)]
pub struct PluginCalls {
    metrics: Metrics,
    plugin: String,
    series: Arc<RwLock<HashMap<&'static str, CallSeries>>>,
}

/// The series of one export of one plugin.
#[derive(Debug, Clone)]
struct CallSeries {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

impl PluginCalls {
    /// Record one call into `export` (e.g. `fetch`, `added`): whether it returned normally and how
    /// long it took.
    pub fn record(&self, export: &'static str, ok: bool, elapsed: Duration) {
        let known = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(export)
            .cloned();
        let series = known.unwrap_or_else(|| {
            let series = self.resolve(export);
            self.series
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(export, series.clone());
            series
        });
        if ok { &series.ok } else { &series.error }.inc();
        series.duration.observe(elapsed.as_secs_f64());
    }

    fn resolve(&self, export: &str) -> CallSeries {
        let inner = &self.metrics.inner;
        let calls = |outcome| {
            inner
                .plugin_calls
                .get_or_create(&CallLabels {
                    plugin: self.plugin.clone(),
                    export: export.to_owned(),
                    outcome,
                })
                .clone()
        };
        CallSeries {
            ok: calls(CallOutcome::Ok),
            error: calls(CallOutcome::Error),
            duration: inner
                .plugin_call_duration
                .get_or_create(&ExportLabels {
                    plugin: self.plugin.clone(),
                    export: export.to_owned(),
                })
                .clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The content type to serve [`Metrics::encode`] with.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// A registry with every host metric registered under the `capstan` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("capstan");

        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by plugin and result",
            reconciles.clone(),
        );
        let reconcile_duration =
            Family::<PluginLabels, Histogram>::new_with_constructor(reconcile_histogram as _);
        registry.register_with_unit(
            "reconcile_duration",
            "Wall time of one reconcile, by plugin",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let queue_depth = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Objects waiting in a plugin's work queue",
            queue_depth.clone(),
        );
        let plugin_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "plugin_calls",
            "Calls into plugin exports, by plugin, export and outcome",
            plugin_calls.clone(),
        );
        let plugin_call_duration =
            Family::<ExportLabels, Histogram>::new_with_constructor(plugin_call_histogram as _);
        registry.register_with_unit(
            "plugin_call_duration",
            "Latency of one call into a plugin export",
            Unit::Seconds,
            plugin_call_duration.clone(),
        );
        let bus_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "bus_dropped_events",
            "Events the event bus dropped, by reason",
            bus_dropped.clone(),
        );
        let plugin_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "plugin_state",
            "1 for the state each plugin is in, 0 for the others",
            plugin_state.clone(),
        );
        let plugin_info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "plugin_info",
            "The version and component hash of each loaded plugin",
            plugin_info.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "plugin_reloads",
            "Plugin reloads, by result",
            reloads.clone(),
        );
        let reload_duration = reload_histogram();
        registry.register_with_unit(
            "plugin_reload_duration",
            "Time to build and swap in a new plugin version",
            Unit::Seconds,
            reload_duration.clone(),
        );
        let applies_skipped = Family::<PluginLabels, Counter>::default();
        registry.register(
            "applies_skipped",
            "Server-side applies of a child skipped: the same as this controller's last, to a child unchanged since",
            applies_skipped.clone(),
        );
        let log_dropped = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_log_dropped",
            "Records of plugin output (stdout, stderr, log import) dropped over the plugin's log budget",
            log_dropped.clone(),
        );
        let log_dropped_bytes = Family::<PluginLabels, Counter>::default();
        registry.register_with_unit(
            "plugin_log_dropped",
            "Bytes of plugin output dropped over the plugin's log budget or cut from long records",
            Unit::Bytes,
            log_dropped_bytes.clone(),
        );

        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica serves (holds the leader Lease, or runs without leader election), else 0",
            leader.clone(),
        );
        let leader_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "leader_transitions",
            "Changes of this replica's leadership: acquired, lost, released",
            leader_transitions.clone(),
        );
        let lease_renew_duration =
            Family::<OutcomeLabels, Histogram>::new_with_constructor(renew_histogram as _);
        registry.register_with_unit(
            "lease_renew_duration",
            "Latency of one attempt of the leader to renew its Lease, by outcome",
            Unit::Seconds,
            lease_renew_duration.clone(),
        );

        let shard_members = Gauge::default();
        registry.register(
            "shard_members",
            "Live members of the shard ring as this replica sees them (sharding only)",
            shard_members.clone(),
        );
        let shard_objects_owned = Family::<PluginLabels, Gauge>::default();
        registry.register(
            "shard_objects_owned",
            "Objects of a reconciler's kind that this replica may work on now (sharding only)",
            shard_objects_owned.clone(),
        );
        let shard_handovers = Counter::default();
        registry.register(
            "shard_handovers",
            "Ring changes this replica drained to and acknowledged (sharding only)",
            shard_handovers.clone(),
        );

        Self {
            inner: Arc::new(Inner {
                registry,
                reconciles,
                reconcile_duration,
                queue_depth,
                plugin_calls,
                plugin_call_duration,
                bus_dropped,
                plugin_state,
                plugin_info,
                reloads,
                reload_duration,
                log_dropped,
                log_dropped_bytes,
                applies_skipped,
                leader,
                leader_transitions,
                lease_renew_duration,
                shard_members,
                shard_objects_owned,
                shard_handovers,
                info: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Record one finished reconcile of `plugin`.
    pub fn reconcile(&self, plugin: &str, result: ReconcileResult, elapsed: Duration) {
        let inner = &self.inner;
        inner
            .reconciles
            .get_or_create(&ReconcileLabels {
                plugin: plugin.to_owned(),
                result,
            })
            .inc();
        inner
            .reconcile_duration
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Record an apply of a child by `plugin` skipped as unchanged.
    pub fn apply_skipped(&self, plugin: &str) {
        self.inner
            .applies_skipped
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .inc();
    }

    /// Set how many objects wait in `plugin`'s queue.
    pub fn set_queue_depth(&self, plugin: &str, depth: usize) {
        let depth = i64::try_from(depth).unwrap_or(i64::MAX);
        self.inner
            .queue_depth
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .set(depth);
    }

    /// The call series of `plugin`, to record its calls with (see [`PluginCalls`]).
    #[must_use]
    pub fn plugin_calls(&self, plugin: &str) -> PluginCalls {
        PluginCalls {
            metrics: self.clone(),
            plugin: plugin.to_owned(),
            series: Arc::default(),
        }
    }

    /// Count `n` events the event bus dropped for `reason` (e.g. `full`, `closed`).
    pub fn bus_dropped(&self, reason: &str, n: u64) {
        self.inner
            .bus_dropped
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    /// Count output of `plugin` that did not reach the log: `records` dropped records and
    /// `bytes` bytes (of dropped records, or cut from long ones).
    pub fn plugin_log_dropped(&self, plugin: &str, records: u64, bytes: u64) {
        let labels = PluginLabels {
            plugin: plugin.to_owned(),
        };
        if records > 0 {
            self.inner
                .log_dropped
                .get_or_create(&labels)
                .inc_by(records);
        }
        if bytes > 0 {
            self.inner
                .log_dropped_bytes
                .get_or_create(&labels)
                .inc_by(bytes);
        }
    }

    /// Put `plugin` in `state`: its series for `state` reads 1, the other states 0.
    pub fn set_plugin_state(&self, plugin: &str, state: PluginStateLabel) {
        let _guard = self.lock_info();
        for s in PluginStateLabel::ALL {
            self.inner
                .plugin_state
                .get_or_create(&StateLabels {
                    plugin: plugin.to_owned(),
                    state: s,
                })
                .set(i64::from(s == state));
        }
    }

    /// Record the `version`, component `hash` and compilation `tier` (`baseline` or `optimized`)
    /// `plugin` runs, replacing its previous info series.
    pub fn set_plugin_info(&self, plugin: &str, version: &str, hash: &str, tier: &str) {
        let labels = InfoLabels {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
            hash: hash.to_owned(),
            tier: tier.to_owned(),
        };
        let mut info = self.lock_info();
        if let Some(old) = info.insert(plugin.to_owned(), labels.clone())
            && old != labels
        {
            self.inner.plugin_info.remove(&old);
        }
        self.inner.plugin_info.get_or_create(&labels).set(1);
    }

    /// Forget an unloaded `plugin`: remove its queue-depth, state and info series. Its counters
    /// and histograms stay, as counters do.
    pub fn remove_plugin(&self, plugin: &str) {
        let mut info = self.lock_info();
        if let Some(old) = info.remove(plugin) {
            self.inner.plugin_info.remove(&old);
        }
        for state in PluginStateLabel::ALL {
            self.inner.plugin_state.remove(&StateLabels {
                plugin: plugin.to_owned(),
                state,
            });
        }
        self.inner.queue_depth.remove(&PluginLabels {
            plugin: plugin.to_owned(),
        });
    }

    /// Count one reload by `result`, and record how long the swap took when it has a duration.
    pub fn reload(&self, result: ReloadResult, elapsed: Option<Duration>) {
        self.inner
            .reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
        if let Some(elapsed) = elapsed {
            self.inner.reload_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Set whether this replica serves (`capstan_leader` 1 or 0).
    pub fn set_leader(&self, serving: bool) {
        self.inner.leader.set(i64::from(serving));
    }

    /// Count one change of this replica's leadership.
    pub fn leader_transition(&self, transition: LeaderTransition) {
        self.inner
            .leader_transitions
            .get_or_create(&TransitionLabels { transition })
            .inc();
    }

    /// Record one attempt of the leader to renew its Lease: whether it renewed, and how long it took.
    pub fn lease_renew(&self, renewed: bool, elapsed: Duration) {
        let outcome = if renewed {
            CallOutcome::Ok
        } else {
            CallOutcome::Error
        };
        self.inner
            .lease_renew_duration
            .get_or_create(&OutcomeLabels { outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// Set how many live members the shard ring has.
    pub fn set_shard_members(&self, members: usize) {
        self.inner
            .shard_members
            .set(i64::try_from(members).unwrap_or(i64::MAX));
    }

    /// Set how many objects of `plugin`'s kind this replica may work on.
    pub fn set_shard_objects_owned(&self, plugin: &str, objects: usize) {
        self.inner
            .shard_objects_owned
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    /// Count one ring change this replica drained to and acknowledged.
    pub fn shard_handover(&self) {
        self.inner.shard_handovers.inc();
    }

    /// Every metric in the OpenMetrics text format, ending with `# EOF`; serve it with
    /// [`Metrics::CONTENT_TYPE`].
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and every label value here encodes infallibly.
        if prometheus_client::encoding::text::encode(&mut out, &self.inner.registry).is_err() {
            out.clear();
        }
        out
    }

    fn lock_info(&self) -> std::sync::MutexGuard<'_, HashMap<String, InfoLabels>> {
        self.inner
            .info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The value of the one sample line that starts with `series ` (name and labels).
    fn sample(text: &str, series: &str) -> Option<f64> {
        let prefix = format!("{series} ");
        let mut hits = text.lines().filter_map(|l| l.strip_prefix(&prefix));
        let value = hits.next()?;
        assert!(hits.next().is_none(), "{series} appears twice:\n{text}");
        Some(value.parse().unwrap())
    }

    #[test]
    fn is_send_sync_and_clones_share_the_registry() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Metrics>();

        let m = Metrics::new();
        let other = m.clone();
        other.bus_dropped("full", 3);
        assert_eq!(
            sample(
                &m.encode(),
                r#"capstan_bus_dropped_events_total{reason="full"}"#
            ),
            Some(3.0)
        );
    }

    #[test]
    fn reconcile_counts_and_times_by_plugin_and_result() {
        let m = Metrics::new();
        m.reconcile("webapp", ReconcileResult::Ok, ms(3));
        let text = m.encode();
        assert!(
            text.contains("capstan_reconciles_total{plugin=\"webapp\",result=\"ok\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_reconcile_duration_seconds_count{plugin="webapp"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_reconcile_duration_seconds_sum{plugin="webapp"}"#
            ),
            Some(0.003)
        );
        // 3 ms falls in the 4 ms bucket, not the 2 ms one.
        assert_eq!(
            sample(
                &text,
                r#"capstan_reconcile_duration_seconds_bucket{le="0.002",plugin="webapp"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_reconcile_duration_seconds_bucket{le="0.004",plugin="webapp"}"#
            ),
            Some(1.0)
        );

        m.reconcile("webapp", ReconcileResult::Requeue, ms(1));
        m.reconcile("webapp", ReconcileResult::Terminal, ms(1));
        m.reconcile("webapp", ReconcileResult::Error, ms(1));
        m.reconcile("webapp", ReconcileResult::Ok, ms(1));
        let text = m.encode();
        for (result, n) in [
            ("ok", 2.0),
            ("requeue", 1.0),
            ("terminal", 1.0),
            ("error", 1.0),
        ] {
            let series =
                format!(r#"capstan_reconciles_total{{plugin="webapp",result="{result}"}}"#);
            assert_eq!(sample(&text, &series), Some(n), "{series}");
        }
        assert_eq!(
            sample(
                &text,
                r#"capstan_reconcile_duration_seconds_count{plugin="webapp"}"#
            ),
            Some(5.0)
        );
    }

    #[test]
    fn encoding_is_openmetrics_with_types_units_and_eof() {
        let m = Metrics::new();
        // A family without series writes nothing, not even its TYPE line.
        let empty = m.encode();
        assert!(!empty.contains("capstan_reconciles"), "{empty}");
        assert!(empty.ends_with("# EOF\n"), "{empty}");

        m.reconcile("webapp", ReconcileResult::Ok, ms(1));
        m.set_queue_depth("webapp", 1);
        m.plugin_calls("webapp").record("fetch", true, ms(1));
        m.bus_dropped("full", 1);
        m.set_plugin_state("webapp", PluginStateLabel::Running);
        m.set_plugin_info("webapp", "0.1.0", "abcd", "optimized");
        m.reload(ReloadResult::Swapped, Some(ms(20)));
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            "# TYPE capstan_reconciles counter",
            "# TYPE capstan_reconcile_duration_seconds histogram",
            "# UNIT capstan_reconcile_duration_seconds seconds",
            "# TYPE capstan_queue_depth gauge",
            "# TYPE capstan_plugin_calls counter",
            "# TYPE capstan_plugin_call_duration_seconds histogram",
            "# TYPE capstan_bus_dropped_events counter",
            "# TYPE capstan_plugin_state gauge",
            "# TYPE capstan_plugin_info gauge",
            "# TYPE capstan_plugin_reloads counter",
            "# TYPE capstan_plugin_reload_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{text}");
        }
        assert!(Metrics::CONTENT_TYPE.starts_with("application/openmetrics-text"));
    }

    #[test]
    fn histogram_buckets_span_the_documented_ranges() {
        let reconcile: Vec<f64> = exponential_buckets(0.0005, 2.0, 15).collect();
        assert_eq!(reconcile.first(), Some(&0.0005));
        assert!((8.0..=10.0).contains(reconcile.last().unwrap()));
        let call: Vec<f64> = exponential_buckets(0.000_005, 4.0, 11).collect();
        assert_eq!(call.first(), Some(&0.000_005));
        assert!((5.0..=6.0).contains(call.last().unwrap()));

        let m = Metrics::new();
        m.plugin_calls("webapp")
            .record("fetch", true, Duration::from_micros(4));
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_call_duration_seconds_bucket{le="0.000005",plugin="webapp",export="fetch"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn queue_depth_is_a_gauge_per_plugin() {
        let m = Metrics::new();
        m.set_queue_depth("webapp", 7);
        m.set_queue_depth("cache", 2);
        m.set_queue_depth("webapp", 4);
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"capstan_queue_depth{plugin="webapp"}"#),
            Some(4.0)
        );
        assert_eq!(
            sample(&text, r#"capstan_queue_depth{plugin="cache"}"#),
            Some(2.0)
        );
    }

    #[test]
    fn plugin_calls_count_by_outcome_and_time_by_export() {
        let m = Metrics::new();
        m.plugin_calls("webapp").record("fetch", true, ms(2));
        m.plugin_calls("webapp").record("fetch", false, ms(4));
        m.plugin_calls("webapp").record("added", true, ms(1));
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_calls_total{plugin="webapp",export="fetch",outcome="ok"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_calls_total{plugin="webapp",export="fetch",outcome="error"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_calls_total{plugin="webapp",export="added",outcome="ok"}"#
            ),
            Some(1.0)
        );
        // An export's error series exists from its first call: a rate over it starts at 0.
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_calls_total{plugin="webapp",export="added",outcome="error"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_call_duration_seconds_count{plugin="webapp",export="fetch"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_call_duration_seconds_sum{plugin="webapp",export="fetch"}"#
            ),
            Some(0.006)
        );
    }

    #[test]
    fn bus_drops_add_up_by_reason() {
        let m = Metrics::new();
        m.bus_dropped("full", 2);
        m.bus_dropped("full", 5);
        m.bus_dropped("closed", 1);
        let text = m.encode();
        assert_eq!(
            sample(&text, r#"capstan_bus_dropped_events_total{reason="full"}"#),
            Some(7.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_bus_dropped_events_total{reason="closed"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn plugin_state_moves_the_one_between_states() {
        let m = Metrics::new();
        let state = |text: &str, s: &str| {
            sample(
                text,
                &format!(r#"capstan_plugin_state{{plugin="webapp",state="{s}"}}"#),
            )
        };
        m.set_plugin_state("webapp", PluginStateLabel::Running);
        let text = m.encode();
        assert_eq!(state(&text, "running"), Some(1.0));
        assert_eq!(state(&text, "degraded"), Some(0.0));
        assert_eq!(state(&text, "rejected"), Some(0.0));

        m.set_plugin_state("webapp", PluginStateLabel::Degraded);
        let text = m.encode();
        assert_eq!(state(&text, "running"), Some(0.0));
        assert_eq!(state(&text, "degraded"), Some(1.0));
        assert_eq!(state(&text, "rejected"), Some(0.0));

        m.set_plugin_state("webapp", PluginStateLabel::Rejected);
        let text = m.encode();
        assert_eq!(state(&text, "running"), Some(0.0));
        assert_eq!(state(&text, "degraded"), Some(0.0));
        assert_eq!(state(&text, "rejected"), Some(1.0));
    }

    #[test]
    fn plugin_info_replaces_the_old_series() {
        let m = Metrics::new();
        m.set_plugin_info("webapp", "0.1.0", "aaaa", "optimized");
        m.set_plugin_info("cache", "1.0.0", "cccc", "optimized");
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_info{plugin="webapp",version="0.1.0",hash="aaaa",tier="optimized"}"#
            ),
            Some(1.0)
        );

        m.set_plugin_info("webapp", "0.1.0", "bbbb", "optimized");
        let text = m.encode();
        assert!(!text.contains(r#"hash="aaaa""#), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_info{plugin="webapp",version="0.1.0",hash="bbbb",tier="optimized"}"#
            ),
            Some(1.0)
        );
        // Another plugin's series is untouched.
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_info{plugin="cache",version="1.0.0",hash="cccc",tier="optimized"}"#
            ),
            Some(1.0)
        );

        // Setting the same info again keeps exactly one series.
        m.set_plugin_info("webapp", "0.1.0", "bbbb", "optimized");
        let text = m.encode();
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(r#"capstan_plugin_info{plugin="webapp""#))
                .count(),
            1
        );
    }

    #[test]
    fn remove_plugin_drops_its_gauge_series_only() {
        let m = Metrics::new();
        for plugin in ["webapp", "cache"] {
            m.set_queue_depth(plugin, 3);
            m.set_plugin_state(plugin, PluginStateLabel::Running);
            m.set_plugin_info(plugin, "0.1.0", "abcd", "optimized");
            m.reconcile(plugin, ReconcileResult::Ok, ms(1));
        }
        m.remove_plugin("webapp");
        let text = m.encode();
        for gauge in [
            "capstan_queue_depth{plugin=\"webapp\"",
            "capstan_plugin_state{plugin=\"webapp\"",
            "capstan_plugin_info{plugin=\"webapp\"",
        ] {
            assert!(!text.contains(gauge), "{gauge} left:\n{text}");
        }
        assert_eq!(
            sample(&text, r#"capstan_queue_depth{plugin="cache"}"#),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_state{plugin="cache",state="running"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_info{plugin="cache",version="0.1.0",hash="abcd",tier="optimized"}"#
            ),
            Some(1.0)
        );
        // Counters outlive the plugin.
        assert_eq!(
            sample(
                &text,
                r#"capstan_reconciles_total{plugin="webapp",result="ok"}"#
            ),
            Some(1.0)
        );

        // Removing an unknown plugin is a no-op, and a reloaded plugin starts afresh.
        m.remove_plugin("never-loaded");
        m.set_plugin_info("webapp", "0.2.0", "ef01", "optimized");
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"capstan_plugin_info{plugin="webapp",version="0.2.0",hash="ef01",tier="optimized"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn reloads_count_by_result_and_time_swaps() {
        let m = Metrics::new();
        m.reload(ReloadResult::Swapped, Some(ms(30)));
        m.reload(ReloadResult::Swapped, Some(ms(10)));
        m.reload(ReloadResult::Rejected, None);
        m.reload(ReloadResult::Unloaded, None);
        let text = m.encode();
        for (result, n) in [("swapped", 2.0), ("rejected", 1.0), ("unloaded", 1.0)] {
            let series = format!(r#"capstan_plugin_reloads_total{{result="{result}"}}"#);
            assert_eq!(sample(&text, &series), Some(n), "{series}");
        }
        assert_eq!(
            sample(&text, "capstan_plugin_reload_duration_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "capstan_plugin_reload_duration_seconds_sum"),
            Some(0.04)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.bus_dropped("a\"b\\c\nd", 1);
        let text = m.encode();
        assert!(
            text.contains(r#"capstan_bus_dropped_events_total{reason="a\"b\\c\nd"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn many_tasks_update_one_registry() {
        let m = Metrics::new();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        m.reconcile("webapp", ReconcileResult::Ok, ms(1));
                        let state = PluginStateLabel::ALL[i % 3];
                        m.set_plugin_state("webapp", state);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"capstan_reconciles_total{plugin="webapp",result="ok"}"#
            ),
            Some(1000.0)
        );
        let ones = PluginStateLabel::ALL
            .iter()
            .filter(|s| {
                sample(
                    &text,
                    &format!(
                        r#"capstan_plugin_state{{plugin="webapp",state="{}"}}"#,
                        s.as_str()
                    ),
                ) == Some(1.0)
            })
            .count();
        assert_eq!(ones, 1, "{text}");
    }

    #[test]
    fn leadership_gauge_transitions_and_renew_latency() {
        let m = Metrics::new();
        assert_eq!(sample(&m.encode(), "capstan_leader"), Some(0.0));
        m.set_leader(true);
        m.leader_transition(LeaderTransition::Acquired);
        m.lease_renew(true, ms(3));
        m.lease_renew(false, ms(1500));
        let text = m.encode();
        assert_eq!(sample(&text, "capstan_leader"), Some(1.0));
        assert_eq!(
            sample(
                &text,
                r#"capstan_leader_transitions_total{transition="acquired"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_lease_renew_duration_seconds_count{outcome="ok"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"capstan_lease_renew_duration_seconds_sum{outcome="error"}"#
            ),
            Some(1.5)
        );
        m.set_leader(false);
        m.leader_transition(LeaderTransition::Lost);
        let text = m.encode();
        assert_eq!(sample(&text, "capstan_leader"), Some(0.0));
        assert_eq!(
            sample(
                &text,
                r#"capstan_leader_transitions_total{transition="lost"}"#
            ),
            Some(1.0)
        );
    }
}
