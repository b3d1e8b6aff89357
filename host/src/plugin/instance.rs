//! A loaded plugin: its pre-instantiated component and the calls into it, each unit of work (one
//! reconcile, one event) on an instance of its own that is discarded afterwards.

use super::Origin;
use super::bounds;
use super::capability::Grants;
use super::grant::GrantStatus;
use super::host::HostState;
use super::limits::Limits;
use super::output::LogBudget;
use super::quarantine::{PluginState, Quarantine, Transition};
use super::runtime::{EpochTicker, RejectReason};
use super::settings::PluginSettings;
use super::wasi::WasiGrants;
use crate::bindings::exports::capstan::controller::{handler, plugin, reconciler};
use crate::contract::{
    CategorizedError, CleanupOutcome, ComponentHealth, Condition, ContractVersion,
    EventProcessStatus, EventStatus, Manifest, ObjectRef, PlanEntry, World,
};
use crate::informer::Selection;
use crate::status::{self, Delivery, StatusMessage, StatusReceiver};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{InstancePre, ResourceAny, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};

/// The export that opens a reconciliation, as calls and errors name it.
const OPEN: &str = "reconciliation.open";

/// What a loaded plugin is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    /// Name from the manifest.
    pub name: String,
    /// Version from the manifest.
    pub version: String,
    /// World implemented.
    pub world: World,
    /// Contract version built against.
    pub contract: ContractVersion,
    /// SHA-256 of the file.
    pub hash: String,
    /// File loaded from.
    pub path: PathBuf,
    /// Compiled now or loaded from the precompiled cache.
    pub origin: Origin,
    /// Which compiler's code runs: baseline until the optimized version is swapped in.
    pub tier: super::Tier,
    /// Why the baseline compiler could not run this plugin, when it was tried and failed.
    pub baseline_error: Option<String>,
}

/// A failed call into a plugin. Every message names the plugin, the export and the object.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin}: {export} on {object} ran past its {timeout_ms} ms deadline")]
    Timeout {
        /// Plugin name.
        plugin: String,
        /// Export called.
        export: &'static str,
        /// Object the call was about.
        object: String,
        /// The deadline.
        timeout_ms: u128,
    },
    /// The guest trapped (panic, unreachable, memory limit, ...).
    #[error("plugin {plugin}: {export} on {object} trapped: {reason}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Export called.
        export: &'static str,
        /// Object.
        object: String,
        /// Trap description.
        reason: String,
    },
    /// A new instance could not be created.
    #[error("plugin {plugin}: cannot instantiate: {reason}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// Cause.
        reason: String,
    },
    /// The plugin's world does not have this export.
    #[error("plugin {plugin} does not export {export}")]
    NotExported {
        /// Plugin name.
        plugin: String,
        /// Export.
        export: &'static str,
    },
    /// The plugin is quarantined after repeated failures; the call was not made.
    #[error(
        "plugin {plugin}: {export} on {object} refused: quarantined after failed calls on {failures} objects, retry in {retry_in_ms} ms"
    )]
    Quarantined {
        /// Plugin name.
        plugin: String,
        /// Export.
        export: &'static str,
        /// Object.
        object: String,
        /// Consecutive failed calls, on distinct objects.
        failures: u32,
        /// Milliseconds until calls are taken again.
        retry_in_ms: u64,
    },
    /// A phase of a reconciliation whose instance was discarded after an earlier failure.
    #[error(
        "plugin {plugin}: {export} on {object} not called: the reconcile ended at an earlier failure"
    )]
    Ended {
        /// Plugin name.
        plugin: String,
        /// Export.
        export: &'static str,
        /// Object.
        object: String,
    },
    /// The call returned something the host refuses (malformed JSON, over the size limit).
    #[error("plugin {plugin}: {export} on {object} returned an invalid value: {reason}")]
    InvalidOutput {
        /// Plugin name.
        plugin: String,
        /// Export.
        export: &'static str,
        /// Object.
        object: String,
        /// What is wrong.
        reason: String,
    },
}

