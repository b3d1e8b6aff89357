//! Active-active sharding (`capstan run --sharding`): every replica holds a shard Lease, the live
//! ones form a consistent-hash [`ring`] over object uids, and each object is worked on by exactly
//! one replica at a time, also while replicas come and go.
//!
//! # The protocol
//!
//! Each replica holds a `coordination.k8s.io/v1` Lease named `<ring>-<hash of its identity>`,
//! labelled `capstan.dev/shard-ring: <ring>`, renewed every retry period as the leader's is
//! (get, create, update with `resourceVersion`), and published with an annotation
//! `capstan.dev/shard-view`: the member set it has *drained to* (its acknowledgement). A replica
//! works on an object only while the object is in its *grant* ([`Gate`]):
//!
//! 1. Every round it lists the ring's Leases (one consistent read). A Lease is live while its
//!    record keeps changing: one seen unchanged for its `leaseDurationSeconds` (on this replica's
//!    monotonic clock, as the elector judges expiry) or released (empty holder) is not. The live
//!    members, itself included, are the *target view*.
//! 2. When the target differs from what it published, it first narrows its grant to what it owns
//!    in the target ([`Gate::narrow`]), waits until no work is in flight outside that (drained),
//!    and only then publishes the target as its acknowledgement.
//! 3. From a list read *after* its latest publish, and only when the target equals what it
//!    published, it sets its grant to: what it owns in its published view, minus, for every other
//!    live member, what that member owns in *that member's* published view.
//!
//! Why two replicas never work on one object at once: say R starts work on o from a list L_R and
//! S from a list L_S. R published a view giving o to R before L_R and, by (2), keeps publishing
//! views giving o to R until that work ends; the same holds for S. At L_S, S saw R's published
//! view *not* giving o to R (else (3) would have taken o from S's grant), so L_S is outside R's
//! interval, i.e. before L_R; symmetrically L_R is before L_S: a contradiction. A member
//! counted dead is excluded from (3): it is one whose renewals stopped a lease duration ago, and
//! its writes stopped at its last renew + renew deadline ([`crate::leader::Fence`]), and its
//! grant with them.
//!
//! A replica whose renewals fail until its renew deadline revokes its whole grant and fences its
//! writes, as a leader does; at SIGTERM it finishes its work, then releases its Lease (empty
//! holder), so the others take its objects at their next round.
//!
//! Handler events follow the same grant, and a hand-over loses none: see [`handoff`].

pub mod audit;
pub mod gate;
pub mod handoff;
pub mod ring;

pub use audit::{Audit, AuditError};
pub use gate::{Gate, Work};
pub use handoff::{EventRouter, HandoverNote};
pub use ring::{Ranges, Ring, key_hash};

use crate::leader::{ElectionConfig, Fence, LeaderError};
use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// The label naming a shard Lease's ring.
pub const RING_LABEL: &str = "capstan.dev/shard-ring";
/// The annotation holding the member set a replica has drained to, comma-separated.
pub const VIEW_ANNOTATION: &str = "capstan.dev/shard-view";
/// The annotation holding a replica's [`HandoverNote`] (JSON): the view it drained from and its
/// handler events' marks, for the replicas that take what it released.
pub const HANDOVER_ANNOTATION: &str = "capstan.dev/shard-handover";
/// The ring's name when none is given.
pub const DEFAULT_RING: &str = "capstan";

/// Why sharding cannot start, or why one round of it failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The timings or identity are invalid (the rules are leader election's).
    #[error("invalid shard Lease settings")]
    Settings(#[source] LeaderError),
    /// The ring's name is not a DNS label.
    #[error(
        "the ring name {0:?} must be a DNS label (lowercase letters, digits, '-'), at most 40 characters"
    )]
    RingName(String),
    /// A request about the shard Leases failed.
    #[error("cannot {verb} shard Lease(s) in {namespace}")]
    Api {
        /// get, list, create or update.
        verb: &'static str,
        /// The namespace.
        namespace: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
}

