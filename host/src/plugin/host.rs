//! The per-instance host state and the imports the host provides: log, status channel, cache, pod logs.

use super::capability::Grants;
use crate::bindings::capstan::controller::{cache, log, pod_logs, status_channel, types};
use crate::contract::{ErrorCategory, Manifest};
use crate::status::{Delivery, StatusSender};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::Limits;
use super::output::{GuestOutput, LogBudget, cut, cut_marker};
use super::wasi::{WasiError, WasiGrants};

/// What the warning about one log record over the value limit costs the plugin's log budget.
const OVERSIZE_WARNING_BYTES: usize = 128;

/// Data of one plugin instance's store.
pub(crate) struct HostState {
    pub(crate) plugin: Arc<str>,
    pub(crate) manifest: Option<Arc<Manifest>>,
    pub(crate) grants: Grants,
    /// The object the current call is about, for messages.
    pub(crate) object: Option<String>,
    /// When the current call must end.
    pub(crate) deadline: Instant,
    pub(crate) max_value_bytes: usize,
    pub(crate) limits: StoreLimits,
    /// The plugin's log budget (shared by its instances).
    output: Arc<LogBudget>,
    stdout: GuestOutput,
    stderr: GuestOutput,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(
        plugin: Arc<str>,
        manifest: Option<Arc<Manifest>>,
        limits: &Limits,
        grants: &WasiGrants,
        output: Arc<LogBudget>,
    ) -> Result<Self, WasiError> {
        // WASI grants nothing unless configured: no directories, environment, network or
        // inherited stdio; output goes to tracing, tagged with the plugin, within its budget.
        let stdout = GuestOutput::new(output.clone(), "stdout");
        let stderr = GuestOutput::new(output.clone(), "stderr");
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        grants.apply(&mut builder)?;
        let wasi = builder.build();
        Ok(Self {
            plugin,
            manifest,
            grants: Grants::default(),
            object: None,
            deadline: Instant::now(),
            max_value_bytes: limits.max_value_bytes,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(limits.table_elements)
                .instances(64)
                .tables(64)
                .memories(16)
                .trap_on_grow_failure(true)
                .build(),
            output,
            stdout,
            stderr,
            wasi,
            table: ResourceTable::new(),
        })
    }

    /// The call ended: log what stdout and stderr hold of an unfinished line.
    pub(crate) fn finish_output(&self) {
        self.stdout.finish();
        self.stderr.finish();
    }

    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn object(&self) -> &str {
        self.object.as_deref().unwrap_or("-")
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if size > self.max_value_bytes {
            self.output.dropped(1, size as u64);
            // The warning itself is output the plugin caused: within its budget.
            if self.output.try_admit(OVERSIZE_WARNING_BYTES) {
                tracing::warn!(plugin = %self.plugin, object = self.object(), size, "plugin log record over the size limit dropped");
            }
            return Ok(());
        }
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        // A record over the longest allowed is cut: its fields to a quarter of it, the message
        // to the rest, each with a marker.
        let max = self.output.max_record_bytes();
        let (fields, message) = if fields.len() + message.len() > max {
            let (f, f_cut) = cut(&fields, max / 4);
            let (m, m_cut) = cut(&message, max - f.len());
            self.output.dropped(0, (f_cut + m_cut) as u64);
            let mark = |s: &str, n: usize| {
                if n > 0 {
                    format!("{s}{}", cut_marker(n))
                } else {
                    s.to_owned()
                }
            };
            (mark(f, f_cut), mark(m, m_cut))
        } else {
            (fields, message)
        };
        if !self.output.admit(message.len() + fields.len()) {
            return Ok(());
        }
        let (plugin, object) = (&*self.plugin, self.object());
        match level {
            log::Level::Trace => tracing::trace!(plugin, object, fields, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, object, fields, "{message}"),
            log::Level::Info => tracing::info!(plugin, object, fields, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, object, fields, "{message}"),
            log::Level::Error => tracing::error!(plugin, object, fields, "{message}"),
        }
        Ok(())
    }
}

impl status_channel::Host for HostState {}

