//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several `capstan run`
//! replicas exactly one serves (reconciles and dispatches) while the others stand by warm.
//!
//! The protocol is client-go's `tools/leaderelection` (the one controller-runtime runs):
//!
//! - The Lease records `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime` and
//!   `leaseTransitions`. Every write is a `create` or an `update` carrying the `resourceVersion`
//!   read, so two candidates never both win a round (the loser gets `409 Conflict`); the verbs are
//!   get, create and update, which is what `capstan rbac` grants the host.
//! - A candidate never compares the Lease's timestamps with its own clock: it notes *when it saw*
//!   the record change (local monotonic clock) and takes the Lease only after seeing it unchanged
//!   for `leaseDurationSeconds`, or at once when `holderIdentity` is empty (released).
//! - The leader renews every retry period; when it has not renewed for the renew deadline (which is
//!   shorter than the lease duration) it stops leading. Its [`Fence`] closes at that moment on its
//!   own clock, counted from the *send* time of the last successful renew, so its writes stop before
//!   any other replica can take the Lease (see [`fence`]).
//! - On shutdown the holder releases the Lease as client-go's `ReleaseOnCancel` does
//!   (`holderIdentity` empty, `leaseDurationSeconds` 1, times now, transitions kept), after the
//!   caller has stopped the work the Lease guards, so a standby takes over at its next try.
//!
//! Two deliberate differences from client-go: a replica that loses leadership goes back to standing
//! by (its caller stops its controllers; the fence has already stopped its writes) instead of
//! exiting, so it stays warm; and a standby tries every retry period *minus* up to 20 % jitter (not
//! plus up to 120 %), and exactly when the lease it watches runs out, so a dead leader's Lease is
//! taken within `lease duration + retry period` of its last renew.
//!
//! Why not a crate: kube-leader-election (kube 4) and kube-coordinate (kube 2) do not build with
//! kube 5, nor kubert's lease (kube 1.1). kube-lease-manager builds with kube 5 but has no renew
//! deadline (a leader whose renewals fail keeps reporting that it leads until the API answers
//! again), judges expiry from the holder's `renewTime` against the local wall clock (so clock skew
//! between nodes shortens or stretches leases), and takes an expired Lease over with patches that
//! carry no `resourceVersion`. None gives a fence a write path can check.

pub mod fence;

pub use fence::{Fence, FenceError};

use crate::metrics::{LeaderTransition, Metrics};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// The Lease's name when none is given.
pub const DEFAULT_LEASE_NAME: &str = "capstan";

/// client-go's bound on the retry period's jitter: the renew deadline must exceed
/// `JITTER_FACTOR × retry period`.
const JITTER_FACTOR: f64 = 1.2;

/// Why leader election cannot start, or why one round of it failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The lease duration is not a whole number of seconds of at least one (the Lease stores
    /// seconds).
    #[error("the lease duration must be a whole number of seconds, at least 1 (got {0:?})")]
    LeaseDuration(Duration),
    /// The renew deadline is not shorter than the lease duration, so a leader could still write
    /// after its Lease was taken.
    #[error("the renew deadline ({renew:?}) must be shorter than the lease duration ({lease:?})")]
    RenewDeadline {
        /// The renew deadline.
        renew: Duration,
        /// The lease duration.
        lease: Duration,
    },
    /// The retry period is zero, or too long for the renew deadline (client-go's rule: the renew
    /// deadline must exceed 1.2 × the retry period).
    #[error(
        "the retry period ({retry:?}) must be positive and at most the renew deadline ({renew:?}) / 1.2"
    )]
    RetryPeriod {
        /// The retry period.
        retry: Duration,
        /// The renew deadline.
        renew: Duration,
    },
    /// The identity is empty.
    #[error("the leader election identity is empty")]
    Identity,
    /// A request about the Lease failed.
    #[error("cannot {verb} Lease {namespace}/{name}")]
    Api {
        /// get, create or update.
        verb: &'static str,
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },
}

