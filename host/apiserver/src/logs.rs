//! Pod logs (`GET /api/v1/namespaces/{ns}/pods/{name}/log`). There is no kubelet: the server's
//! owner sets each container's log text ([`crate::RunningServer::set_pod_log`]) and reads serve
//! it with the Kubernetes checks (the pod and the container must exist) and options (`container`,
//! `tailLines`, `limitBytes`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::ApiError;

/// Resource key of pods.
pub const POD_RESOURCE: &str = "pods";

/// What a log read asks for (the served part of `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `container`: needed when the pod has several containers.
    pub container: Option<String>,
    /// `tailLines`: only the last N lines.
    pub tail_lines: Option<u64>,
    /// `limitBytes`: at most N bytes (from the start of what `tailLines` kept).
    pub limit_bytes: Option<u64>,
}

/// Log texts by namespace, pod and container. In memory only; a text stays until replaced, also
/// across a deletion of its pod.
#[derive(Debug, Default)]
pub struct LogStore {
    logs: Mutex<HashMap<(String, String, String), String>>,
}

impl LogStore {
    /// Sets (replaces) the log of a container.
    pub fn set(&self, namespace: &str, pod: &str, container: &str, text: String) {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.into(), pod.into(), container.into()), text);
    }

    /// The log of a container, if one was set.
    #[must_use]
    pub fn get(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.into(), pod.into(), container.into()))
            .cloned()
    }
}

/// Names of a pod's containers: init, regular and ephemeral (as Kubernetes lists them).
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| pod["spec"][list].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a read is for, like the API server's `ValidateContainer`: the one requested,
/// which the pod must have, or else the pod's only (regular) container.
///
/// # Errors
/// [`ApiError::BadRequest`] when the requested container is not the pod's, or none is requested
/// and the pod does not have exactly one container.
pub fn container_for(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names = container_names(pod);
    match requested {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let regular: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match regular.as_slice() {
                [only] => Ok((*only).to_string()),
                [] => Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                ))),
            }
        }
    }
}

/// The part of `text` a read returns: the last `tail_lines` lines (each keeping its newline), then
/// at most `limit_bytes` bytes of those (cut at a byte, as the kubelet does).
#[must_use]
pub fn select(text: &str, opts: &LogOptions) -> Vec<u8> {
    let tailed = match opts.tail_lines {
        None => text,
        Some(n) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let keep = usize::try_from(n).unwrap_or(usize::MAX).min(lines.len());
            let skipped: usize = lines[..lines.len() - keep].iter().map(|l| l.len()).sum();
            &text[skipped..]
        }
    };
    let mut bytes = tailed.as_bytes().to_vec();
    if let Some(limit) = opts.limit_bytes {
        bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    bytes
}

impl Cluster {
    /// Sets (replaces) the log of a container of a pod. The pod need not exist yet; reads check it.
    pub fn set_pod_log(&self, namespace: &str, pod: &str, container: &str, text: String) {
        self.logs().set(namespace, pod, container, text);
    }