/// An event delivered to a handler.
#[derive(Debug, Clone)]
pub enum HandlerEvent {
    /// Added, with the object as JSON.
    Added(String),
    /// Updated, with the new and old objects.
    Updated {
        /// New object JSON.
        new: String,
        /// Old object JSON.
        old: String,
    },
    /// Deleted, with the last known object.
    Deleted(String),
}

impl HandlerEvent {
    fn export(&self) -> &'static str {
        match self {
            Self::Added(_) => "added",
            Self::Updated { .. } => "updated",
            Self::Deleted(_) => "deleted",
        }
    }
}

/// What handling one event gave.
#[derive(Debug, Clone)]
pub struct HandlerOutcome {
    /// What the handler returned.
    pub status: EventStatus,
    /// Every status sent on the event's channel, in order, with how it was delivered.
    pub statuses: Vec<(EventProcessStatus, Delivery)>,
    /// Whether the handler left its channel open (the host closed it, with a warning).
    pub left_open: bool,
    /// Successful `on-status` calls.
    pub on_status_calls: usize,
    /// Failed `on-status` calls.
    pub on_status_errors: Vec<CallError>,
}

/// What consuming one event's status channel gave, as [`HandlerOutcome`] reports it.
#[derive(Default)]
struct Consumed {
    statuses: Vec<(EventProcessStatus, Delivery)>,
    calls: usize,
    errors: Vec<CallError>,
}

struct Warm {
    store: Store<HostState>,
    handler: Option<handler::Guest>,
    reconciler: Option<reconciler::Guest>,
    plugin: plugin::Guest,
}

struct Indices {
    plugin: plugin::GuestIndices,
    handler: Option<handler::GuestIndices>,
    reconciler: Option<reconciler::GuestIndices>,
}

struct Inner {
    ticker: Arc<EpochTicker>,
    info: PluginInfo,
    /// The manifest as the plugin declared it.
    declared: Arc<Manifest>,
    /// The manifest narrowed by configuration: what the host enforces.
    manifest: Arc<Manifest>,
    /// The manifest's event filter, compiled.
    selection: Arc<Selection>,
    pre: InstancePre<HostState>,
    indices: Indices,
    limits: Limits,
    wasi: WasiGrants,
    /// Whether a configuration entry applies to this plugin, and why not.
    grant: GrantStatus,
    fuel: bool,
    metrics: Option<crate::metrics::Metrics>,
    /// The plugin's call series, when metrics are kept.
    calls: Option<crate::metrics::PluginCalls>,
    quarantine: Mutex<Quarantine>,
    /// The log budget of every instance's output.
    output: Arc<LogBudget>,
}

/// A loaded, validated plugin. Cheap to clone; calls may run concurrently, each unit of work on an
/// instance of its own.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

