//! Guest output (stdout, stderr and the log import) turned into tracing records tagged with the
//! plugin's name, under a per-plugin budget: a token bucket of bytes and one of records, records
//! cut at a maximum length with a marker, and what is dropped counted in
//! `capstan_plugin_log_dropped_total` and reported in one warning per interval.
//!
//! Stdout and stderr are split into records on newlines; a partial line waits (up to the
//! maximum record length) for the rest of it, across writes, until the call ends.

use crate::rate::TokenBucket;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::time::Instant;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much output a guest may write at once through one WASI write.
const WRITE_PERMIT: usize = 64 << 10;

/// How often, at most, the host warns that a plugin's output was dropped.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The marker closing a record that was cut.
pub(crate) fn cut_marker(cut: usize) -> String {
    format!(" …[{cut} bytes cut]")
}

/// How much of a plugin's output reaches the host's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes a second, sustained. Default 64 KiB.
    pub bytes_per_second: u64,
    /// Bytes at once. Default 256 KiB.
    pub burst_bytes: u64,
    /// Records a second, sustained. Default 100.
    pub records_per_second: u64,
    /// Records at once. Default 500.
    pub burst_records: u64,
    /// The longest record; a longer one is cut, with a marker. Default 16 KiB.
    pub max_record_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            bytes_per_second: 64 << 10,
            burst_bytes: 256 << 10,
            records_per_second: 100,
            burst_records: 500,
            max_record_bytes: 16 << 10,
        }
    }
}

struct BudgetState {
    bytes: TokenBucket,
    records: TokenBucket,
    /// Dropped since the last warning.
    dropped_records: u64,
    dropped_bytes: u64,
    warned: Option<Instant>,
}

/// One plugin's log budget, shared by all its instances and streams.
pub(crate) struct LogBudget {
    plugin: Arc<str>,
    limits: LogLimits,
    metrics: Option<crate::metrics::Metrics>,
    state: Mutex<BudgetState>,
}