impl HostState {
    async fn deliver(
        &mut self,
        sender: &Resource<StatusSender>,
        status: types::EventProcessStatus,
        delivery: Delivery,
    ) -> wasmtime::Result<Result<(), status_channel::ChannelError>> {
        let size: usize = status
            .messages
            .iter()
            .map(|m| m.key.len() + m.value.len())
            .sum::<usize>()
            + status.error.as_ref().map_or(0, String::len);
        if size > self.max_value_bytes {
            return Ok(Err(status_channel::ChannelError::TooLarge));
        }
        let sender = self.table.get_mut(sender)?;
        Ok(sender.deliver(status, delivery).await.map_err(|e| match e {
            crate::status::ChannelError::Closed => status_channel::ChannelError::Closed,
            crate::status::ChannelError::Expired => status_channel::ChannelError::Expired,
        }))
    }
}

impl status_channel::HostStatusSender for HostState {
    async fn send(
        &mut self,
        sender: Resource<StatusSender>,
        status: types::EventProcessStatus,
    ) -> wasmtime::Result<Result<(), status_channel::ChannelError>> {
        self.deliver(&sender, status, Delivery::Send).await
    }

    async fn send_close(
        &mut self,
        sender: Resource<StatusSender>,
        status: types::EventProcessStatus,
    ) -> wasmtime::Result<Result<(), status_channel::ChannelError>> {
        self.deliver(&sender, status, Delivery::SendClose).await
    }

    async fn skip_close(
        &mut self,
        sender: Resource<StatusSender>,
        status: types::EventProcessStatus,
    ) -> wasmtime::Result<Result<(), status_channel::ChannelError>> {
        self.deliver(&sender, status, Delivery::SkipClose).await
    }

    async fn drop(&mut self, sender: Resource<StatusSender>) -> wasmtime::Result<()> {
        // The host owns every sender (guests only ever borrow one); nothing to release here.
        let _ = sender;
        Ok(())
    }
}

fn denied(message: String) -> cache::ReadError {
    cache::ReadError {
        category: ErrorCategory::Auth,
        message,
    }
}

impl HostState {
    /// The cache reader this call may use for `gvk`: granted in this phase and declared by the plugin.
    fn cache_reader(
        &self,
        gvk: &crate::contract::Gvk,
    ) -> Result<std::sync::Arc<dyn super::capability::CacheReader>, cache::ReadError> {
        match (&self.grants.cache, &self.manifest) {
            (Some(r), Some(m)) if m.may_read(gvk) => Ok(r.clone()),
            (Some(_), _) => Err(denied(format!(
                "plugin {} did not declare {gvk}",
                self.plugin
            ))),
            (None, _) => Err(denied("no cache access in this phase".into())),
        }
    }
}

impl cache::Host for HostState {
    async fn get(
        &mut self,
        gvk: types::GroupVersionKind,
        namespace: Option<String>,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, cache::ReadError>> {
        let reader = match self.cache_reader(&gvk) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        Ok(reader.get(&gvk, namespace.as_deref(), &name))
    }

    async fn list(
        &mut self,
        gvk: types::GroupVersionKind,
        options: cache::ListOptions,
    ) -> wasmtime::Result<Result<Vec<String>, cache::ReadError>> {
        let reader = match self.cache_reader(&gvk) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        Ok(reader.list(
            &gvk,
            options.namespace.as_deref(),
            options.label_selector.as_deref(),
        ))
    }
}

impl pod_logs::Host for HostState {
    async fn read(
        &mut self,
        namespace: String,
        pod: String,
        container: Option<String>,
        tail_lines: Option<u32>,
    ) -> wasmtime::Result<Result<String, cache::ReadError>> {
        let allowed = self.manifest.as_ref().is_some_and(|m| m.pod_logs);
        let Some(reader) = self.grants.pod_logs.clone().filter(|_| allowed) else {
            return Ok(Err(denied(format!(
                "plugin {} may not read pod logs here",
                self.plugin
            ))));
        };
        Ok(reader
            .read(&namespace, &pod, container.as_deref(), tail_lines)
            .await)
    }
}