impl Plugin {
    pub(crate) async fn new(
        pre: InstancePre<HostState>,
        mut info: PluginInfo,
        limits: Limits,
        ticker: Arc<EpochTicker>,
        fuel: bool,
    ) -> Result<Self, RejectReason> {
        let link = |e: wasmtime::Error| RejectReason::Link(format!("{e:#}"));
        let indices = Indices {
            plugin: plugin::GuestIndices::new(&pre).map_err(link)?,
            handler: if info.world.handles() {
                Some(handler::GuestIndices::new(&pre).map_err(link)?)
            } else {
                None
            },
            reconciler: if info.world.reconciles() {
                Some(reconciler::GuestIndices::new(&pre).map_err(link)?)
            } else {
                None
            },
        };
        // `describe` runs in an instance of its own with no manifest and nothing granted.
        let placeholder = Arc::new(Manifest::new("", ""));
        let name_hint = info
            .path
            .file_stem()
            .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
        info.name = name_hint;
        let probe = Self {
            inner: Arc::new(Inner {
                ticker: ticker.clone(),
                info: info.clone(),
                declared: placeholder.clone(),
                manifest: placeholder,
                selection: Arc::default(),
                pre: pre.clone(),
                indices,
                quarantine: Mutex::new(Quarantine::new(limits.quarantine.clone())),
                output: Arc::new(LogBudget::new(
                    Arc::from(info.name.as_str()),
                    limits.log,
                    None,
                )),
                limits: limits.clone(),
                wasi: WasiGrants::default(),
                grant: GrantStatus::default(),
                fuel,
                metrics: None,
                calls: None,
            }),
        };
        let manifest = probe
            .call(&mut None, "describe", None, Grants::default(), |w| {
                Box::pin(async move { w.plugin.call_describe(&mut w.store).await })
            })
            .await
            .map_err(RejectReason::Describe)?;
        manifest.validate().map_err(RejectReason::InvalidManifest)?;
        let selection =
            Selection::new(&manifest.events).map_err(|source| RejectReason::EventFilter {
                plugin: manifest.name.clone(),
                source,
            })?;
        info.name = manifest.name.clone();
        info.version = manifest.version.clone();
        let Inner { indices, .. } = Arc::into_inner(probe.inner).ok_or_else(|| {
            RejectReason::InvalidManifest("describe left a reference behind".into())
        })?;
        let manifest = Arc::new(manifest);
        let output = Arc::new(LogBudget::new(
            Arc::from(info.name.as_str()),
            limits.log,
            None,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                ticker,
                info,
                declared: manifest.clone(),
                manifest,
                selection: Arc::new(selection),
                pre,
                indices,
                quarantine: Mutex::new(Quarantine::new(limits.quarantine.clone())),
                output,
                limits,
                wasi: WasiGrants::default(),
                grant: GrantStatus::default(),
                fuel,
                metrics: None,
                calls: None,
            }),
        })
    }

    /// This plugin with configuration applied: its limits, WASI grants and Kubernetes access
    /// narrowed as `settings` say. Warm instances are not carried over.
    #[must_use]
    pub fn configure(
        &self,
        settings: &PluginSettings,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Self {
        self.configure_with(settings, self.inner.grant.clone(), metrics)
    }

    /// [`Plugin::configure`], recording whether the settings come from a configuration entry
    /// bound to this plugin's file (see [`super::GrantTable::resolve`]).
    #[must_use]
    pub fn configure_with(
        &self,
        settings: &PluginSettings,
        grant: GrantStatus,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Self {
        let i = &self.inner;
        let limits = settings.limits.clone().unwrap_or_else(|| i.limits.clone());
        let metrics = metrics.or_else(|| i.metrics.clone());
        Self {
            inner: Arc::new(Inner {
                ticker: i.ticker.clone(),
                info: i.info.clone(),
                declared: i.declared.clone(),
                manifest: Arc::new(settings.narrow(&i.declared)),
                selection: i.selection.clone(),
                pre: i.pre.clone(),
                indices: Indices {
                    plugin: i.indices.plugin.clone(),
                    handler: i.indices.handler.clone(),
                    reconciler: i.indices.reconciler.clone(),
                },
                quarantine: Mutex::new(Quarantine::new(limits.quarantine.clone())),
                output: Arc::new(LogBudget::new(
                    Arc::from(i.info.name.as_str()),
                    limits.log,
                    metrics.clone(),
                )),
                limits,
                wasi: settings.wasi.clone(),
                grant,
                fuel: i.fuel,
                calls: metrics.as_ref().map(|m| m.plugin_calls(&i.info.name)),
                metrics,
            }),
        }
    }

    /// Whether the plugin takes calls, or is quarantined.
    pub fn state(&self) -> PluginState {
        lock(&self.inner.quarantine).state()
    }

    /// The manifest as the plugin declared it, before configuration narrowed it.
    pub fn declared_manifest(&self) -> &Manifest {
        &self.inner.declared
    }

    /// The limits calls run under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The WASI grants instances get.
    pub fn wasi(&self) -> &WasiGrants {
        &self.inner.wasi
    }

    /// Whether a configuration entry applies to this plugin (bound to its file), and why not.
    pub fn grant(&self) -> &GrantStatus {
        &self.inner.grant
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.info.name
    }

    /// What the plugin is.
    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// Its manifest, narrowed by configuration: what the host enforces.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// Which changes of its watched kinds the plugin asked for (its manifest's event filter),
    /// compiled at load.
    pub fn selection(&self) -> &Selection {
        &self.inner.selection
    }

    /// Call `describe` again (e.g. to check a plugin still answers).
    pub async fn describe(&self) -> Result<Manifest, CallError> {
        self.call(&mut None, "describe", None, Grants::default(), |w| {
            Box::pin(async move { w.plugin.call_describe(&mut w.store).await })
        })
        .await
    }

    fn instantiate_error(&self, e: wasmtime::Error) -> CallError {
        CallError::Instantiate {
            plugin: self.name().to_owned(),
            reason: format!("{e:#}"),
        }
    }

    /// A fresh instance from the pre-instantiated component. With the pooling allocator and
    /// copy-on-write memory images this costs microseconds (see `docs/PERFORMANCE.md`).
    async fn instantiate(&self) -> Result<Warm, CallError> {
        let engine = self.inner.pre.engine();
        let state = HostState::new(
            Arc::from(self.name()),
            Some(self.inner.manifest.clone()),
            &self.inner.limits,
            &self.inner.wasi,
            self.inner.output.clone(),
        )
        .map_err(|e| CallError::Instantiate {
            plugin: self.name().to_owned(),
            reason: e.to_string(),
        })?;
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        if self.inner.fuel {
            store
                .set_fuel(self.inner.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| self.instantiate_error(e))?;
        }
        store.data_mut().deadline = Instant::now() + self.inner.limits.call_timeout;
        let instance = self
            .inner
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.instantiate_error(e))?;
        let ix = &self.inner.indices;
        let plugin = ix
            .plugin
            .load(&mut store, &instance)
            .map_err(|e| self.instantiate_error(e))?;
        let handler = ix
            .handler
            .as_ref()
            .map(|h| h.load(&mut store, &instance))
            .transpose()
            .map_err(|e| self.instantiate_error(e))?;
        let reconciler = ix
            .reconciler
            .as_ref()
            .map(|r| r.load(&mut store, &instance))
            .transpose()
            .map_err(|e| self.instantiate_error(e))?;
        Ok(Warm {
            store,
            handler,
            reconciler,
            plugin,
        })
    }

    /// Run one export under the deadline, on the instance in `slot` (a fresh one when empty). A
    /// failed instance is discarded: `slot` is left empty.
    async fn call<R, F>(
        &self,
        slot: &mut Option<Warm>,
        export: &'static str,
        object: Option<&ObjectRef>,
        grants: Grants,
        f: F,
    ) -> Result<R, CallError>
    where
        F: for<'a> FnOnce(&'a mut Warm) -> CallFuture<'a, R>,
    {
        let object_name = object.map_or_else(|| "-".to_owned(), ToString::to_string);
        let refused = {
            let q = lock(&self.inner.quarantine);
            q.refused_for().map(|wait| (wait, q.state()))
        };
        if let Some((wait, state)) = refused {
            let failures = match state {
                PluginState::Degraded { failures, .. } => failures,
                PluginState::Running => 0,
            };
            return Err(CallError::Quarantined {
                plugin: self.name().to_owned(),
                export,
                object: object_name,
                failures,
                retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            });
        }
        let started = Instant::now();
        // Failures are counted by object: one poison object backs off alone.
        let failing = object.map(|_| object_name.clone());
        let result = self.call_inner(slot, export, object_name, grants, f).await;
        let transition = {
            let mut q = lock(&self.inner.quarantine);
            match &result {
                // Opening a reconciliation only hands the object over: the phases that follow
                // tell whether the plugin copes with it.
                Ok(_) if export == OPEN => Transition::None,
                Ok(_) => q.succeeded(),
                // A refused grant or a missing export is the host's business, not a fault.
                Err(
                    CallError::NotExported { .. }
                    | CallError::Quarantined { .. }
                    | CallError::Ended { .. },
                ) => Transition::None,
                Err(_) => q.failed(failing.as_deref()),
            }
        };
        match transition {
            Transition::Quarantined(d) => {
                tracing::error!(
                    plugin = self.name(),
                    backoff_ms = d.as_millis() as u64,
                    "plugin quarantined after repeated failures: degraded"
                );
            }
            Transition::Recovered => {
                tracing::info!(
                    plugin = self.name(),
                    "plugin recovered from quarantine: running"
                );
            }
            Transition::None => {}
        }
        if let Some(calls) = &self.inner.calls {
            calls.record(export, result.is_ok(), started.elapsed());
        }
        result
    }

    async fn call_inner<R, F>(
        &self,
        slot: &mut Option<Warm>,
        export: &'static str,
        object_name: String,
        grants: Grants,
        f: F,
    ) -> Result<R, CallError>
    where
        F: for<'a> FnOnce(&'a mut Warm) -> CallFuture<'a, R>,
    {
        let warm = match slot {
            Some(warm) => warm,
            None => slot.insert(self.instantiate().await?),
        };
        let timeout = self.inner.limits.call_timeout;
        {
            let data = warm.store.data_mut();
            data.grants = grants;
            data.object = Some(object_name.clone());
            data.deadline = Instant::now() + timeout;
        }
        warm.store.set_epoch_deadline(1);
        if self.inner.fuel {
            let fuel = self.inner.limits.fuel.unwrap_or(u64::MAX);
            if let Err(e) = warm.store.set_fuel(fuel) {
                *slot = None;
                return Err(self.instantiate_error(e));
            }
        }
        // The epoch callback interrupts running wasm; the timer also bounds time spent awaiting
        // host imports (a full status channel, say).
        let outcome = tokio::time::timeout(timeout, f(warm)).await;
        let failed = match outcome {
            Ok(Ok(value)) => {
                warm.store.data().finish_output();
                // Capabilities last one call: the next phase gets only what it is granted.
                warm.store.data_mut().grants = Grants::default();
                return Ok(value);
            }
            Ok(Err(e)) if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
                CallError::Timeout {
                    plugin: self.name().to_owned(),
                    export,
                    object: object_name,
                    timeout_ms: timeout.as_millis(),
                }
            }
            Ok(Err(e)) => CallError::Trap {
                plugin: self.name().to_owned(),
                export,
                object: object_name,
                reason: format!("{e:#}"),
            },
            Err(_) => CallError::Timeout {
                plugin: self.name().to_owned(),
                export,
                object: object_name,
                timeout_ms: timeout.as_millis(),
            },
        };
        *slot = None;
        Err(failed)
    }

    fn not_exported(&self, export: &'static str) -> CallError {
        CallError::NotExported {
            plugin: self.name().to_owned(),
            export,
        }
    }

    fn out_of_bounds(
        &self,
        export: &'static str,
        object: &ObjectRef,
        e: &bounds::BoundsError,
    ) -> CallError {
        self.invalid(export, object, e.to_string())
    }

    fn invalid(&self, export: &'static str, object: &ObjectRef, reason: String) -> CallError {
        CallError::InvalidOutput {
            plugin: self.name().to_owned(),
            export,
            object: object.to_string(),
            reason,
        }
    }

    /// Deliver one event to the handler, on an instance of its own, with a fresh status channel
    /// (capacity 5).
    ///
    /// `on-status` is called for each `send` and `send-close`, in order, on the event's instance
    /// once the handler has returned: one instantiation per event. A handler that fills the channel
    /// and sends again waits until a status is consumed (seed 000): then the statuses are consumed
    /// while it runs, on a second instance that serves this event only. A channel the handler
    /// leaves open is closed by the host when the handler returns, with a warning naming the
    /// plugin and the object.
    pub async fn handle(
        &self,
        object: &ObjectRef,
        event: HandlerEvent,
    ) -> Result<HandlerOutcome, CallError> {
        if self.inner.indices.handler.is_none() {
            return Err(self.not_exported(event.export()));
        }
        let (sender, mut receiver) = status::channel();
        let mut consumed = Consumed::default();
        let mut instance = None;
        let export = event.export();
        let result = {
            let call = self.call(
                &mut instance,
                export,
                Some(object),
                Grants::default(),
                move |w| {
                    Box::pin(async move {
                        let handler = guest_export(&w.handler, "handler")?;
                        let res = w.store.data_mut().table().push(sender)?;
                        let borrow = wasmtime::component::Resource::new_borrow(res.rep());
                        let status = match &event {
                            HandlerEvent::Added(obj) => {
                                handler.call_added(&mut w.store, obj, borrow).await
                            }
                            HandlerEvent::Updated { new, old } => {
                                handler.call_updated(&mut w.store, new, old, borrow).await
                            }
                            HandlerEvent::Deleted(obj) => {
                                handler.call_deleted(&mut w.store, obj, borrow).await
                            }
                        };
                        let mut sender = take_sender(w.store.data_mut().table(), res)?;
                        let left_open = sender.close_if_open();
                        drop(sender);
                        Ok((status?, left_open))
                    })
                },
            );
            let mut call = std::pin::pin!(call);
            // Statuses stay buffered while the handler runs, unless it waits on a full channel:
            // then they are consumed beside it, in the same task (no thread hop per status). The
            // sender goes with the call (closed, or dropped with a failed instance), so that
            // consumer ends once the call has.
            tokio::select! {
                biased;
                result = &mut call => result,
                () = receiver.sender_waits() => {
                    let mut second = None;
                    let consume = self.consume(&mut receiver, &mut second, object, &mut consumed);
                    tokio::join!(call, consume).0
                }
            }
        };
        // The rest on the event's own instance (a fresh one if the call failed and discarded it).
        self.consume(&mut receiver, &mut instance, object, &mut consumed)
            .await;
        let (status, left_open) = result?;
        if left_open {
            tracing::warn!(plugin = self.name(), object = %object, "handler left its status channel open; closed by the host");
        }
        Ok(HandlerOutcome {
            status,
            statuses: consumed.statuses,
            left_open,
            on_status_calls: consumed.calls,
            on_status_errors: consumed.errors,
        })
    }

    /// Consume `receiver` until it is closed and drained, calling `on-status` on the instance in
    /// `slot` for each status that asks for it.
    async fn consume(
        &self,
        receiver: &mut StatusReceiver,
        slot: &mut Option<Warm>,
        object: &ObjectRef,
        consumed: &mut Consumed,
    ) {
        while let Some(StatusMessage { status, delivery }) = receiver.recv().await {
            if delivery.calls_on_status() {
                match self.on_status_in(slot, object, &status).await {
                    Ok(()) => consumed.calls += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "on-status failed");
                        consumed.errors.push(e);
                    }
                }
            }
            consumed.statuses.push((status, delivery));
        }
    }

    /// Call `on-status` with a status of the event about `object`, on an instance of its own.
    pub async fn on_status(
        &self,
        object: &ObjectRef,
        status: &EventProcessStatus,
    ) -> Result<(), CallError> {
        self.on_status_in(&mut None, object, status).await
    }

    async fn on_status_in(
        &self,
        slot: &mut Option<Warm>,
        object: &ObjectRef,
        status: &EventProcessStatus,
    ) -> Result<(), CallError> {
        if self.inner.indices.handler.is_none() {
            return Err(self.not_exported("on-status"));
        }
        let (obj, st) = (object.clone(), status.clone());
        self.call(
            slot,
            "on-status",
            Some(object),
            Grants::default(),
            move |w| {
                Box::pin(async move {
                    let handler = guest_export(&w.handler, "handler")?;
                    handler.call_on_status(&mut w.store, &obj, &st).await
                })
            },
        )
        .await
    }

    fn check_size(
        &self,
        export: &'static str,
        object: &ObjectRef,
        bytes: usize,
    ) -> Result<(), CallError> {
        let max = self.inner.limits.max_value_bytes;
        if bytes > max {
            return Err(self.invalid(
                export,
                object,
                format!("{bytes} bytes, over the {max}-byte limit"),
            ));
        }
        Ok(())
    }

    /// Open the reconcile of one object (`obj` is its JSON) on an instance of its own: the object
    /// crosses into the guest once, here. `Ok(Err(_))` is the plugin's own refusal of the object.
    pub async fn reconcile(
        &self,
        object: &ObjectRef,
        obj: &str,
    ) -> Result<Result<Reconciliation, CategorizedError>, CallError> {
        if self.inner.indices.reconciler.is_none() {
            return Err(self.not_exported(OPEN));
        }
        let mut slot = None;
        let obj = obj.to_owned();
        let opened = self
            .call(&mut slot, OPEN, Some(object), Grants::default(), move |w| {
                Box::pin(async move {
                    let r = guest_export(&w.reconciler, "reconciler")?;
                    r.reconciliation().call_open(&mut w.store, &obj).await
                })
            })
            .await?;
        Ok(opened.map(|handle| Reconciliation {
            plugin: self.clone(),
            object: object.clone(),
            instance: slot,
            handle,
        }))
    }
}

