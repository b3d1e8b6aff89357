//! Capabilities the host lends a plugin during a call: cache reads (fetch phase) and pod logs.

use crate::contract::{CategorizedError, Gvk};

/// Read access to the informer caches, served to plugins in the fetch phase.
pub trait CacheReader: Send + Sync {
    /// One object as JSON, `None` when it does not exist.
    fn get(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, CategorizedError>;

    /// Objects of a kind, in a namespace or all, filtered by a label selector.
    fn list(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<String>, CategorizedError>;
}

/// Read access to pod logs, for plugins whose manifest asks for it.
pub trait PodLogReader: Send + Sync {
    /// The last `tail_lines` lines of a container's log.
    fn read(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        tail_lines: Option<u32>,
    ) -> Result<String, CategorizedError>;
}

/// What a call may use. The default grants nothing: `describe`, handlers and `plan-resources` run so.
#[derive(Clone, Default)]
pub struct Grants {
    /// Cache reads.
    pub cache: Option<std::sync::Arc<dyn CacheReader>>,
    /// Pod logs.
    pub pod_logs: Option<std::sync::Arc<dyn PodLogReader>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("cache", &self.cache.is_some())
            .field("pod_logs", &self.pod_logs.is_some())
            .finish()
    }
}