/// Which ring to join, as whom, and how fast: the Lease namespace, identity and timings are leader
/// election's ([`ElectionConfig`], whose `name` is the ring's name here).
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Namespace, identity, timings; `name` is the ring.
    pub lease: ElectionConfig,
}

impl ShardConfig {
    /// The ring [`DEFAULT_RING`] in `namespace`, default identity and timings.
    #[must_use]
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            lease: ElectionConfig::new(namespace).name(DEFAULT_RING),
        }
    }

    /// Check the ring name and the timings.
    ///
    /// # Errors
    /// [`ShardError::RingName`], [`ShardError::Settings`].
    pub fn validate(&self) -> Result<(), ShardError> {
        let ring = &self.lease.name;
        let label = ring.len() <= 40
            && !ring.is_empty()
            && ring
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !ring.starts_with('-')
            && !ring.ends_with('-');
        if !label {
            return Err(ShardError::RingName(ring.clone()));
        }
        self.lease.validate().map_err(ShardError::Settings)
    }

    /// This replica's Lease name.
    #[must_use]
    pub fn lease_name(&self) -> String {
        format!(
            "{}-{:016x}",
            self.lease.name,
            key_hash(&self.lease.identity)
        )
    }
}

/// What a replica says about its membership, as it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Whether this replica is a ring member that works (its Lease is renewed, its view
    /// published).
    pub serving: bool,
    /// The live members it sees, itself included.
    pub members: BTreeSet<String>,
}

/// A running ring membership: renews this replica's shard Lease, reads the ring and moves the
/// [`Gate`]'s grant as the protocol says (module documentation).
///
/// [`release`](Self::release) ends it and gives the Lease up; dropping it ends it without
/// releasing (the others take its objects when the Lease expires).
pub struct Sharder {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    membership: watch::Receiver<Membership>,
    gate: Gate,
    fence: Fence,
}

impl std::fmt::Debug for Sharder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharder")
            .field("membership", &*self.membership.borrow())
            .finish_non_exhaustive()
    }
}

impl Sharder {
    /// Join the ring of `config` through `client` (not fenced), moving `gate` and opening `fence`
    /// while this replica's Lease is renewed.
    ///
    /// # Errors
    /// What [`ShardConfig::validate`] refuses.
    pub fn start(
        client: kube::Client,
        config: ShardConfig,
        gate: Gate,
        fence: Fence,
        metrics: Option<Metrics>,
    ) -> Result<Self, ShardError> {
        config.validate()?;
        fence.close();
        gate.revoke();
        gate.bind(fence.clone());
        let (tx, membership) = watch::channel(Membership::default());
        let (stop, stopped) = oneshot::channel();
        tracing::info!(
            ring = %config.lease.name,
            lease = %format!("{}/{}", config.lease.namespace, config.lease_name()),
            identity = %config.lease.identity,
            "sharding: joining the ring"
        );
        let member = Member {
            api: Api::namespaced(client, &config.lease.namespace),
            name: config.lease_name(),
            config,
            gate: gate.clone(),
            fence: fence.clone(),
            metrics,
            membership: tx,
            lease: None,
            published: None,
            note: HandoverNote::default(),
            staged: None,
            published_at: None,
            observed: HashMap::new(),
        };
        let task = tokio::spawn(member.run(stopped));
        Ok(Self {
            stop: Some(stop),
            task,
            membership,
            gate,
            fence,
        })
    }

    /// This replica's membership as it changes.
    #[must_use]
    pub fn membership(&self) -> watch::Receiver<Membership> {
        self.membership.clone()
    }

    /// The gate of this replica's work.
    #[must_use]
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Stop, and release the Lease: call it once the work it guards has stopped.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await
            && e.is_panic()
        {
            tracing::error!(error = %e, "sharding task panicked");
        }
    }
}

impl Drop for Sharder {
    fn drop(&mut self) {
        self.task.abort();
        self.gate.revoke();
        self.fence.close();
    }
}

/// A Lease of the ring as last seen, and when its record last changed (local clock).
struct Seen {
    holder: String,
    view: Option<BTreeSet<String>>,
    note: Option<HandoverNote>,
    duration: Duration,
    record: (Option<LeaseSpec>, Option<String>),
    changed_at: Instant,
}