/// One reconcile of one object: the `reconciliation` the guest opened, on an instance that serves
/// this reconcile only and is discarded with it. Phases are called in the order of seed 003:
/// `fetch` first, then `health`, `plan` and `status`; `cleanup` may come alone.
pub struct Reconciliation {
    plugin: Plugin,
    object: ObjectRef,
    /// `None` once a phase failed and the instance was discarded.
    instance: Option<Warm>,
    handle: ResourceAny,
}

impl std::fmt::Debug for Reconciliation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciliation")
            .field("plugin", &self.plugin.name())
            .field("object", &self.object)
            .field("live", &self.instance.is_some())
            .finish_non_exhaustive()
    }
}

/// A plan entry with its object parsed from the JSON the plugin returned, as
/// [`Reconciliation::plan`] gives it: every object is a JSON object with `apiVersion`, `kind` and
/// `metadata.name`. Whether it may be applied is decided by the reconcile's plan checker.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// Apply with a controller owner reference to the reconciled object.
    Apply(serde_json::Value),
    /// Apply without an owner reference.
    ApplyWithoutOwnerRef(serde_json::Value),
    /// Delete.
    Delete(ObjectRef),
}

/// Status fields and conditions a plugin's `status` returned, checked: `fields` is a JSON object
/// (or null) within the size limit, the conditions within bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedStatus {
    /// Fields to merge into `.status`.
    pub fields: serde_json::Value,
    /// Conditions to set.
    pub conditions: Vec<Condition>,
}