    /// Reads a container's log as `GET .../pods/{pod}/log` does: an empty body when no log was
    /// set for the container.
    ///
    /// # Errors
    /// [`ApiError::Invalid`] for `limitBytes=0`, [`ApiError::NotFound`] when the pod does not
    /// exist, [`ApiError::BadRequest`] when the container cannot be chosen (see
    /// [`container_for`]).
    pub fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        opts: &LogOptions,
    ) -> Result<Vec<u8>, ApiError> {
        if opts.limit_bytes == Some(0) {
            return Err(ApiError::Invalid {
                kind: "PodLogOptions".into(),
                group: String::new(),
                name: pod.into(),
                causes: vec![crate::error::FieldCause::other(
                    "limitBytes",
                    "Invalid value: 0: must be greater than 0",
                )],
            });
        }
        let container = {
            let inner = self.lock();
            let key = (namespace.to_string(), pod.to_string());
            let object = inner
                .store
                .get(POD_RESOURCE, &key)
                .ok_or_else(|| ApiError::NotFound {
                    resource: POD_RESOURCE.into(),
                    name: pod.into(),
                })?;
            container_for(object, opts.container.as_deref())?
        };
        Ok(self
            .logs()
            .get(namespace, pod, &container)
            .map(|text| select(&text, opts))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(init: &[&str], containers: &[&str]) -> Value {
        let named = |names: &[&str]| {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "img"}))
                .collect::<Vec<_>>()
        };
        json!({"metadata": {"name": "web-0"},
            "spec": {"initContainers": named(init), "containers": named(containers)}})
    }

    fn opts(tail: Option<u64>, limit: Option<u64>) -> LogOptions {
        LogOptions {
            container: None,
            tail_lines: tail,
            limit_bytes: limit,
        }
    }

    #[test]
    fn the_only_container_is_the_default() {
        assert_eq!(container_for(&pod(&[], &["web"]), None).unwrap(), "web");
        // Init containers are not defaults, but may be named.
        assert_eq!(
            container_for(&pod(&["init"], &["web"]), None).unwrap(),
            "web"
        );
        assert_eq!(
            container_for(&pod(&["init"], &["web"]), Some("init")).unwrap(),
            "init"
        );
    }

    #[test]
    fn several_containers_need_a_name() {
        let p = pod(&["init"], &["a", "b"]);
        let err = container_for(&p, None).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "a container name must be specified for pod web-0, choose one of: [init a b]"
        );
        assert_eq!(container_for(&p, Some("b")).unwrap(), "b");
        let err = container_for(&p, Some("c")).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(err.to_string(), "container c is not valid for pod web-0");
        let err = container_for(&pod(&[], &[]), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a container name must be specified for pod web-0"
        );
    }

    #[test]
    fn tail_lines_keep_the_last_lines_with_their_newlines() {
        let text = "a\nb\nc\n";
        assert_eq!(select(text, &opts(None, None)), b"a\nb\nc\n");
        assert_eq!(select(text, &opts(Some(2), None)), b"b\nc\n");
        assert_eq!(select(text, &opts(Some(9), None)), b"a\nb\nc\n");
        assert_eq!(select(text, &opts(Some(0), None)), b"");
        // An unterminated last line counts as a line.
        assert_eq!(select("a\nb\nc", &opts(Some(1), None)), b"c");
        assert_eq!(select("", &opts(Some(3), None)), b"");
    }

    #[test]
    fn limit_bytes_cuts_after_the_tail() {
        let text = "first\nsecond\nthird\n";
        assert_eq!(select(text, &opts(None, Some(3))), b"fir");
        assert_eq!(select(text, &opts(Some(2), Some(8))), b"second\nt");
        assert_eq!(select(text, &opts(None, Some(1000))), text.as_bytes());
        // Cut at a byte, even inside a character.
        assert_eq!(select("é", &opts(None, Some(1))), &[0xc3]);
    }

    #[test]
    fn reads_check_the_pod_and_the_options() {
        let cluster = Cluster::open(None, 10).unwrap();
        let none = LogOptions::default();
        let err = cluster.pod_log("default", "web-0", &none).unwrap_err();
        assert_eq!((err.code(), err.reason()), (404, "NotFound"));
        assert_eq!(err.to_string(), "pods \"web-0\" not found");
        {
            let mut inner = cluster.lock();
            let mut object = pod(&[], &["web"]);
            object["metadata"]["namespace"] = json!("default");
            inner
                .store
                .put(POD_RESOURCE, ("default".into(), "web-0".into()), object)
                .unwrap();
        }
        // No log yet: empty.
        assert_eq!(cluster.pod_log("default", "web-0", &none).unwrap(), b"");
        cluster.set_pod_log("default", "web-0", "web", "one\ntwo\n".into());
        assert_eq!(
            cluster.pod_log("default", "web-0", &none).unwrap(),
            b"one\ntwo\n"
        );
        assert_eq!(
            cluster
                .pod_log("default", "web-0", &opts(Some(1), None))
                .unwrap(),
            b"two\n"
        );
        // Another namespace's pod of the same name does not exist.
        assert_eq!(
            cluster.pod_log("other", "web-0", &none).unwrap_err().code(),
            404
        );
        let err = cluster
            .pod_log("default", "web-0", &opts(None, Some(0)))
            .unwrap_err();
        assert_eq!(err.code(), 422);
        let wrong = LogOptions {
            container: Some("db".into()),
            ..LogOptions::default()
        };
        assert_eq!(
            cluster
                .pod_log("default", "web-0", &wrong)
                .unwrap_err()
                .code(),
            400
        );
    }
}