/// Which Lease to hold, as whom, and how fast. Defaults are controller-runtime's: lease 15 s, renew
/// deadline 10 s, retry period 2 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name. Default [`DEFAULT_LEASE_NAME`].
    pub name: String,
    /// This replica's identity, written as `holderIdentity`. Default [`default_identity`].
    pub identity: String,
    /// How long the others wait, from the last renew they saw, before they take the Lease.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading; its writes stop then.
    pub renew_deadline: Duration,
    /// How often candidates try to take the Lease and the leader renews it.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// The Lease `capstan` in `namespace`, this process's [`default_identity`], default timings.
    #[must_use]
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: DEFAULT_LEASE_NAME.to_owned(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Hold the Lease `name`.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Hold it as `identity`.
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into();
        self
    }

    /// Set the lease duration, renew deadline and retry period.
    #[must_use]
    pub fn timing(mut self, lease: Duration, renew: Duration, retry: Duration) -> Self {
        self.lease_duration = lease;
        self.renew_deadline = renew;
        self.retry_period = retry;
        self
    }

    /// Check the timings as client-go does, and that the lease duration fits the Lease.
    ///
    /// # Errors
    /// [`LeaderError::LeaseDuration`], [`LeaderError::RenewDeadline`],
    /// [`LeaderError::RetryPeriod`] or [`LeaderError::Identity`].
    pub fn validate(&self) -> Result<(), LeaderError> {
        let lease = self.lease_duration;
        if lease.subsec_nanos() != 0 || lease.is_zero() || self.lease_seconds().is_none() {
            return Err(LeaderError::LeaseDuration(lease));
        }
        let (renew, retry) = (self.renew_deadline, self.retry_period);
        if renew >= lease {
            return Err(LeaderError::RenewDeadline { renew, lease });
        }
        if retry.is_zero() || renew.as_secs_f64() <= JITTER_FACTOR * retry.as_secs_f64() {
            return Err(LeaderError::RetryPeriod { retry, renew });
        }
        if self.identity.is_empty() {
            return Err(LeaderError::Identity);
        }
        Ok(())
    }

    fn lease_seconds(&self) -> Option<i32> {
        i32::try_from(self.lease_duration.as_secs()).ok()
    }
}

/// This process's identity as a candidate: the pod's name (`$HOSTNAME`, `capstan` when unset) and
/// a random suffix, so a restarted container never mistakes its predecessor's Lease for its own.
#[must_use]
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "capstan".to_owned());
    let mut suffix = [0u8; 8];
    if getrandom::fill(&mut suffix).is_err() {
        suffix = fastrand::u64(..).to_le_bytes();
    }
    format!("{host}_{}", hex::encode(suffix))
}

/// A running election: campaigns for the Lease, renews it while it leads, and says so through
/// [`leading`](Self::leading) and its [`Fence`].
///
/// [`release`](Self::release) ends it and gives the Lease up. Dropping it ends it *without*
/// releasing, as a crash would: the others take the Lease when it expires.
pub struct Elector {
    identity: String,
    leading: watch::Receiver<bool>,
    fence: Fence,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("identity", &self.identity)
            .field("leading", &*self.leading.borrow())
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// Start campaigning for the Lease of `config` through `client` (which must not be fenced),
    /// opening `fence` while this replica leads (it should be closed now). Leadership changes are
    /// counted in `metrics`, if given.
    ///
    /// # Errors
    /// What [`ElectionConfig::validate`] refuses.
    pub fn start(
        client: kube::Client,
        config: ElectionConfig,
        fence: Fence,
        metrics: Option<Metrics>,
    ) -> Result<Self, LeaderError> {
        config.validate()?;
        fence.close();
        let (tx, leading) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let identity = config.identity.clone();
        tracing::info!(
            lease = %format!("{}/{}", config.namespace, config.name),
            identity = %identity,
            "leader election: standing by until this replica holds the Lease"
        );
        let campaign = Campaign {
            api: Api::namespaced(client, &config.namespace),
            config,
            fence: fence.clone(),
            leading: tx,
            metrics,
            lease: None,
            observed: None,
            observed_at: Instant::now(),
        };
        let task = tokio::spawn(campaign.run(stopped));
        Ok(Self {
            identity,
            leading,
            fence,
            stop: Some(stop),
            task,
        })
    }

    /// This replica's identity (`holderIdentity` while it leads).
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether this replica leads, as it changes: `true` once it holds the Lease, `false` when it
    /// stops (its fence is closed by then).
    #[must_use]
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// The fence writes on the leader's behalf must pass.
    #[must_use]
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Stop campaigning and, if this replica holds the Lease, release it. Call it after the work
    /// the Lease guards has stopped: writes are fenced from now on.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        if let Err(e) = task.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "leader election task panicked");
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.task.abort();
        self.fence.close();
    }
}

