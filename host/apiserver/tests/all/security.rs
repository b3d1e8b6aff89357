//! The embedded API server refuses what kube-apiserver refuses: requests without the bearer token,
//! path segments that name nothing (empty, `..`, an encoded `/`), object names Kubernetes would not
//! accept, bodies of unsupported media types, unbounded request parameters, slow request heads,
//! and writes that would grow the stored objects or the watch history without bound.

use crate::common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use capstan_apiserver::{ApiServer, RunningServer};
use common::{api_code, bearer, connect, raw, send, start, start_with};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not json ({e}): {body}"))
}

async fn names(server: &RunningServer) -> Vec<String> {
    let (code, body) = raw(server, "GET", CMS, "application/json", b"").await;
    assert_eq!(code, 200, "{body}");
    json(&body)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn create_cm(server: &RunningServer, name: &str) {
    let body = json!({"metadata": {"name": name}, "data": {"a": "1"}}).to_string();
    let (code, out) = raw(server, "POST", CMS, "application/json", body.as_bytes()).await;
    assert_eq!(code, 201, "{out}");
}

/// Sends a GET with the token and returns the status code once the response head is in (the
/// body of a watch never ends).
async fn head_status(server: &RunningServer, path: &str) -> u16 {
    let mut stream = connect(server).await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\r\n",
        bearer(server)
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            other => panic!("no response head for {path}: {other:?} after {out:?}"),
        }
    }
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line")
}