impl Seen {
    fn live(&self, now: Instant) -> bool {
        !self.holder.is_empty() && self.changed_at + self.duration > now
    }

    /// What its holder says it released at its latest acknowledgement, with its marks.
    fn released(&self) -> Option<(Ranges, handoff::Marks)> {
        let (note, view) = (self.note.as_ref()?, self.view.as_ref()?);
        let marks = note.marks.clone()?;
        if note.from.is_empty() {
            return None;
        }
        let before = Ring::new(&note.from).ranges_of(&self.holder);
        let after = Ring::new(view).ranges_of(&self.holder);
        Some((before.subtract(&after), marks))
    }
}

/// The membership loop's state.
struct Member {
    api: Api<Lease>,
    config: ShardConfig,
    name: String,
    gate: Gate,
    fence: Fence,
    metrics: Option<Metrics>,
    membership: watch::Sender<Membership>,
    /// This replica's Lease as last written.
    lease: Option<Lease>,
    /// The view this replica has published (drained to).
    published: Option<BTreeSet<String>>,
    /// The note published with it.
    note: HandoverNote,
    /// The note of the view it is about to publish.
    staged: Option<HandoverNote>,
    /// When the latest publish was answered.
    published_at: Option<Instant>,
    /// The ring's Leases by name.
    observed: HashMap<String, Seen>,
}

fn encode_view(view: &BTreeSet<String>) -> String {
    view.iter().cloned().collect::<Vec<_>>().join(",")
}