impl std::fmt::Debug for LogBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBudget")
            .field("plugin", &self.plugin)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LogBudget {
    pub(crate) fn new(
        plugin: Arc<str>,
        limits: LogLimits,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let state = BudgetState {
            bytes: TokenBucket::new(limits.burst_bytes, limits.bytes_per_second as f64),
            records: TokenBucket::new(limits.burst_records, limits.records_per_second as f64),
            dropped_records: 0,
            dropped_bytes: 0,
            warned: None,
        };
        Self {
            plugin,
            limits,
            metrics,
            state: Mutex::new(state),
        }
    }

    /// The longest record.
    pub(crate) fn max_record_bytes(&self) -> usize {
        self.limits.max_record_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a record of `len` bytes may be logged now; if not, it is counted as dropped.
    pub(crate) fn admit(&self, len: usize) -> bool {
        let admitted = self.try_admit(len);
        if !admitted {
            self.dropped(1, len as u64);
        }
        self.warn_if_due();
        admitted
    }

    /// Whether a record of `len` bytes may be logged now (its budget is spent if so); a refusal
    /// is not counted (for the host's own records about the plugin).
    pub(crate) fn try_admit(&self, len: usize) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let size = len as f64;
        let mut s = self.lock();
        let fits = s.records.available() >= 1.0 && s.bytes.available() >= size;
        if fits {
            s.records.try_take(1.0);
            s.bytes.try_take(size);
        }
        fits
    }

    /// Count `records` records and `bytes` bytes that did not reach the log (a dropped record
    /// counts both; the cut end of a record only its bytes).
    pub(crate) fn dropped(&self, records: u64, bytes: u64) {
        if records == 0 && bytes == 0 {
            return;
        }
        {
            let mut s = self.lock();
            s.dropped_records = s.dropped_records.saturating_add(records);
            s.dropped_bytes = s.dropped_bytes.saturating_add(bytes);
        }
        if let Some(m) = &self.metrics {
            m.plugin_log_dropped(&self.plugin, records, bytes);
        }
    }

    /// One warning per interval saying how much was dropped since the last one.
    fn warn_if_due(&self) {
        let report = {
            let mut s = self.lock();
            let due = s
                .warned
                .is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL);
            if due && (s.dropped_records > 0 || s.dropped_bytes > 0) {
                s.warned = Some(Instant::now());
                Some((
                    std::mem::take(&mut s.dropped_records),
                    std::mem::take(&mut s.dropped_bytes),
                ))
            } else {
                None
            }
        };
        if let Some((records, bytes)) = report {
            tracing::warn!(
                plugin = %self.plugin,
                dropped_records = records,
                dropped_bytes = bytes,
                limits = ?self.limits,
                "plugin log output over its budget: records dropped or cut"
            );
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary, and how many bytes were cut.
pub(crate) fn cut(s: &str, max: usize) -> (&str, usize) {
    if s.len() <= max {
        return (s, 0);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], s.len() - end)
}

/// One stream of one instance: the line being assembled.
struct Sink {
    budget: Arc<LogBudget>,
    stream: &'static str,
    line: Vec<u8>,
    /// Bytes of the current line past the maximum record length, thrown away.
    cut: usize,
}

impl Sink {
    fn push(&mut self, bytes: &[u8]) {
        let room = self
            .budget
            .max_record_bytes()
            .saturating_sub(self.line.len());
        let kept = bytes.len().min(room);
        self.line.extend_from_slice(&bytes[..kept]);
        self.cut += bytes.len() - kept;
    }

    /// Take guest output: every newline ends a record.
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(i) = memchr::memchr(b'\n', bytes) {
            self.push(&bytes[..i]);
            self.end_record();
            bytes = &bytes[i + 1..];
        }
        self.push(bytes);
    }

    /// Log the current line, if any, within the budget.
    fn end_record(&mut self) {
        let cut = std::mem::take(&mut self.cut);
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if self.line.is_empty() && cut == 0 {
            return;
        }
        let marker = (cut > 0).then(|| cut_marker(cut));
        if cut > 0 {
            self.budget.dropped(0, cut as u64);
        }
        // The budget is asked first: a flood over it costs no copy.
        let len = self.line.len() + marker.as_ref().map_or(0, String::len);
        if self.budget.admit(len) {
            let mut text = String::from_utf8_lossy(&self.line).into_owned();
            text.push_str(marker.as_deref().unwrap_or_default());
            tracing::info!(plugin = %self.budget.plugin, stream = self.stream, "{text}");
        }
        self.line.clear();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.end_record();
    }
}

/// A guest's stdout or stderr: records through tracing, within the plugin's budget. Clones (and
/// every WASI stream opened on it) share the partial line.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    sink: Arc<Mutex<Sink>>,
}