impl Reconciliation {
    async fn call<R, F>(
        &mut self,
        export: &'static str,
        grants: Grants,
        f: F,
    ) -> Result<R, CallError>
    where
        F: for<'a> FnOnce(&'a mut Warm, ResourceAny) -> CallFuture<'a, R>,
    {
        if self.instance.is_none() {
            return Err(CallError::Ended {
                plugin: self.plugin.name().to_owned(),
                export,
                object: self.object.to_string(),
            });
        }
        let handle = self.handle;
        self.plugin
            .call(
                &mut self.instance,
                export,
                Some(&self.object),
                grants,
                move |w| f(w, handle),
            )
            .await
    }

    /// Fetch phase: the plugin reads through `grants` and keeps what it observed.
    pub async fn fetch(
        &mut self,
        grants: Grants,
    ) -> Result<Result<(), CategorizedError>, CallError> {
        self.call("fetch", grants, |w, h| {
            Box::pin(async move {
                let r = guest_export(&w.reconciler, "reconciler")?;
                r.reconciliation().call_fetch(&mut w.store, h).await
            })
        })
        .await
    }

    /// Plan phase: pure, nothing granted. The plan is bounded in entries and bytes, and every
    /// planned object must be a JSON object with apiVersion, kind and metadata.name; whether it may
    /// be applied is decided by the reconcile's plan checker.
    pub async fn plan(&mut self) -> Result<Result<Vec<Planned>, CategorizedError>, CallError> {
        let out = self
            .call("plan-resources", Grants::default(), |w, h| {
                Box::pin(async move {
                    let r = guest_export(&w.reconciler, "reconciler")?;
                    r.reconciliation()
                        .call_plan_resources(&mut w.store, h)
                        .await
                })
            })
            .await?;
        let entries = match out {
            Ok(entries) => entries,
            Err(e) => return Ok(Err(e)),
        };
        let (plugin, object) = (&self.plugin, &self.object);
        bounds::plan(&plugin.inner.limits, entries.len())
            .map_err(|e| plugin.out_of_bounds("plan-resources", object, &e))?;
        let size: usize = entries
            .iter()
            .map(|e| match e {
                PlanEntry::Apply(j) | PlanEntry::ApplyWithoutOwnerRef(j) => j.len(),
                PlanEntry::Delete(r) => {
                    r.name.len() + r.namespace.as_ref().map_or(0, String::len) + 64
                }
            })
            .sum();
        plugin.check_size("plan-resources", object, size)?;
        let parse = |json: &str| -> Result<serde_json::Value, CallError> {
            let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                plugin.invalid(
                    "plan-resources",
                    object,
                    format!("planned object is not JSON: {e}"),
                )
            })?;
            if ObjectRef::from_json(&value).is_none() {
                return Err(plugin.invalid(
                    "plan-resources",
                    object,
                    "planned object lacks apiVersion, kind or metadata.name".into(),
                ));
            }
            Ok(value)
        };
        let planned = entries
            .into_iter()
            .map(|e| {
                Ok(match e {
                    PlanEntry::Apply(j) => Planned::Apply(parse(&j)?),
                    PlanEntry::ApplyWithoutOwnerRef(j) => Planned::ApplyWithoutOwnerRef(parse(&j)?),
                    PlanEntry::Delete(r) => Planned::Delete(r),
                })
            })
            .collect::<Result<Vec<_>, CallError>>()?;
        Ok(Ok(planned))
    }

    /// Health of each component, bounded.
    pub async fn health(&mut self) -> Result<Vec<ComponentHealth>, CallError> {
        let health = self
            .call("get-component-health", Grants::default(), |w, h| {
                Box::pin(async move {
                    let r = guest_export(&w.reconciler, "reconciler")?;
                    r.reconciliation()
                        .call_get_component_health(&mut w.store, h)
                        .await
                })
            })
            .await?;
        bounds::health(&self.plugin.inner.limits, &health).map_err(|e| {
            self.plugin
                .out_of_bounds("get-component-health", &self.object, &e)
        })?;
        Ok(health)
    }

    /// Decorate or replace the computed status.
    pub async fn status(
        &mut self,
        computed: &serde_json::Value,
    ) -> Result<CheckedStatus, CallError> {
        let computed = computed.to_string();
        let out = self
            .call("status", Grants::default(), move |w, h| {
                Box::pin(async move {
                    let r = guest_export(&w.reconciler, "reconciler")?;
                    r.reconciliation()
                        .call_status(&mut w.store, h, &computed)
                        .await
                })
            })
            .await?;
        let (plugin, object) = (&self.plugin, &self.object);
        plugin.check_size("status", object, out.fields.len())?;
        bounds::status(&plugin.inner.limits, out.fields.len(), &out.conditions)
            .map_err(|e| plugin.out_of_bounds("status", object, &e))?;
        let fields: serde_json::Value = serde_json::from_str(&out.fields).map_err(|e| {
            plugin.invalid("status", object, format!("status fields are not JSON: {e}"))
        })?;
        if !(fields.is_object() || fields.is_null()) {
            return Err(plugin.invalid(
                "status",
                object,
                "status fields must be a JSON object".into(),
            ));
        }
        Ok(CheckedStatus {
            fields,
            conditions: out.conditions,
        })
    }

    /// Clean up before deletion.
    pub async fn cleanup(&mut self) -> Result<Result<CleanupOutcome, CategorizedError>, CallError> {
        self.call("cleanup", Grants::default(), |w, h| {
            Box::pin(async move {
                let r = guest_export(&w.reconciler, "reconciler")?;
                r.reconciliation().call_cleanup(&mut w.store, h).await
            })
        })
        .await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An export interface of a warm instance, borrowing only that field so the store stays free.
fn guest_export<'a, G>(guest: &'a Option<G>, name: &str) -> wasmtime::Result<&'a G> {
    guest
        .as_ref()
        .ok_or_else(|| wasmtime::format_err!("{name} export missing"))
}

fn take_sender(
    table: &mut ResourceTable,
    res: wasmtime::component::Resource<status::StatusSender>,
) -> wasmtime::Result<status::StatusSender> {
    Ok(table.delete(res)?)
}