fn decode_view(text: &str) -> BTreeSet<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Member {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let retry = self.config.lease.retry_period;
        let mut pending: Option<BTreeSet<String>> = None;
        let mut rushed = false;
        loop {
            // Publish the target once drained to it; renew in any case.
            let view = match &pending {
                Some(target) if self.gate.drained() => target.clone(),
                _ => self.published.clone().unwrap_or_default(),
            };
            self.renew(view).await;
            if self.fence.is_open() {
                pending = self.read_ring().await;
            } else {
                self.leave();
            }
            // The next round: after the retry period less up to 20 % jitter, when the first
            // other Lease would expire, at once when a change is drained already (once: a
            // failing publish does not spin), or as soon as its drain ends.
            let mut wait = retry.mul_f64(1.0 - 0.2 * fastrand::f64());
            if let Some(expiry) = self.next_expiry() {
                wait = wait.min(
                    expiry.saturating_duration_since(Instant::now()) + Duration::from_millis(5),
                );
            }
            let drained = self.gate.drained();
            rushed = pending.is_some() && drained && !rushed;
            if rushed {
                wait = Duration::ZERO;
            }
            let draining = pending.is_some() && !drained;
            let lapse = self.fence.deadline().unwrap_or_else(Instant::now);
            let wake = tokio::time::sleep(wait);
            tokio::pin!(wake);
            let mut poll = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = poll.tick(), if draining => {
                        if self.gate.drained() {
                            break;
                        }
                    }
                    _ = &mut stop => {
                        self.release().await;
                        return;
                    }
                    () = &mut wake => break,
                    () = tokio::time::sleep_until(lapse), if self.fence.deadline().is_some() => {
                        if !self.fence.is_open() {
                            self.leave();
                        }
                    }
                }
            }
        }
    }

    /// When the first live Lease of another replica would expire, as observed.
    fn next_expiry(&self) -> Option<Instant> {
        let now = Instant::now();
        self.observed
            .values()
            .filter(|s| s.holder != self.config.lease.identity && s.live(now))
            .map(|s| s.changed_at + s.duration)
            .min()
    }

    /// Not a member (renewals failed past the renew deadline): grant nothing.
    fn leave(&mut self) {
        if self.membership.borrow().serving {
            tracing::warn!("sharding: shard Lease not renewed in time; working on nothing");
        }
        self.gate.revoke();
        self.published_at = None;
        self.membership.send_modify(|m| m.serving = false);
    }

    fn record(
        &self,
        view: &BTreeSet<String>,
        note: &HandoverNote,
        acquired: Option<MicroTime>,
    ) -> (ObjectMeta, LeaseSpec) {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let meta = ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.config.lease.namespace.clone()),
            labels: Some(BTreeMap::from([(
                RING_LABEL.to_owned(),
                self.config.lease.name.clone(),
            )])),
            annotations: Some(BTreeMap::from([
                (VIEW_ANNOTATION.to_owned(), encode_view(view)),
                (
                    HANDOVER_ANNOTATION.to_owned(),
                    serde_json::to_string(note).unwrap_or_default(),
                ),
            ])),
            ..ObjectMeta::default()
        };
        let spec = LeaseSpec {
            holder_identity: Some(self.config.lease.identity.clone()),
            lease_duration_seconds: i32::try_from(self.config.lease.lease_duration.as_secs()).ok(),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            ..LeaseSpec::default()
        };
        (meta, spec)
    }

    /// Renew this replica's Lease, carrying `view` as its acknowledgement.
    async fn renew(&mut self, view: BTreeSet<String>) {
        let note = if self.published.as_ref() == Some(&view) {
            self.note.clone()
        } else {
            // A new acknowledgement: what it drained from, and the marks of its narrowing.
            let (from, gate) = (self.published.clone().unwrap_or_default(), &self.gate);
            self.staged
                .get_or_insert_with(|| HandoverNote {
                    from,
                    marks: gate.take_marks(),
                })
                .clone()
        };
        let sent = Instant::now();
        let deadline = self.config.lease.renew_deadline;
        let result = tokio::time::timeout(deadline, self.write(&view, &note)).await;
        let ok = matches!(result, Ok(Ok(())));
        if let Some(m) = &self.metrics {
            m.lease_renew(ok, sent.elapsed());
        }
        match result {
            Ok(Ok(())) => {
                self.fence.open_until(sent + deadline);
                if self.published.as_ref() != Some(&view) {
                    if let Some(m) = &self.metrics {
                        m.shard_handover();
                    }
                    tracing::info!(
                        members = view.len(),
                        "sharding: drained to the new ring; published"
                    );
                    self.published = Some(view);
                    self.note = note;
                    self.staged = None;
                }
                // A grant widens only from lists read after this answer.
                self.published_at.get_or_insert_with(Instant::now);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::error_chain(&e), "sharding: cannot renew the shard Lease");
            }
            Err(_) => tracing::warn!("sharding: renewing the shard Lease timed out"),
        }
    }

    async fn write(
        &mut self,
        view: &BTreeSet<String>,
        note: &HandoverNote,
    ) -> Result<(), ShardError> {
        let error = |verb, source| ShardError::Api {
            verb,
            namespace: self.config.lease.namespace.clone(),
            source: Box::new(source),
        };
        let previous_view = self.published.clone();
        let current = match self.lease.take() {
            Some(lease) => Some(lease),
            None => self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| error("get", e))?,
        };
        let written = match current {
            None => {
                let (metadata, spec) = self.record(view, note, None);
                let lease = Lease {
                    metadata,
                    spec: Some(spec),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map_err(|e| error("create", e))?
            }
            Some(mut lease) => {
                let acquired = lease
                    .spec
                    .as_ref()
                    .filter(|s| s.holder_identity.as_deref() == Some(&self.config.lease.identity))
                    .and_then(|s| s.acquire_time.clone());
                let (metadata, spec) = self.record(view, note, acquired);
                lease.metadata.labels = metadata.labels;
                lease.metadata.annotations = metadata.annotations;
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| error("update", e))?
            }
        };
        self.lease = Some(written);
        if previous_view.as_ref() != Some(view) {
            // A new acknowledgement: the grant may widen only from lists read after it.
            self.published_at = None;
        }
        Ok(())
    }

    /// List the ring, update what is live; narrow the grant toward a changed target, or set it
    /// from this list. Returns the target still to publish, if any.
    async fn read_ring(&mut self) -> Option<BTreeSet<String>> {
        let started = Instant::now();
        let params =
            ListParams::default().labels(&format!("{RING_LABEL}={}", self.config.lease.name));
        let list = tokio::time::timeout(self.config.lease.renew_deadline, self.api.list(&params));
        let leases = match list.await {
            Ok(Ok(list)) => list.items,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sharding: cannot list the ring's Leases");
                return None;
            }
            Err(_) => {
                tracing::warn!("sharding: listing the ring's Leases timed out");
                return None;
            }
        };
        let now = Instant::now();
        let mut present = BTreeSet::new();
        for lease in leases {
            let Some(name) = lease.metadata.name.clone() else {
                continue;
            };
            present.insert(name.clone());
            let spec = lease.spec.clone().unwrap_or_default();
            let view_text = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(VIEW_ANNOTATION))
                .cloned();
            let note = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HANDOVER_ANNOTATION))
                .and_then(|text| serde_json::from_str(text).ok());
            let record = (Some(spec.clone()), view_text.clone());
            let changed = self.observed.get(&name).is_none_or(|s| s.record != record);
            let changed_at = if changed {
                now
            } else {
                self.observed.get(&name).map_or(now, |s| s.changed_at)
            };
            self.observed.insert(
                name,
                Seen {
                    holder: spec.holder_identity.clone().unwrap_or_default(),
                    view: view_text.as_deref().map(decode_view),
                    note,
                    duration: Duration::from_secs(
                        spec.lease_duration_seconds
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(0),
                    ),
                    record,
                    changed_at,
                },
            );
        }
        // A Lease that vanished counts until it would have expired (someone deleted it; its
        // holder may still work).
        self.observed
            .retain(|name, seen| present.contains(name) || seen.live(now));
        let me = self.config.lease.identity.clone();
        let others: Vec<&Seen> = self
            .observed
            .iter()
            .filter(|(name, seen)| **name != self.name && seen.live(now) && seen.holder != me)
            .map(|(_, seen)| seen)
            .collect();
        let mut target: BTreeSet<String> = others.iter().map(|s| s.holder.clone()).collect();
        target.insert(me.clone());
        let published = self.published.clone().unwrap_or_default();
        let mut pending = None;
        if target != published {
            self.gate.narrow(&Ring::new(&target).ranges_of(&me));
            pending = Some(target.clone());
        } else if self.published_at.is_some_and(|at| at <= started) {
            let mut grant = Ring::new(&published).ranges_of(&me);
            for other in &others {
                let claimed = match &other.view {
                    Some(view) => Ring::new(view).ranges_of(&other.holder),
                    None => Ranges::all(),
                };
                grant = grant.subtract(&claimed);
            }
            let released = if grant == self.gate.grant() {
                Vec::new()
            } else {
                others.iter().filter_map(|o| o.released()).collect()
            };
            if self.gate.set(grant, released) {
                tracing::info!(share = self.gate.grant().share(), "sharding: grant widened");
            }
        }
        let serving = pending.is_none() && self.published_at.is_some();
        if let Some(m) = &self.metrics {
            m.set_shard_members(target.len());
        }
        self.membership.send_if_modified(|m| {
            let new = Membership {
                serving,
                members: target,
            };
            let changed = *m != new;
            *m = new;
            changed
        });
        pending
    }

    /// Give the Lease up (empty holder), as the elector does at shutdown.
    async fn release(&mut self) {
        self.gate.revoke();
        self.fence.close();
        let Some(mut lease) = self.lease.take() else {
            return;
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..LeaseSpec::default()
        });
        let params = PostParams::default();
        let request = self.api.replace(&self.name, &params, &lease);
        match tokio::time::timeout(self.config.lease.renew_deadline, request).await {
            Ok(Ok(_)) => tracing::info!("sharding: shard Lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sharding: cannot release the shard Lease; it expires instead")
            }
            Err(_) => {
                tracing::warn!("sharding: releasing the shard Lease timed out; it expires instead")
            }
        }
    }
}

#[cfg(test)]
mod tests;