#[tokio::test]
async fn requests_need_the_bearer_token_but_health_probes_do_not() {
    let (server, client) = start().await;
    create_cm(&server, "keep").await;
    let token = bearer(&server);
    let wrong = format!("{token}x");
    let lower = token.replacen("Bearer", "bearer", 1);
    let refused: [&[(&str, &str)]; 5] = [
        &[],
        &[("Authorization", &wrong)],
        &[("Authorization", server.token())],
        &[("Authorization", "Bearer ")],
        &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
    ];
    for headers in refused {
        for (method, path) in [
            ("GET", CMS),
            ("DELETE", CMS),
            ("GET", "/version"),
            ("GET", "/api"),
        ] {
            let (code, body) = send(&server, method, path, headers, b"").await;
            assert_eq!(code, 401, "{method} {path} with {headers:?}: {body}");
            let status = json(&body);
            assert_eq!(status["kind"], "Status");
            assert_eq!(status["reason"], "Unauthorized");
            assert_eq!(status["code"], 401);
            assert_eq!(status["message"], "Unauthorized");
        }
    }
    assert_eq!(
        names(&server).await,
        ["keep"],
        "the refused delete did nothing"
    );
    let (code, _) = send(&server, "GET", CMS, &[("Authorization", &lower)], b"").await;
    assert_eq!(code, 200, "the scheme is case-insensitive");
    for probe in ["/healthz", "/livez", "/readyz"] {
        let (code, body) = send(&server, "GET", probe, &[], b"").await;
        assert_eq!((code, body.as_str()), (200, "ok"), "{probe}");
    }

    // kube clients: the server's own carries the token, one without it is refused.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let mut tokenless = server.kube_config().unwrap();
    tokenless.auth_info.token = None;
    let bare = kube::Client::try_from(tokenless).unwrap();
    let err = Api::<ConfigMap>::namespaced(bare, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), 401);

    let other = ApiServer::builder().build().unwrap();
    assert_ne!(
        other.token(),
        server.token(),
        "each server has its own token"
    );
    assert!(server.token().len() >= 43, "256 random bits");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_given_token_must_be_usable() {
    for bad in ["", "has space", "quote\"d"] {
        assert!(ApiServer::builder().token(bad).build().is_err(), "{bad:?}");
    }
    let server = ApiServer::builder()
        .token("fixed-token")
        .build()
        .unwrap()
        .start_loopback()
        .await
        .unwrap();
    assert_eq!(server.token(), "fixed-token");
    let (code, _) = send(
        &server,
        "GET",
        CMS,
        &[("Authorization", "Bearer fixed-token")],
        b"",
    )
    .await;
    assert_eq!(code, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_kubeconfig_carries_the_token_and_only_its_owner_reads_it() {
    let (server, _client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    server.write_kubeconfig(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let yaml: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(yaml["users"][0]["user"]["token"], server.token());

    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    cms.list(&ListParams::default()).await.unwrap();

    // A symbolic link at the path is replaced, not written through.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    server.write_kubeconfig(&link).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn empty_traversing_and_encoded_segments_never_reach_the_store() {
    let (server, _client) = start().await;
    for name in ["a", "b", "x.y"] {
        create_cm(&server, name).await;
    }
    let refused = [
        // An empty name is not the collection (kube-apiserver: "name must be provided").
        ("DELETE", format!("{CMS}/"), 400),
        ("GET", format!("{CMS}/"), 400),
        ("DELETE", format!("{CMS}//"), 400),
        ("PUT", format!("{CMS}/"), 400),
        ("PATCH", format!("{CMS}/"), 400),
        ("DELETE", "/api/v1/namespaces//configmaps".to_owned(), 400),
        ("GET", "/api/v1/namespaces//configmaps".to_owned(), 400),
        ("DELETE", "/api/v1/namespaces//configmaps/a".to_owned(), 400),
        // Names that are not path segments.
        ("GET", format!("{CMS}/.."), 400),
        ("DELETE", format!("{CMS}/%2e%2e"), 400),
        ("DELETE", format!("{CMS}/."), 400),
        ("DELETE", format!("{CMS}/a%2Fb"), 400),
        ("DELETE", format!("{CMS}/a%252Fb"), 400),
        (
            "GET",
            "/api/v1/namespaces/default%2Fconfigmaps".to_owned(),
            400,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/..%2Fdefault/configmaps".to_owned(),
            400,
        ),
        ("DELETE", format!("{CMS}/%"), 400),
        ("DELETE", format!("{CMS}/a%zz"), 400),
        // Segments that name no served resource.
        ("DELETE", format!("{CMS}/a/"), 404),
        ("GET", format!("{CMS}/a/.."), 404),
        ("DELETE", format!("/{CMS}"), 404),
        ("GET", "/api/v1/".to_owned(), 404),
        ("GET", "/apis/".to_owned(), 404),
        (
            "GET",
            "/apis//v1/namespaces/default/deployments".to_owned(),
            404,
        ),
        ("GET", "/apis/apps%2Fv1/deployments".to_owned(), 404),
        ("GET", "/apis/apps/v1%2F../deployments".to_owned(), 404),
        ("GET", "/apis/../v1/deployments".to_owned(), 404),
        (
            "DELETE",
            "/api/v1/namespaces/default/%2E%2E".to_owned(),
            404,
        ),
    ];
    for (method, path, want) in refused {
        let (code, body) = raw(&server, method, &path, "application/json", b"{}").await;
        assert_eq!(code, want, "{method} {path}: {body}");
        let status = json(&body);
        assert_eq!(status["kind"], "Status", "{method} {path}");
        let reason = if want == 400 {
            "BadRequest"
        } else {
            "NotFound"
        };
        assert_eq!(status["reason"], reason, "{method} {path}");
    }
    let (_, body) = raw(&server, "GET", &format!("{CMS}/"), "application/json", b"").await;
    assert_eq!(json(&body)["message"], "name must be provided");
    assert_eq!(
        names(&server).await,
        ["a", "b", "x.y"],
        "nothing was deleted"
    );

    // Escapes are decoded per segment: an encoded '.' is a '.'.
    let (code, body) = raw(
        &server,
        "GET",
        &format!("{CMS}/x%2Ey"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["metadata"]["name"], "x.y");
    let (code, _) = raw(
        &server,
        "DELETE",
        &format!("{CMS}/a"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(names(&server).await, ["b", "x.y"]);
    server.shutdown().await.unwrap();
}

async fn post(server: &RunningServer, path: &str, body: Value) -> (u16, Value) {
    let text = body.to_string();
    let (code, out) = raw(server, "POST", path, "application/json", text.as_bytes()).await;
    (code, json(&out))
}

fn cause(status: &Value, field: &str) -> Value {
    status["details"]["causes"]
        .as_array()
        .unwrap_or_else(|| panic!("no causes: {status}"))
        .iter()
        .find(|c| c["field"] == field)
        .cloned()
        .unwrap_or_else(|| panic!("no cause for {field}: {status}"))
}

#[tokio::test]
async fn names_are_checked_as_kubernetes_checks_them() {
    let (server, client) = start().await;

    let (code, status) = post(&server, CMS, json!({"metadata": {"name": "a..b"}})).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["code"], 422);
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    assert_eq!(
        status["details"],
        json!({"name": "a..b", "group": "", "kind": "ConfigMap", "causes": [{
            "reason": "FieldValueInvalid",
            "field": "metadata.name",
            "message": format!("Invalid value: \"a..b\": {subdomain}"),
        }]})
    );
    assert_eq!(
        status["message"],
        format!(
            "ConfigMap \"a..b\" is invalid: metadata.name: Invalid value: \"a..b\": {subdomain}"
        )
    );

    // Each kind's rule, with the kind and group in the details.
    let deploy = "/apis/apps/v1/namespaces/default/deployments";
    let (code, status) = post(&server, deploy, json!({"metadata": {"name": "Web"}})).await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["kind"], "Deployment");
    assert_eq!(status["details"]["group"], "apps");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("Deployment.apps \"Web\" is invalid")
    );
    let svc = "/api/v1/namespaces/default/services";
    let (code, status) = post(&server, svc, json!({"metadata": {"name": "1svc"}})).await;
    assert_eq!(code, 422, "a Service name is a DNS-1035 label");
    assert!(
        cause(&status, "metadata.name")["message"]
            .as_str()
            .unwrap()
            .contains("DNS-1035")
    );
    let (code, _) = post(
        &server,
        svc,
        json!({"metadata": {"name": "svc1"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, status) = post(
        &server,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "a.b"}}),
    )
    .await;
    assert_eq!(code, 422, "a Namespace name is a DNS-1123 label");
    assert_eq!(status["details"]["kind"], "Namespace");
    let (code, _) = post(&server, CMS, json!({"metadata": {"name": "a".repeat(254)}})).await;
    assert_eq!(code, 422);
    let (code, _) = post(&server, CMS, json!({"metadata": {"name": "a".repeat(253)}})).await;
    assert_eq!(code, 201);

    // The namespace of a namespaced object: checked before it is looked up.
    let (code, status) = post(
        &server,
        "/api/v1/namespaces/Bad_NS/configmaps",
        json!({"metadata": {"name": "ok"}}),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        cause(&status, "metadata.namespace")["reason"],
        "FieldValueInvalid"
    );
    let (code, _) = post(
        &server,
        "/api/v1/namespaces/missing/configmaps",
        json!({"metadata": {"name": "ok"}}),
    )
    .await;
    assert_eq!(code, 404);

    // No name at all.
    let (code, status) = post(&server, CMS, json!({"metadata": {}})).await;
    assert_eq!(code, 422);
    let required = cause(&status, "metadata.name");
    assert_eq!(required["reason"], "FieldValueRequired");
    assert_eq!(
        required["message"],
        "Required value: name or generateName is required"
    );

    // generateName: the prefix is checked with its trailing dash masked, cut to 58 characters.
    let (code, made) = post(&server, CMS, json!({"metadata": {"generateName": "web-"}})).await;
    assert_eq!(code, 201, "{made}");
    let name = made["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    let long = format!("{}-", "g".repeat(70));
    let (code, made) = post(&server, CMS, json!({"metadata": {"generateName": long}})).await;
    assert_eq!(code, 201, "{made}");
    let name = made["metadata"]["name"].as_str().unwrap();
    assert_eq!(name.len(), 63, "{name}");
    assert!(name.starts_with(&"g".repeat(58)));
    let (code, status) = post(&server, CMS, json!({"metadata": {"generateName": "Web-"}})).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        cause(&status, "metadata.generateName")["message"],
        format!("Invalid value: \"Web-\": {subdomain}")
    );
    let (code, status) = post(&server, svc, json!({"metadata": {"generateName": "1a-"}})).await;
    assert_eq!(code, 422, "{status}");
    cause(&status, "metadata.generateName");

    // Server-side apply that creates, and the kube client's create.
    let apply = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: UPPER\n";
    let (code, body) = raw(
        &server,
        "PATCH",
        &format!("{CMS}/UPPER?fieldManager=t"),
        "application/apply-patch+yaml",
        apply,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(json(&body)["details"]["name"], "UPPER");
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("Bad_Name".into());
    let err = cms.create(&Default::default(), &cm).await.unwrap_err();
    assert_eq!(api_code(&err), 422);

    let stored = names(&server).await;
    assert!(
        stored.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')),
        "{stored:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_need_a_supported_media_type() {
    let (server, _client) = start().await;
    create_cm(&server, "cm").await;
    let object = br#"{"metadata":{"name":"n"},"data":{"a":"1"}}"#;
    let auth = bearer(&server);
    let cm = format!("{CMS}/cm");
    let patch = br#"{"data":{"b":"2"}}"#;
    let refused: [(&str, &str, Option<&str>, &[u8]); 10] = [
        ("POST", CMS, None, object),
        ("POST", CMS, Some("text/plain"), object),
        ("POST", CMS, Some("*/*"), object),
        ("POST", CMS, Some("application/merge-patch+json"), object),
        ("PUT", &cm, None, object),
        (
            "PUT",
            &cm,
            Some("application/strategic-merge-patch+json"),
            object,
        ),
        ("PATCH", &cm, None, patch),
        ("PATCH", &cm, Some("application/json"), patch),
        ("PATCH", &cm, Some("application/apply-patch+json"), patch),
        (
            "PATCH",
            &cm,
            Some("application/vnd.kubernetes.protobuf"),
            patch,
        ),
    ];
    for (method, path, media, body) in refused {
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(media) = media {
            headers.push(("Content-Type", media));
        }
        let (code, out) = send(&server, method, path, &headers, body).await;
        assert_eq!(code, 415, "{method} {path} {media:?}: {out}");
        let status = json(&out);
        assert_eq!(status["reason"], "UnsupportedMediaType");
        assert_eq!(status["kind"], "Status");
    }
    assert_eq!(names(&server).await, ["cm"]);
    // A ConfigMap may be protobuf, but JSON declared as protobuf is not read as JSON.
    let (code, out) = raw(
        &server,
        "POST",
        CMS,
        "application/vnd.kubernetes.protobuf",
        object,
    )
    .await;
    assert_eq!(code, 400, "{out}");
    assert_eq!(names(&server).await, ["cm"]);

    // What is supported, parameters and case aside.
    let (code, out) = raw(
        &server,
        "POST",
        CMS,
        "application/json; charset=utf-8",
        object,
    )
    .await;
    assert_eq!(code, 201, "{out}");
    // (Not `name: y`: unquoted, `y` is a YAML 1.1 boolean, as kube-apiserver reads YAML.)
    let yaml = b"metadata:\n  name: from-yaml\ndata:\n  a: '1'\n";
    let (code, out) = raw(&server, "POST", CMS, "Application/YAML", yaml).await;
    assert_eq!(code, 201, "{out}");
    let put = br#"{"metadata":{"name":"cm"},"data":{"a":"put"}}"#;
    let (code, out) = raw(&server, "PUT", &cm, "application/json", put).await;
    assert_eq!(code, 200, "{out}");
    for (media, body) in [
        (
            "application/merge-patch+json",
            &br#"{"data":{"b":"2"}}"#[..],
        ),
        (
            "application/strategic-merge-patch+json",
            br#"{"data":{"c":"3"}}"#,
        ),
        (
            "application/json-patch+json",
            br#"[{"op":"add","path":"/data/d","value":"4"}]"#,
        ),
    ] {
        let (code, out) = raw(&server, "PATCH", &cm, media, body).await;
        assert_eq!(code, 200, "{media}: {out}");
    }
    let (code, out) = raw(
        &server,
        "PATCH",
        &format!("{cm}?fieldManager=t&force=true"),
        "application/apply-patch+yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  e: '5'\n",
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(json(&out)["data"]["b"], "2");
    assert_eq!(json(&out)["data"]["e"], "5");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn numeric_parameters_never_panic_and_watch_timeouts_are_capped() {
    let (server, _client) = start().await;
    create_cm(&server, "cm").await;
    for query in [
        "watch=1&timeoutSeconds=99999999999999999999",
        "watch=1&timeoutSeconds=-1",
        "watch=1&timeoutSeconds=abc",
        "watch=1&timeoutSeconds=1e3",
        "timeoutSeconds=99999999999999999999",
        "limit=99999999999999999999",
        "limit=-5",
        "watch=1&resourceVersion=99999999999999999999",
    ] {
        let (code, body) = raw(
            &server,
            "GET",
            &format!("{CMS}?{query}"),
            "application/json",
            b"",
        )
        .await;
        assert_eq!(code, 400, "{query}: {body}");
        assert_eq!(json(&body)["reason"], "BadRequest", "{query}");
    }
    let log = "/api/v1/namespaces/default/pods/p/log?tailLines=99999999999999999999";
    let (code, _) = raw(&server, "GET", log, "application/json", b"").await;
    assert_eq!(code, 400);
    // The largest numbers that parse: a capped watch, a list of everything.
    let max = u64::MAX;
    let status = head_status(&server, &format!("{CMS}?watch=1&timeoutSeconds={max}")).await;
    assert_eq!(status, 200);
    let status = head_status(
        &server,
        &format!("{CMS}?watch=1&timeoutSeconds={max}&resourceVersion=0"),
    )
    .await;
    assert_eq!(status, 200);
    let (code, body) = raw(
        &server,
        "GET",
        &format!("{CMS}?limit={max}"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["items"].as_array().map(Vec::len), Some(1));
    // A short timeout still ends the watch.
    let (code, _) = raw(
        &server,
        "GET",
        &format!("{CMS}?watch=1&timeoutSeconds=1"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    // Still serving.
    let (code, _) = raw(&server, "GET", "/version", "application/json", b"").await;
    assert_eq!(code, 200);
    server.shutdown().await.unwrap();
}

/// The head deadline of the servers of the deadline tests (the default, 32 s, is what a production
/// server gets; the mechanism is the same).
const HEADER_DEADLINE: Duration = Duration::from_secs(2);

/// A server with [`HEADER_DEADLINE`].
async fn start_with_deadline() -> (RunningServer, kube::Client) {
    start_with(ApiServer::builder().header_read_timeout(HEADER_DEADLINE)).await
}

/// Reads until the server closes the connection (or `deadline`); true when it closed.
async fn closed_by_server(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    deadline: Instant,
) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_half_sent_request_line_is_dropped_within_the_header_deadline() {
    let (server, _client) = start_with_deadline().await;
    let started = Instant::now();
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /api/v1/namesp").await.unwrap();
    stream.flush().await.unwrap();
    let deadline = started + HEADER_DEADLINE + Duration::from_secs(3);
    assert!(
        closed_by_server(&mut stream, deadline).await,
        "still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= HEADER_DEADLINE - Duration::from_millis(100));
    let (code, _) = raw(&server, "GET", "/version", "application/json", b"").await;
    assert_eq!(code, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tls_handshake_never_finished_is_dropped_within_the_deadline() {
    let (server, _client) = start_with_deadline().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    // Half a ClientHello record header, then nothing.
    stream.write_all(&[0x16, 0x03]).await.unwrap();
    let deadline = started + HEADER_DEADLINE + Duration::from_secs(3);
    assert!(
        closed_by_server(&mut stream, deadline).await,
        "still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= HEADER_DEADLINE - Duration::from_millis(100));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn plain_http_is_not_served() {
    let (server, _client) = start().await;
    assert!(server.url().starts_with("https://"));
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(
            format!(
                "GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
                bearer(&server)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("APIVersions"),
        "{out:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn headers_sent_byte_by_byte_are_dropped_within_the_header_deadline() {
    let (server, _client) = start_with_deadline().await;
    let started = Instant::now();
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let deadline = started + HEADER_DEADLINE + Duration::from_secs(3);
    let mut buf = [0u8; 512];
    let closed = loop {
        if Instant::now() >= deadline {
            break false;
        }
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break true,
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if stream.write_all(b"a").await.is_err() || stream.flush().await.is_err() {
                    break true;
                }
            }
        }
    };
    assert!(
        closed,
        "a trickling client was kept for {:?}",
        started.elapsed()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn clients_reconnect_after_the_server_closes_idle_connections() {
    let builder = ApiServer::builder().header_read_timeout(Duration::from_millis(200));
    let (server, client) = start_with(builder).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for _ in 0..3 {
        cms.list(&ListParams::default()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    cms.list(&ListParams::default()).await.unwrap();
    server.shutdown().await.unwrap();
}

/// A ConfigMap holding `bytes` bytes of data.
fn large(name: &str, bytes: usize) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"blob": "x".repeat(bytes)}}))
        .expect("configmap")
}

#[tokio::test]
async fn a_client_filling_the_store_is_stopped_at_the_quota_and_the_history_at_its_bytes() {
    const BLOB: usize = 512 * 1024;
    let (server, client) = start_with(
        ApiServer::builder()
            .quota_bytes(3 * 1024 * 1024)
            .watch_history_bytes(2 * 1024 * 1024),
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first_rv = api
        .create(&PostParams::default(), &large("cm-0", BLOB))
        .await
        .expect("first create")
        .metadata
        .resource_version
        .expect("resourceVersion");

    // Creates pass until the stored objects would take more than 3 MiB of JSON.
    let mut created = vec!["cm-0".to_owned()];
    let refused = loop {
        let name = format!("cm-{}", created.len());
        match api
            .create(&PostParams::default(), &large(&name, BLOB))
            .await
        {
            Ok(_) => created.push(name),
            Err(e) => break e,
        }
        assert!(created.len() < 10, "never refused");
    };
    assert!((4..=6).contains(&created.len()), "{created:?}");
    let kube::Error::Api(status) = &refused else {
        panic!("{refused:?}")
    };
    // As kube-apiserver answers when etcd's quota alarm is raised: a 500 with etcd's message.
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (500, "", "etcdserver: mvcc: database space exceeded")
    );

    // Nothing of the refused write was stored; reads pass; growing an object is refused too.
    let mut listed: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .filter(|n| n.starts_with("cm-"))
        .collect();
    listed.sort();
    created.sort();
    assert_eq!(listed, created);
    let grown = api
        .replace("cm-0", &PostParams::default(), &large("cm-0", 2 * BLOB))
        .await
        .expect_err("grown past the quota");
    assert_eq!(api_code(&grown), 500);

    // Rewriting an object of the same size passes, and pushes the oldest versions out of the
    // 2 MiB history: a watch from the first version is told to relist.
    for _ in 0..6 {
        let mut cm = api.get("cm-1").await.expect("get");
        cm.data
            .get_or_insert_default()
            .insert("blob".into(), "y".repeat(BLOB));
        api.replace("cm-1", &PostParams::default(), &cm)
            .await
            .expect("same-size replace");
    }
    let mut watch = Box::pin(
        api.watch(&WatchParams::default().timeout(2), &first_rv)
            .await
            .expect("watch"),
    );
    match watch.try_next().await.expect("watch event") {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }

    // Deleting makes room: the refused create passes now.
    api.delete("cm-0", &DeleteParams::default())
        .await
        .expect("delete");
    api.create(&PostParams::default(), &large("again", BLOB))
        .await
        .expect("create after the delete");
    server.shutdown().await.expect("shutdown");
}