#[cfg(test)]
mod served {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, LogParams, PostParams};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{ApiServer, RunningServer};

    fn pod(name: &str, containers: &[&str]) -> Pod {
        let containers: Vec<_> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "img"}))
            .collect();
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"containers": containers}}),
        )
        .unwrap()
    }

    /// A raw request without a body: the status line and headers (lower case), and the body.
    async fn raw(server: &RunningServer, method: &str, path: &str) -> (String, String) {
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(server.authority().client_config().unwrap());
        let name = rustls::pki_types::ServerName::from(server.addr().ip());
        let mut stream = tls.connect(name, tcp).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            server.token()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        // The server may close without a TLS close_notify; what was read is the answer.
        let _ = stream.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_lowercase(), body.to_string())
    }

    fn api_error(e: kube::Error) -> (u16, String, String) {
        match e {
            kube::Error::Api(s) => (s.code, s.reason, s.message),
            other => panic!("not an API error: {other}"),
        }
    }

    #[tokio::test]
    async fn kube_clients_read_logs() {
        let server = ApiServer::builder()
            .build()
            .unwrap()
            .start_loopback()
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(server.client().unwrap(), "default");
        let all = LogParams::default();

        // The pod must exist, even when its log was set.
        server.set_pod_log("default", "one", "web", "a\nb\nc\n");
        let (code, reason, message) = api_error(pods.logs("one", &all).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (404, "NotFound"));
        assert_eq!(message, "pods \"one\" not found");

        pods.create(&PostParams::default(), &pod("one", &["web"]))
            .await
            .unwrap();
        assert_eq!(pods.logs("one", &all).await.unwrap(), "a\nb\nc\n");
        let tail = LogParams {
            tail_lines: Some(2),
            ..LogParams::default()
        };
        assert_eq!(pods.logs("one", &tail).await.unwrap(), "b\nc\n");
        let limited = LogParams {
            tail_lines: Some(2),
            limit_bytes: Some(3),
            ..LogParams::default()
        };
        assert_eq!(pods.logs("one", &limited).await.unwrap(), "b\nc");
        // `previous` is accepted and ignored.
        let previous = LogParams {
            previous: true,
            container: Some("web".into()),
            ..LogParams::default()
        };
        assert_eq!(pods.logs("one", &previous).await.unwrap(), "a\nb\nc\n");
        // Replaced.
        server.set_pod_log("default", "one", "web", "fresh");
        assert_eq!(pods.logs("one", &all).await.unwrap(), "fresh");

        // Several containers: one must be named, and exist.
        pods.create(&PostParams::default(), &pod("two", &["a", "b"]))
            .await
            .unwrap();
        let (code, reason, message) = api_error(pods.logs("two", &all).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (400, "BadRequest"));
        assert_eq!(
            message,
            "a container name must be specified for pod two, choose one of: [a b]"
        );
        let named = |c: &str| LogParams {
            container: Some(c.into()),
            ..LogParams::default()
        };
        let (code, _, message) = api_error(pods.logs("two", &named("c")).await.unwrap_err());
        assert_eq!(code, 400);
        assert_eq!(message, "container c is not valid for pod two");
        // No log set: empty.
        assert_eq!(pods.logs("two", &named("b")).await.unwrap(), "");
        server.set_pod_log("default", "two", "b", "from b\n");
        assert_eq!(pods.logs("two", &named("b")).await.unwrap(), "from b\n");
        assert_eq!(pods.logs("two", &named("a")).await.unwrap(), "");

        // Plain text, and only GET.
        let (head, body) = raw(
            &server,
            "GET",
            "/api/v1/namespaces/default/pods/two/log?container=b&tailLines=1",
        )
        .await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/plain"), "{head}");
        assert_eq!(body, "from b\n");
        let (head, _) = raw(
            &server,
            "GET",
            "/api/v1/namespaces/default/pods/one/log?tailLines=x",
        )
        .await;
        assert!(head.starts_with("http/1.1 400"), "{head}");
        let (head, _) = raw(&server, "POST", "/api/v1/namespaces/default/pods/one/log").await;
        assert!(head.starts_with("http/1.1 405"), "{head}");
        server.shutdown().await.unwrap();
    }
}