/// Why a leader stopped renewing.
enum Ended {
    /// Asked to stop: release the Lease.
    Stop,
    /// The renew deadline passed, or another replica holds the Lease.
    Lost,
}

/// The election loop's state: the Lease as last read or written, and when its record was last seen
/// to change.
struct Campaign {
    api: Api<Lease>,
    config: ElectionConfig,
    fence: Fence,
    leading: watch::Sender<bool>,
    metrics: Option<Metrics>,
    /// The Lease as last read or written (its `resourceVersion` guards the next update).
    lease: Option<Lease>,
    /// The record as last observed.
    observed: Option<LeaseSpec>,
    /// When the record was last seen to change (local monotonic clock).
    observed_at: Instant,
}

impl Campaign {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        loop {
            // Standing by: try until this replica holds the Lease.
            let held_from = loop {
                match tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew())
                    .await
                {
                    Ok(Ok(Some(sent))) => break sent,
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %crate::error_chain(&e), "leader election: cannot read or take the Lease");
                    }
                    Err(_) => tracing::warn!("leader election: a Lease request timed out"),
                }
                let wait = self.standby_wait();
                tokio::select! {
                    _ = &mut stop => {
                        self.release().await;
                        return;
                    }
                    () = tokio::time::sleep(wait) => {}
                }
            };
            self.fence
                .open_until(held_from + self.config.renew_deadline);
            self.leading.send_replace(true);
            if let Some(m) = &self.metrics {
                m.set_leader(true);
                m.leader_transition(LeaderTransition::Acquired);
            }
            tracing::info!(
                identity = %self.config.identity,
                transitions = self.transitions(),
                "leader election: this replica holds the Lease and serves"
            );
            let ended = self.lead(&mut stop).await;
            // Writes stop before anyone hears of it.
            self.fence.close();
            self.leading.send_replace(false);
            if let Some(m) = &self.metrics {
                m.set_leader(false);
            }
            match ended {
                Ended::Stop => {
                    self.release().await;
                    return;
                }
                Ended::Lost => {
                    if let Some(m) = &self.metrics {
                        m.leader_transition(LeaderTransition::Lost);
                    }
                    tracing::warn!(
                        holder = self.holder().unwrap_or_default(),
                        "leader election: leadership lost; standing by"
                    );
                }
            }
        }
    }

    /// Renew every retry period until told to stop or unable to renew before the fence lapses.
    async fn lead(&mut self, stop: &mut oneshot::Receiver<()>) -> Ended {
        loop {
            tokio::select! {
                _ = &mut *stop => return Ended::Stop,
                () = tokio::time::sleep(self.config.retry_period) => {}
            }
            loop {
                let Some(left) = self.fence.remaining() else {
                    tracing::warn!(
                        deadline = ?self.config.renew_deadline,
                        "leader election: no renew within the renew deadline; writes stopped"
                    );
                    return Ended::Lost;
                };
                let started = Instant::now();
                let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
                let renewed = matches!(attempt, Ok(Ok(Some(_))));
                if let Some(m) = &self.metrics {
                    m.lease_renew(renewed, started.elapsed());
                }
                match attempt {
                    Ok(Ok(Some(sent))) => {
                        self.fence.open_until(sent + self.config.renew_deadline);
                        break;
                    }
                    Ok(Ok(None)) => return Ended::Lost,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %crate::error_chain(&e), "leader election: renew failed; retrying");
                    }
                    Err(_) => {}
                }
                let wait = self
                    .fence
                    .remaining()
                    .map_or(Duration::ZERO, |left| left.min(self.config.retry_period));
                tokio::select! {
                    _ = &mut *stop => return Ended::Stop,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// One round, as client-go's `tryAcquireOrRenew`: `Some(when the winning request was sent)`
    /// if this replica holds the Lease now, `None` if another holds a lease that has not expired.
    async fn try_acquire_or_renew(&mut self) -> Result<Option<Instant>, LeaderError> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        // The fast path: the leader updates the Lease it wrote last, assuming nobody else did.
        if self.is_holder()
            && self.unexpired()
            && let Some(mut lease) = self.lease.clone()
        {
            lease.spec = Some(self.renewal(now.clone()));
            let sent = Instant::now();
            match self
                .api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
            {
                Ok(written) => {
                    self.observe(written, true);
                    return Ok(Some(sent));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "leader election: fast renew failed; reading the Lease")
                }
            }
        }
        let Some(lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error("get", e))?
        else {
            // Deleted under a holder seen alive: that holder's fence may still be open, so wait
            // out its lease as if the Lease were still there (client-go creates at once).
            let holder = self.holder().unwrap_or_default();
            if !holder.is_empty() && !self.is_holder() && self.unexpired() {
                return Ok(None);
            }
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.record(now.clone(), now, 0)),
            };
            let sent = Instant::now();
            let written = self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(|e| self.error("create", e))?;
            self.observe(written, true);
            return Ok(Some(sent));
        };
        self.observe(lease, false);
        let holder = self.holder().unwrap_or_default();
        if !holder.is_empty() && self.unexpired() && !self.is_holder() {
            return Ok(None);
        }
        let spec = if self.is_holder() {
            self.renewal(now)
        } else {
            self.record(now.clone(), now, self.transitions().saturating_add(1))
        };
        let Some(mut lease) = self.lease.clone() else {
            return Ok(None);
        };
        lease.spec = Some(spec);
        let sent = Instant::now();
        let written = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.error("update", e))?;
        self.observe(written, true);
        Ok(Some(sent))
    }

    /// Give the Lease up if the record names this replica (client-go's `release`).
    async fn release(&mut self) {
        if !self.is_holder() {
            return;
        }
        let Some(mut lease) = self.lease.clone() else {
            return;
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(self.transitions()),
            ..LeaseSpec::default()
        });
        let params = PostParams::default();
        let request = self.api.replace(&self.config.name, &params, &lease);
        match tokio::time::timeout(self.config.renew_deadline, request).await {
            Ok(Ok(written)) => {
                self.observe(written, true);
                if let Some(m) = &self.metrics {
                    m.leader_transition(LeaderTransition::Released);
                }
                tracing::info!("leader election: Lease released");
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %self.error("update", e), "leader election: cannot release the Lease; it expires instead");
            }
            Err(_) => {
                tracing::warn!("leader election: releasing the Lease timed out; it expires instead")
            }
        }
    }

    /// Note a Lease read or written: its record counts as seen now if it changed (or if this
    /// replica just wrote it).
    fn observe(&mut self, lease: Lease, written: bool) {
        let spec = lease.spec.clone().unwrap_or_default();
        if written || self.observed.as_ref() != Some(&spec) {
            self.observed = Some(spec);
            self.observed_at = Instant::now();
        }
        self.lease = Some(lease);
    }

    /// A record naming this replica, acquired at `acquired`.
    fn record(&self, acquired: MicroTime, now: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: self.config.lease_seconds(),
            acquire_time: Some(acquired),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// The record of a renew: acquire time and transitions kept.
    fn renewal(&self, now: MicroTime) -> LeaseSpec {
        let acquired = self
            .observed
            .as_ref()
            .and_then(|s| s.acquire_time.clone())
            .unwrap_or_else(|| now.clone());
        self.record(acquired, now, self.transitions())
    }

    fn holder(&self) -> Option<&str> {
        self.observed.as_ref()?.holder_identity.as_deref()
    }

    fn is_holder(&self) -> bool {
        self.holder() == Some(self.config.identity.as_str())
    }

    fn transitions(&self) -> i32 {
        self.observed
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0)
    }

    /// When the observed record expires: `leaseDurationSeconds` after it was seen to change.
    fn expiry(&self) -> Instant {
        let seconds = self
            .observed
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0);
        self.observed_at + Duration::from_secs(seconds)
    }

    fn unexpired(&self) -> bool {
        self.expiry() > Instant::now()
    }

    /// How long a standby waits before its next try: the retry period less up to 20 % jitter, and
    /// no later than the moment the observed lease expires.
    fn standby_wait(&self) -> Duration {
        let retry = self.config.retry_period;
        let poll = retry.mul_f64(1.0 - 0.2 * fastrand::f64());
        let held_by_other = !self.holder().unwrap_or_default().is_empty() && !self.is_holder();
        if held_by_other {
            let until_expiry = self.expiry().saturating_duration_since(Instant::now());
            poll.min(until_expiry + Duration::from_millis(5))
        } else {
            poll
        }
    }

    fn error(&self, verb: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            verb,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests;
