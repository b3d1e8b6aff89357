//! In-cluster configuration: the API server and credentials a pod is given (the
//! `KUBERNETES_SERVICE_HOST`/`_PORT` environment and the ServiceAccount's token, CA bundle and
//! namespace files), read the way client-go reads them, from a directory that tests can move.

use std::path::{Path, PathBuf};

/// Where Kubernetes mounts a pod's ServiceAccount credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The environment variable holding the API server's host in a pod.
pub const SERVICE_HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";
/// The environment variable holding the API server's port in a pod.
pub const SERVICE_PORT_ENV: &str = "KUBERNETES_SERVICE_PORT";

/// The in-cluster configuration cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `KUBERNETES_SERVICE_HOST` or `KUBERNETES_SERVICE_PORT` is unset or empty.
    #[error("{0} is not set: not running in a pod")]
    Environment(&'static str),
    /// `KUBERNETES_SERVICE_PORT` is not a port number.
    #[error("{SERVICE_PORT_ENV}={0:?} is not a port number")]
    Port(String),
    /// A file of the ServiceAccount mount cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// kube-client refused the configuration (the CA bundle, most likely).
    #[error("cannot build a client configuration from {}", dir.display())]
    Config {
        /// The ServiceAccount directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
}

/// A pod's view of its cluster: where the API server is, how to authenticate, and the pod's
/// namespace.
#[derive(Clone)]
pub struct InCluster {
    /// The client configuration: the token file is re-read as Kubernetes rotates it.
    pub config: kube::Config,
    /// The pod's namespace (the ServiceAccount's).
    pub namespace: String,
}

impl std::fmt::Debug for InCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InCluster")
            .field("cluster_url", &self.config.cluster_url.to_string())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Whether the process runs in a pod: `KUBERNETES_SERVICE_HOST` is set (as client-go decides).
#[must_use]
pub fn in_pod() -> bool {
    std::env::var_os(SERVICE_HOST_ENV).is_some_and(|v| !v.is_empty())
}

impl InCluster {
    /// Read the in-cluster configuration from the environment and the ServiceAccount files in
    /// `dir` (`token`, `ca.crt`, `namespace`; normally [`SERVICE_ACCOUNT_DIR`]).
    ///
    /// # Errors
    /// [`ClusterError`] naming the variable or file that is missing or wrong.
    pub async fn load(dir: &Path) -> Result<Self, ClusterError> {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or(ClusterError::Environment(name))
        };
        let host = var(SERVICE_HOST_ENV)?;
        let port = var(SERVICE_PORT_ENV)?;
        let port: u16 = port.parse().map_err(|_| ClusterError::Port(port.clone()))?;
        // An IPv6 address is bracketed in a URL, as client-go's net.JoinHostPort does.
        let server = if host.contains(':') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        };
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ClusterError::Read { path, source })
        };
        let namespace = read("namespace")?.trim().to_owned();
        // The token is read now only to fail early; kube-client reads the file again as it
        // rotates (bound ServiceAccount tokens expire).
        read("token")?;
        let kubeconfig = kube::config::Kubeconfig {
            clusters: vec![kube::config::NamedCluster {
                name: "in-cluster".into(),
                cluster: Some(kube::config::Cluster {
                    server: Some(server),
                    certificate_authority: Some(dir.join("ca.crt").display().to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            auth_infos: vec![kube::config::NamedAuthInfo {
                name: "in-cluster".into(),
                auth_info: Some(kube::config::AuthInfo {
                    token_file: Some(dir.join("token").display().to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            contexts: vec![kube::config::NamedContext {
                name: "in-cluster".into(),
                context: Some(kube::config::Context {
                    cluster: "in-cluster".into(),
                    user: Some("in-cluster".into()),
                    namespace: Some(namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            current_context: Some("in-cluster".into()),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|source| ClusterError::Config {
            dir: dir.to_owned(),
            source,
        })?;
        Ok(Self { config, namespace })
    }
}
