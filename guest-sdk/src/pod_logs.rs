//! Reads pod logs from the host, for health inspection ([`crate::inspect::pod_with_logs`]).

use crate::health::{Error, ErrorCategory};
use std::collections::HashMap;

/// Read access to the logs of pods: the host's `pod-logs` interface, or an in-memory map in tests.
///
/// The plugin must declare pod-log access with [`crate::Manifest::with_pod_logs`]; otherwise the
/// host refuses every read with an [`ErrorCategory::Auth`] error. Like the [`crate::Cache`], host
/// reads only work while the host has granted the capability for the current call (the `fetch`
/// phase); read the logs there and keep what you need in the observation.
///
/// ```
/// use capstan_sdk::PodLogs;
///
/// let logs = PodLogs::from_map(Default::default())
///     .with_log("shop", "web-0", "starting\nopen /data/db: no space left on device");
/// let tail = logs.read("shop", "web-0", Some("web"), Some(1));
/// assert_eq!(tail.as_deref(), Ok("open /data/db: no space left on device"));
/// assert!(logs.read("shop", "web-1", None, None).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct PodLogs {
    memory: Option<HashMap<(String, String), Result<String, Error>>>,
}

impl PodLogs {
    /// Logs read from the host through the `pod-logs` interface (reconcilers only, in `fetch`).
    ///
    /// In native builds (unit tests) every read fails with an invalid-spec error.
    pub fn host() -> Self {
        Self { memory: None }
    }

    /// In-memory logs keyed by `(namespace, pod)`: for testing natively. The container asked for
    /// is ignored; `tail_lines` is honoured.
    pub fn from_map(logs: HashMap<(String, String), String>) -> Self {
        Self {
            memory: Some(logs.into_iter().map(|(k, v)| (k, Ok(v))).collect()),
        }
    }

    /// Add (or replace) the in-memory log of a pod. On [`PodLogs::host`] this starts an empty
    /// in-memory map, so the host is no longer read.
    #[must_use]
    pub fn with_log(self, namespace: &str, pod: &str, text: impl Into<String>) -> Self {
        self.with_entry(namespace, pod, Ok(text.into()))
    }

    /// Make in-memory reads of a pod's log fail with `error`, e.g. to test fallbacks.
    #[must_use]
    pub fn with_error(self, namespace: &str, pod: &str, error: Error) -> Self {
        self.with_entry(namespace, pod, Err(error))
    }

    fn with_entry(mut self, namespace: &str, pod: &str, entry: Result<String, Error>) -> Self {
        self.memory
            .get_or_insert_with(HashMap::new)
            .insert((namespace.to_owned(), pod.to_owned()), entry);
        self
    }

    /// The last `tail_lines` lines (all when `None`) of the log of `container` (the pod's only
    /// or default container when `None`) of `pod` in `namespace`.
    pub fn read(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        tail_lines: Option<u32>,
    ) -> Result<String, Error> {
        match &self.memory {
            Some(logs) => match logs.get(&(namespace.to_owned(), pod.to_owned())) {
                Some(Ok(text)) => Ok(tail(text, tail_lines)),
                Some(Err(e)) => Err(e.clone()),
                None => Err(Error::new(
                    ErrorCategory::MissingDownstreamDependency,
                    format!("no log for pod {namespace}/{pod}"),
                )),
            },
            None => host_read(namespace, pod, container, tail_lines),
        }
    }
}

fn tail(text: &str, tail_lines: Option<u32>) -> String {
    let Some(n) = tail_lines else {
        return text.to_owned();
    };
    let lines: Vec<&str> = text.lines().collect();
    let keep = usize::try_from(n).unwrap_or(usize::MAX).min(lines.len());
    lines[lines.len() - keep..].join("\n")
}

/// Read a log tail through the host's `pod-logs` interface.
#[cfg(target_arch = "wasm32")]
fn host_read(
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    tail_lines: Option<u32>,
) -> Result<String, Error> {
    crate::wit::capstan::controller::pod_logs::read(namespace, pod, container, tail_lines)
        .map_err(|e| Error::new(e.category, e.message))
}

/// Native builds (unit tests) have no host: use [`PodLogs::from_map`].
#[cfg(not(target_arch = "wasm32"))]
fn host_read(_: &str, _: &str, _: Option<&str>, _: Option<u32>) -> Result<String, Error> {
    Err(Error::invalid_spec(
        "the host's pod logs are only readable inside a plugin; test with PodLogs::from_map",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, pod: &str) -> (String, String) {
        (ns.to_owned(), pod.to_owned())
    }

    #[test]
    fn from_map_reads_whole_log_or_tail() {
        let logs = PodLogs::from_map(HashMap::from([(key("ns", "p"), "a\nb\nc\n".to_owned())]));
        assert_eq!(logs.read("ns", "p", None, None).unwrap(), "a\nb\nc\n");
        assert_eq!(logs.read("ns", "p", Some("main"), Some(2)).unwrap(), "b\nc");
        assert_eq!(logs.read("ns", "p", None, Some(10)).unwrap(), "a\nb\nc");
        assert_eq!(logs.read("ns", "p", None, Some(0)).unwrap(), "");
    }

    #[test]
    fn missing_pod_is_a_downstream_error() {
        let logs = PodLogs::from_map(HashMap::new());
        let err = logs.read("ns", "gone", None, None).unwrap_err();
        assert_eq!(err.category, ErrorCategory::MissingDownstreamDependency);
        assert!(err.message.contains("ns/gone"));
    }

    #[test]
    fn builder_adds_logs_and_errors() {
        let logs = PodLogs::from_map(HashMap::new())
            .with_log("ns", "a", "hello")
            .with_error("ns", "b", Error::new(ErrorCategory::Auth, "denied"));
        assert_eq!(logs.read("ns", "a", None, Some(5)).unwrap(), "hello");
        assert_eq!(
            logs.read("ns", "b", None, None).unwrap_err().category,
            ErrorCategory::Auth
        );
        // Starting from the host switches to memory.
        let logs = PodLogs::host().with_log("ns", "a", "x");
        assert_eq!(logs.read("ns", "a", None, None).unwrap(), "x");
    }

    #[test]
    fn host_reads_are_an_error_natively_not_a_panic() {
        let err = PodLogs::host().read("ns", "p", None, None).unwrap_err();
        assert_eq!(err.category, ErrorCategory::InvalidSpec);
    }
}
