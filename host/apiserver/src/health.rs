//! The health endpoints, `/livez`, `/readyz` and the deprecated `/healthz`, answered as
//! kube-apiserver's `healthz` package answers them: `ok`, or with `verbose` one line per check
//! and `<endpoint> check passed`; `exclude=<check>` skips a check; `/readyz/<check>` runs one.
//!
//! The checks carry kube-apiserver's names for the parts of this server that have a counterpart
//! (the store stands for etcd; the bootstrap of roles, priority classes, system namespaces and
//! the `kubernetes` Service for their post-start hooks). They pass while the server serves, but
//! `shutdown`, a readiness check that fails once the server begins to shut down.

use std::collections::BTreeSet;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The checks of every endpoint, in kube-apiserver's order.
const COMMON: &[&str] = &[
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiextensions-controllers",
    "poststarthook/crd-informer-synced",
    "poststarthook/start-system-namespaces-controller",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
    "poststarthook/bootstrap-controller",
];

/// The checks `/readyz` adds: the store's readiness and the informers' sync after `etcd`, and
/// `shutdown` last.
const READY_AFTER_ETCD: &[&str] = &["etcd-readiness", "informer-sync"];

/// A health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/livez`: whether the server runs.
    Live,
    /// `/readyz`: whether it serves.
    Ready,
    /// `/healthz`, deprecated since Kubernetes v1.16: the checks of `/livez`.
    Health,
}

impl Endpoint {
    /// The endpoint of a path's first segment.
    #[must_use]
    pub fn of(segment: &str) -> Option<Self> {
        match segment {
            "livez" => Some(Self::Live),
            "readyz" => Some(Self::Ready),
            "healthz" => Some(Self::Health),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Live => "livez",
            Self::Ready => "readyz",
            Self::Health => "healthz",
        }
    }

    /// This endpoint's checks, in order.
    fn checks(self) -> Vec<&'static str> {
        let mut checks = COMMON.to_vec();
        if self == Self::Ready {
            let etcd = checks
                .iter()
                .position(|c| *c == "etcd")
                .map_or(0, |i| i + 1);
            checks.splice(etcd..etcd, READY_AFTER_ETCD.iter().copied());
            checks.push("shutdown");
        }
        checks
    }
}

/// Whether `check` passes.
fn passes(check: &str, shutting_down: bool) -> bool {
    !(check == "shutdown" && shutting_down)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The answer to `GET /<endpoint>?<query>`, read for `verbose` and `exclude` (which may repeat).
#[must_use]
pub fn answer(endpoint: Endpoint, query: &str, shutting_down: bool) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let verbose = pairs.iter().any(|(k, _)| k == "verbose");
    let mut excluded: BTreeSet<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut out = String::new();
    let mut failed = false;
    for check in endpoint.checks() {
        if excluded.remove(check) {
            out.push_str(&format!("[+]{check} excluded: ok\n"));
        } else if passes(check, shutting_down) {
            out.push_str(&format!("[+]{check} ok\n"));
        } else {
            // The endpoint is public: the reason goes to the log, not to the caller.
            out.push_str(&format!("[-]{check} failed: reason withheld\n"));
            failed = true;
        }
    }
    if !excluded.is_empty() {
        let names: Vec<String> = excluded.iter().map(|c| format!("{c:?}")).collect();
        out.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            names.join(",")
        ));
    }
    let name = endpoint.name();
    if failed {
        tracing::info!(
            endpoint = name,
            "health check failed: the server is shutting down"
        );
        // Go's http.Error ends the text with a newline.
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{out}{name} check failed\n"),
        );
    }
    if !verbose {
        return text(StatusCode::OK, "ok".to_owned());
    }
    text(StatusCode::OK, format!("{out}{name} check passed\n"))
}

/// The answer to `GET /<endpoint>/<check>`, or `None` when the endpoint has no such check.
#[must_use]
pub fn answer_one(endpoint: Endpoint, check: &str, shutting_down: bool) -> Option<Response> {
    if !endpoint.checks().contains(&check) {
        return None;
    }
    Some(if passes(check, shutting_down) {
        text(StatusCode::OK, "ok".to_owned())
    } else {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error: process is shutting down\n".to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, String::from_utf8(bytes.to_vec()).expect("text"))
    }

    #[tokio::test]
    async fn answers_as_the_healthz_package() {
        let (status, text) = body(answer(Endpoint::Ready, "", false)).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));
        let (_, text) = body(answer(
            Endpoint::Ready,
            "verbose&exclude=etcd&exclude=nope",
            false,
        ))
        .await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "[+]ping ok",
                "[+]log ok",
                "[+]etcd excluded: ok",
                "[+]etcd-readiness ok",
                "[+]informer-sync ok"
            ]
        );
        assert_eq!(
            lines[lines.len() - 3..],
            [
                "[+]shutdown ok",
                r#"warn: some health checks cannot be excluded: no matches for "nope""#,
                "readyz check passed"
            ]
        );
        let (_, text) = body(answer(Endpoint::Live, "verbose", false)).await;
        assert!(
            !text.contains("shutdown")
                && text.ends_with("[+]poststarthook/bootstrap-controller ok\nlivez check passed\n")
        );
    }

    #[tokio::test]
    async fn readiness_fails_on_shutdown_and_liveness_does_not() {
        let (status, text) = body(answer(Endpoint::Ready, "", true)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            text.ends_with("[-]shutdown failed: reason withheld\nreadyz check failed\n"),
            "{text}"
        );
        let (status, _) = body(answer(Endpoint::Live, "", true)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = body(answer(Endpoint::Ready, "exclude=shutdown", true)).await;
        assert_eq!(status, StatusCode::OK);
        let one = answer_one(Endpoint::Ready, "shutdown", true).expect("a check");
        assert_eq!(body(one).await.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(answer_one(Endpoint::Live, "shutdown", false).is_none());
        let (status, text) =
            body(answer_one(Endpoint::Live, "etcd", false).expect("a check")).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));
    }
}
