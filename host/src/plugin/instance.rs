//! A loaded plugin: its pre-instantiated component, a pool of warm instances, and the calls into it.

use super::Origin;
use super::bounds;
use super::capability::Grants;
use super::convert;
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
    CategorizedError, CleanupOutcome, ComponentHealth, ContractVersion, Manifest, ObjectRef,
    PlanEntry, StatusUpdate, World,
};
use crate::status::{self, Delivery, EventProcessStatus, EventStatus, StatusMessage};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::{InstancePre, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};

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
    pre: InstancePre<HostState>,
    indices: Indices,
    limits: Limits,
    wasi: WasiGrants,
    /// Whether a configuration entry applies to this plugin, and why not.
    grant: GrantStatus,
    fuel: bool,
    metrics: Option<crate::metrics::Metrics>,
    quarantine: Mutex<Quarantine>,
    /// The log budget of every instance's output.
    output: Arc<LogBudget>,
    idle: Mutex<Vec<Warm>>,
}

/// A loaded, validated plugin. Cheap to clone; calls may run concurrently (each on its own instance).
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
                idle: Mutex::new(Vec::new()),
            }),
        };
        let manifest = probe
            .call("describe", None, Grants::default(), |w| {
                Box::pin(async move { w.plugin.call_describe(&mut w.store).await })
            })
            .await
            .map_err(RejectReason::Describe)?;
        let manifest = convert::manifest_in(manifest);
        manifest.validate().map_err(RejectReason::InvalidManifest)?;
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
                pre,
                indices,
                quarantine: Mutex::new(Quarantine::new(limits.quarantine.clone())),
                output,
                limits,
                wasi: WasiGrants::default(),
                grant: GrantStatus::default(),
                fuel,
                metrics: None,
                idle: Mutex::new(Vec::new()),
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
                metrics,
                idle: Mutex::new(Vec::new()),
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

    /// Call `describe` again (e.g. to check a plugin still answers).
    pub async fn describe(&self) -> Result<Manifest, CallError> {
        let m = self
            .call("describe", None, Grants::default(), |w| {
                Box::pin(async move { w.plugin.call_describe(&mut w.store).await })
            })
            .await?;
        Ok(convert::manifest_in(m))
    }

    fn instantiate_error(&self, e: wasmtime::Error) -> CallError {
        CallError::Instantiate {
            plugin: self.name().to_owned(),
            reason: format!("{e:#}"),
        }
    }

    async fn checkout(&self) -> Result<Warm, CallError> {
        if let Some(w) = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(w);
        }
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

    fn checkin(&self, mut warm: Warm) {
        let data = warm.store.data_mut();
        data.grants = Grants::default();
        data.object = None;
        if let Ok(mut idle) = self.inner.idle.lock()
            && idle.len() < self.inner.limits.idle_instances
        {
            idle.push(warm);
        }
    }

    /// Run one export on a warm instance under the deadline; a failed instance is discarded.
    async fn call<R, F>(
        &self,
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
        let result = self.call_inner(export, object_name, grants, f).await;
        let transition = {
            let mut q = lock(&self.inner.quarantine);
            match &result {
                Ok(_) => q.succeeded(),
                // A refused grant or a missing export is the host's business, not a fault.
                Err(CallError::NotExported { .. } | CallError::Quarantined { .. }) => {
                    Transition::None
                }
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
        if let Some(m) = &self.inner.metrics {
            m.plugin_call(self.name(), export, result.is_ok(), started.elapsed());
        }
        result
    }

    async fn call_inner<R, F>(
        &self,
        export: &'static str,
        object_name: String,
        grants: Grants,
        f: F,
    ) -> Result<R, CallError>
    where
        F: for<'a> FnOnce(&'a mut Warm) -> CallFuture<'a, R>,
    {
        let mut warm = self.checkout().await?;
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
                return Err(self.instantiate_error(e));
            }
        }
        // The epoch callback interrupts running wasm; the timer also bounds time spent awaiting
        // host imports (a full status channel, say).
        let outcome = tokio::time::timeout(timeout, f(&mut warm)).await;
        match outcome {
            Ok(Ok(value)) => {
                warm.store.data().finish_output();
                self.checkin(warm);
                Ok(value)
            }
            Ok(Err(e)) if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
                Err(CallError::Timeout {
                    plugin: self.name().to_owned(),
                    export,
                    object: object_name,
                    timeout_ms: timeout.as_millis(),
                })
            }
            Ok(Err(e)) => Err(CallError::Trap {
                plugin: self.name().to_owned(),
                export,
                object: object_name,
                reason: format!("{e:#}"),
            }),
            Err(_) => Err(CallError::Timeout {
                plugin: self.name().to_owned(),
                export,
                object: object_name,
                timeout_ms: timeout.as_millis(),
            }),
        }
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

    /// Deliver one event to the handler with a fresh status channel (capacity 5).
    ///
    /// Statuses are consumed on a task of their own, which calls `on-status` (on another instance)
    /// for each `send` and `send-close`, in order. A channel the handler leaves open is closed by the
    /// host when the handler returns, with a warning naming the plugin and the object.
    pub async fn handle(
        &self,
        object: &ObjectRef,
        event: HandlerEvent,
    ) -> Result<HandlerOutcome, CallError> {
        if self.inner.indices.handler.is_none() {
            return Err(self.not_exported(event.export()));
        }
        let (sender, mut receiver) = status::channel();
        // Statuses are consumed concurrently with the handler call, in the same task: `send`
        // waits only while 5 statuses are unconsumed, and no thread hop is paid per status.
        let consume = async {
            let (mut seen, mut calls, mut errors) = (Vec::new(), 0, Vec::new());
            while let Some(StatusMessage { status, delivery }) = receiver.recv().await {
                if delivery.calls_on_status() {
                    match self.on_status(object, &status).await {
                        Ok(()) => calls += 1,
                        Err(e) => {
                            tracing::warn!(error = %e, "on-status failed");
                            errors.push(e);
                        }
                    }
                }
                seen.push((status, delivery));
            }
            (seen, calls, errors)
        };
        let export = event.export();
        let call = self.call(export, Some(object), Grants::default(), move |w| {
            Box::pin(async move {
                let handler = guest_export(&w.handler, "handler")?;
                let res = w.store.data_mut().table().push(sender)?;
                let borrow = wasmtime::component::Resource::new_borrow(res.rep());
                let status = match &event {
                    HandlerEvent::Added(obj) => handler.call_added(&mut w.store, obj, borrow).await,
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
        });
        // Whatever happens to the call, the sender goes with it (closed, or dropped with a failed
        // instance), so the consumer ends once it has drained the channel.
        let (result, (statuses, on_status_calls, on_status_errors)) = tokio::join!(call, consume);
        let (status, left_open) = result?;
        if left_open {
            tracing::warn!(plugin = self.name(), object = %object, "handler left its status channel open; closed by the host");
        }
        Ok(HandlerOutcome {
            status: convert::event_status_in(status),
            statuses,
            left_open,
            on_status_calls,
            on_status_errors,
        })
    }

    /// Call `on-status` with a status of the event about `object`.
    pub async fn on_status(
        &self,
        object: &ObjectRef,
        status: &EventProcessStatus,
    ) -> Result<(), CallError> {
        if self.inner.indices.handler.is_none() {
            return Err(self.not_exported("on-status"));
        }
        let (obj, st) = (
            convert::object_ref_out(object),
            convert::process_status_out(status),
        );
        self.call("on-status", Some(object), Grants::default(), move |w| {
            Box::pin(async move {
                let handler = guest_export(&w.handler, "handler")?;
                handler.call_on_status(&mut w.store, &obj, &st).await
            })
        })
        .await
    }

    fn reconciler_check(&self, export: &'static str) -> Result<(), CallError> {
        match self.inner.indices.reconciler {
            Some(_) => Ok(()),
            None => Err(self.not_exported(export)),
        }
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

    /// Fetch phase: the plugin reads through `grants.cache`; returns its observation.
    pub async fn fetch(
        &self,
        object: &ObjectRef,
        obj: &str,
        grants: Grants,
    ) -> Result<Result<String, CategorizedError>, CallError> {
        self.reconciler_check("fetch")?;
        let obj = obj.to_owned();
        let out = self
            .call("fetch", Some(object), grants, move |w| {
                Box::pin(async move {
                    let r = guest_export(&w.reconciler, "reconciler")?;
                    r.call_fetch(&mut w.store, &obj).await
                })
            })
            .await?;
        if let Ok(obs) = &out {
            self.check_size("fetch", object, obs.len())?;
        }
        Ok(out.map_err(convert::error_in))
    }

    /// Plan phase: pure, nothing granted. Every planned object must be a JSON object with
    /// apiVersion, kind and metadata.name.
    pub async fn plan(
        &self,
        object: &ObjectRef,
        obj: &str,
        observation: &str,
    ) -> Result<Result<Vec<PlanEntry>, CategorizedError>, CallError> {
        self.reconciler_check("plan-resources")?;
        let (obj, obs) = (obj.to_owned(), observation.to_owned());
        let out = self
            .call(
                "plan-resources",
                Some(object),
                Grants::default(),
                move |w| {
                    Box::pin(async move {
                        let r = guest_export(&w.reconciler, "reconciler")?;
                        r.call_plan_resources(&mut w.store, &obj, &obs).await
                    })
                },
            )
            .await?;
        let entries = match out {
            Ok(entries) => entries,
            Err(e) => return Ok(Err(convert::error_in(e))),
        };
        use crate::bindings::capstan::controller::types::PlanEntry as P;
        bounds::plan(&self.inner.limits, entries.len())
            .map_err(|e| self.out_of_bounds("plan-resources", object, &e))?;
        let size: usize = entries
            .iter()
            .map(|e| match e {
                P::Apply(j) | P::ApplyWithoutOwnerRef(j) => j.len(),
                P::Delete(_) => 64,
            })
            .sum();
        self.check_size("plan-resources", object, size)?;
        let parse = |json: &str| -> Result<serde_json::Value, CallError> {
            let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                self.invalid(
                    "plan-resources",
                    object,
                    format!("planned object is not JSON: {e}"),
                )
            })?;
            if ObjectRef::from_json(&value).is_none() {
                return Err(self.invalid(
                    "plan-resources",
                    object,
                    "planned object lacks apiVersion, kind or metadata.name".into(),
                ));
            }
            Ok(value)
        };
        let plan = entries
            .into_iter()
            .map(|e| {
                Ok(match e {
                    P::Apply(j) => PlanEntry::Apply(parse(&j)?),
                    P::ApplyWithoutOwnerRef(j) => PlanEntry::ApplyWithoutOwnerRef(parse(&j)?),
                    P::Delete(r) => PlanEntry::Delete(convert::object_ref_in(r)),
                })
            })
            .collect::<Result<Vec<_>, CallError>>()?;
        Ok(Ok(plan))
    }

    /// Health of each component.
    pub async fn health(
        &self,
        object: &ObjectRef,
        obj: &str,
        observation: &str,
    ) -> Result<Vec<ComponentHealth>, CallError> {
        self.reconciler_check("get-component-health")?;
        let (obj, obs) = (obj.to_owned(), observation.to_owned());
        let out = self
            .call(
                "get-component-health",
                Some(object),
                Grants::default(),
                move |w| {
                    Box::pin(async move {
                        let r = guest_export(&w.reconciler, "reconciler")?;
                        r.call_get_component_health(&mut w.store, &obj, &obs).await
                    })
                },
            )
            .await?;
        let health: Vec<ComponentHealth> = out.into_iter().map(convert::health_in).collect();
        bounds::health(&self.inner.limits, &health)
            .map_err(|e| self.out_of_bounds("get-component-health", object, &e))?;
        Ok(health)
    }

    /// Decorate or replace the computed status.
    pub async fn status(
        &self,
        object: &ObjectRef,
        obj: &str,
        observation: &str,
        computed: &serde_json::Value,
    ) -> Result<StatusUpdate, CallError> {
        self.reconciler_check("status")?;
        let (obj, obs, computed) = (obj.to_owned(), observation.to_owned(), computed.to_string());
        let out = self
            .call("status", Some(object), Grants::default(), move |w| {
                Box::pin(async move {
                    let r = guest_export(&w.reconciler, "reconciler")?;
                    r.call_status(&mut w.store, &obj, &obs, &computed).await
                })
            })
            .await?;
        self.check_size("status", object, out.fields.len())?;
        let conditions: Vec<_> = out
            .conditions
            .into_iter()
            .map(convert::condition_in)
            .collect();
        bounds::status(&self.inner.limits, out.fields.len(), &conditions)
            .map_err(|e| self.out_of_bounds("status", object, &e))?;
        let fields: serde_json::Value = serde_json::from_str(&out.fields).map_err(|e| {
            self.invalid("status", object, format!("status fields are not JSON: {e}"))
        })?;
        if !(fields.is_object() || fields.is_null()) {
            return Err(self.invalid(
                "status",
                object,
                "status fields must be a JSON object".into(),
            ));
        }
        Ok(StatusUpdate { fields, conditions })
    }

    /// Clean up before deletion.
    pub async fn cleanup(
        &self,
        object: &ObjectRef,
        obj: &str,
    ) -> Result<Result<CleanupOutcome, CategorizedError>, CallError> {
        self.reconciler_check("cleanup")?;
        let obj = obj.to_owned();
        let out = self
            .call("cleanup", Some(object), Grants::default(), move |w| {
                Box::pin(async move {
                    let r = guest_export(&w.reconciler, "reconciler")?;
                    r.call_cleanup(&mut w.store, &obj).await
                })
            })
            .await?;
        use reconciler::CleanupOutcome as C;
        Ok(out
            .map(|c| match c {
                C::Done => CleanupOutcome::Done,
                C::RequeueAfter(s) => CleanupOutcome::RequeueAfter(s),
            })
            .map_err(convert::error_in))
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