impl GuestOutput {
    pub(crate) fn new(budget: Arc<LogBudget>, stream: &'static str) -> Self {
        Self {
            sink: Arc::new(Mutex::new(Sink {
                budget,
                stream,
                line: Vec::new(),
                cut: 0,
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Sink) -> R) -> R {
        f(&mut self
            .sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Take guest output.
    pub(crate) fn write(&self, bytes: &[u8]) {
        self.with(|s| s.write(bytes));
    }

    /// The call ended: log a partial line.
    pub(crate) fn finish(&self) {
        self.with(Sink::end_record);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

// Writes are taken at once, on the calling thread: nothing is buffered behind the guest's back,
// and what a call wrote is accounted before the call returns.
#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every record logged, as (stream, message).
    #[derive(Clone, Default)]
    struct Records(Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>);

    struct Visit<'a>(&'a mut String);

    impl tracing::field::Visit for Visit<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                *self.0 = format!("{value:?}");
            }
        }
    }

    impl tracing::Subscriber for Records {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                self.1.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut message = String::new();
            event.record(&mut Visit(&mut message));
            self.0.lock().unwrap().push(message);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn output(limits: LogLimits, metrics: &crate::metrics::Metrics) -> GuestOutput {
        let budget = LogBudget::new(Arc::from("noisy"), limits, Some(metrics.clone()));
        GuestOutput::new(Arc::new(budget), "stdout")
    }

    fn dropped(metrics: &crate::metrics::Metrics, series: &str) -> u64 {
        metrics
            .encode()
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn records_are_split_on_newlines_across_writes() {
        let records = Records::default();
        let _guard = tracing::subscriber::set_default(records.clone());
        let m = crate::metrics::Metrics::new();
        let out = output(LogLimits::default(), &m);
        out.write(b"one\ntw");
        out.write(b"o\r\n\nthr");
        assert_eq!(*records.0.lock().unwrap(), ["one", "two"]);
        out.write(b"ee");
        out.finish();
        assert_eq!(
            *records.0.lock().unwrap(),
            ["one", "two", "three"],
            "a partial line waits for the end of the call, not for the next write"
        );
        out.finish();
        assert_eq!(records.0.lock().unwrap().len(), 3, "nothing left");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_record_is_cut_with_a_marker() {
        let records = Records::default();
        let _guard = tracing::subscriber::set_default(records.clone());
        let m = crate::metrics::Metrics::new();
        let limits = LogLimits {
            max_record_bytes: 8,
            ..LogLimits::default()
        };
        let out = output(limits, &m);
        out.write(b"0123456789");
        out.write(b"abc\nnext\n");
        assert_eq!(
            *records.0.lock().unwrap(),
            ["01234567 …[5 bytes cut]", "next"]
        );
        assert_eq!(
            dropped(
                &m,
                "capstan_plugin_log_dropped_bytes_total{plugin=\"noisy\"}"
            ),
            5
        );
    }

    #[tokio::test(start_paused = true)]
    async fn output_over_the_budget_is_dropped_counted_and_warned_once_per_interval() {
        let records = Records::default();
        let _guard = tracing::subscriber::set_default(records.clone());
        let m = crate::metrics::Metrics::new();
        let limits = LogLimits {
            bytes_per_second: 100,
            burst_bytes: 1000,
            records_per_second: 1000,
            burst_records: 1000,
            max_record_bytes: 1000,
        };
        let out = output(limits, &m);
        // 100 lines of 99 bytes: 10 fit the burst of bytes.
        let line = [b'x'; 99];
        for _ in 0..100 {
            out.write(&line);
            out.write(b"\n");
        }
        assert_eq!(records.0.lock().unwrap().len(), 10);
        assert_eq!(
            dropped(&m, "capstan_plugin_log_dropped_total{plugin=\"noisy\"}"),
            90
        );
        assert_eq!(
            dropped(
                &m,
                "capstan_plugin_log_dropped_bytes_total{plugin=\"noisy\"}"
            ),
            90 * 99
        );
        assert_eq!(records.1.load(Ordering::Relaxed), 1, "one warning");
        // A second later, one more line fits; the warning waits for its interval.
        tokio::time::advance(Duration::from_secs(1)).await;
        out.write(&line);
        out.write(b"\n");
        out.write(&line);
        out.write(b"\n");
        assert_eq!(records.0.lock().unwrap().len(), 11);
        assert_eq!(records.1.load(Ordering::Relaxed), 1);
        tokio::time::advance(DROP_WARNING_INTERVAL).await;
        out.write(b"ok\n");
        assert_eq!(
            records.1.load(Ordering::Relaxed),
            2,
            "the next interval's warning"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn records_have_a_budget_of_their_own() {
        let records = Records::default();
        let _guard = tracing::subscriber::set_default(records.clone());
        let m = crate::metrics::Metrics::new();
        let limits = LogLimits {
            records_per_second: 1,
            burst_records: 3,
            ..LogLimits::default()
        };
        let out = output(limits, &m);
        out.write(&b"a\n".repeat(1000));
        assert_eq!(records.0.lock().unwrap().len(), 3);
        assert_eq!(
            dropped(&m, "capstan_plugin_log_dropped_total{plugin=\"noisy\"}"),
            997
        );
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("héllo", 2), ("h", 5));
        assert_eq!(cut("abc", 3), ("abc", 0));
    }
}
