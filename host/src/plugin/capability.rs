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
    /// The last `tail_lines` lines (all without it) of a container's log.
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: Option<&'a str>,
        tail_lines: Option<u32>,
    ) -> futures::future::BoxFuture<'a, Result<String, CategorizedError>>;
}

/// Pod logs read from the API server (`pods/log`), at most `limit_bytes` per read.
#[derive(Clone)]
pub struct KubePodLogs {
    client: kube::Client,
    limit_bytes: usize,
}

impl KubePodLogs {
    /// Read through `client`, at most `limit_bytes` per read.
    pub fn new(client: kube::Client, limit_bytes: usize) -> Self {
        Self {
            client,
            limit_bytes,
        }
    }
}

impl PodLogReader for KubePodLogs {
    fn read<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        container: Option<&'a str>,
        tail_lines: Option<u32>,
    ) -> futures::future::BoxFuture<'a, Result<String, CategorizedError>> {
        use crate::contract::ErrorCategory;
        Box::pin(async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(self.client.clone(), namespace);
            let params = kube::api::LogParams {
                container: container.map(str::to_owned),
                tail_lines: tail_lines.map(i64::from),
                limit_bytes: i64::try_from(self.limit_bytes).ok(),
                ..Default::default()
            };
            api.logs(pod, &params).await.map_err(|e| {
                let category = match &e {
                    kube::Error::Api(s) if s.code == 401 || s.code == 403 => ErrorCategory::Auth,
                    kube::Error::Api(s) if s.code == 404 => {
                        ErrorCategory::MissingDownstreamDependency
                    }
                    kube::Error::Api(s) if s.code == 400 => ErrorCategory::InvalidSpec,
                    _ => ErrorCategory::Infrastructure,
                };
                CategorizedError {
                    category,
                    message: format!("cannot read the log of pod {namespace}/{pod}: {e}"),
                }
            })
        })
    }
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
