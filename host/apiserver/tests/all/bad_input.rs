//! Malformed and unsupported requests get clear errors and change nothing.

use crate::common;

use common::{raw, start};
use serde_json::Value;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn names(server: &capstan_apiserver::RunningServer) -> Vec<String> {
    let (code, body) = raw(server, "GET", CMS, "application/json", b"").await;
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body).expect("list json");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn status(body: &str) -> Value {
    serde_json::from_str(body).expect("status json")
}

#[tokio::test]
async fn bad_requests_are_rejected_and_server_keeps_serving() {
    let (server, _client) = start().await;
    let (code, _) = raw(
        &server,
        "POST",
        CMS,
        "application/json",
        br#"{"metadata":{"name":"good"},"data":{"a":"1"}}"#,
    )
    .await;
    assert_eq!(code, 201);

    let (code, body) = raw(
        &server,
        "POST",
        CMS,
        "application/json",
        br#"{"metadata":{"name":"bad""#,
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(status(&body)["reason"], "BadRequest");
    assert_eq!(status(&body)["kind"], "Status");

    let (code, body) = raw(
        &server,
        "PUT",
        &format!("{CMS}/good"),
        "application/json",
        b"[1,2",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, _) = raw(
        &server,
        "PATCH",
        &format!("{CMS}/good"),
        "application/merge-patch+json",
        b"{nope",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = raw(
        &server,
        "PATCH",
        &format!("{CMS}/good"),
        "application/json-patch+json",
        br#"[{"op":"remove","path":"/nothing"}]"#,
    )
    .await;
    assert_eq!(code, 422);

    let (code, body) = raw(
        &server,
        "GET",
        "/apis/example.com/v1/namespaces/default/gizmos",
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(status(&body)["reason"], "NotFound");

    let (code, body) = raw(&server, "POST", CMS, "text/plain", b"hello").await;
    assert_eq!(code, 415);
    assert_eq!(status(&body)["reason"], "UnsupportedMediaType");
    let (code, _) = raw(
        &server,
        "PATCH",
        &format!("{CMS}/good"),
        "application/xml",
        b"<x/>",
    )
    .await;
    assert_eq!(code, 415);

    let huge = format!(
        r#"{{"metadata":{{"name":"huge"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let (code, body) = raw(&server, "POST", CMS, "application/json", huge.as_bytes()).await;
    assert_eq!(code, 413);
    assert_eq!(status(&body)["reason"], "RequestEntityTooLarge");

    let (code, _) = raw(
        &server,
        "POST",
        &format!("{CMS}/good"),
        "application/json",
        b"{}",
    )
    .await;
    assert_eq!(code, 405);
    let (code, _) = raw(
        &server,
        "GET",
        &format!("{CMS}?labelSelector=a%20in%20b"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = raw(
        &server,
        "GET",
        &format!("{CMS}?continue=%%%"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = raw(
        &server,
        "POST",
        CMS,
        "application/json",
        br#"{"kind":"Secret","metadata":{"name":"k"}}"#,
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = raw(
        &server,
        "POST",
        CMS,
        "application/json",
        br#"{"metadata":{"name":"UPPER"}}"#,
    )
    .await;
    assert_eq!(code, 422);

    // Nothing changed and the server still answers.
    assert_eq!(names(&server).await, ["good"]);
    let (code, body) = raw(
        &server,
        "GET",
        &format!("{CMS}/good"),
        "application/json",
        b"",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(status(&body)["data"]["a"], "1");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn json_patch_and_tables_over_http() {
    let (server, _client) = start().await;
    raw(
        &server,
        "POST",
        CMS,
        "application/json",
        br#"{"metadata":{"name":"p"},"data":{"a":"1"}}"#,
    )
    .await;
    let (code, body) = raw(
        &server,
        "PATCH",
        &format!("{CMS}/p"),
        "application/json-patch+json",
        br#"[{"op":"add","path":"/data/b","value":"2"}]"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(&body)["data"]["b"], "2");
    // Swagger 2.0 as JSON; kubectl's protobuf form is checked by the differential suite (a
    // `kind: List` applied with client-side validation).
    let (code, body) = raw(&server, "GET", "/openapi/v2", "application/json", b"").await;
    assert_eq!(code, 200);
    let doc = status(&body);
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(
        doc["definitions"]["io.k8s.api.core.v1.ConfigMap"]["x-kubernetes-group-version-kind"][0]["kind"],
        "ConfigMap"
    );
    let (code, body) = raw(&server, "GET", "/version", "application/json", b"").await;
    assert_eq!(code, 200);
    assert_eq!(status(&body)["major"], "1");
    server.shutdown().await.unwrap();
}

/// What client-go sends as protobuf: the `k8s\0` prefix, then a `runtime.Unknown` holding the
/// message.
fn protobuf(api_version: &str, kind: &str, raw: Vec<u8>, encoding: &str) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message as _;
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(encoding.into()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn config_map(name: &str) -> Vec<u8> {
    use k8s_pb::api::core::v1::ConfigMap;
    use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use prost::Message as _;
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: Some(name.into()),
            namespace: Some(String::new()),
            ..ObjectMeta::default()
        }),
        data: [("a".to_string(), "1".to_string())].into(),
        binary_data: [("b".to_string(), vec![0, 255])].into(),
        immutable: None,
    }
    .encode_to_vec()
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

#[tokio::test]
async fn protobuf_bodies_are_read_or_refused_clearly() {
    let (server, _client) = start().await;
    let (code, body) = raw(
        &server,
        "POST",
        CMS,
        PROTOBUF,
        &protobuf("v1", "ConfigMap", config_map("pb"), ""),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let created = status(&body);
    assert_eq!(created["data"], serde_json::json!({"a": "1"}));
    assert_eq!(created["binaryData"], serde_json::json!({"b": "AP8="}));
    assert_eq!(created["metadata"]["namespace"], "default");
    // A replace by protobuf.
    let mut replaced = config_map("pb");
    // Field 2 of a ConfigMap is `data`: one more entry `c: 3` (and an unknown field 99, skipped).
    replaced.extend([
        0x12, 0x06, 0x0a, 0x01, b'c', 0x12, 0x01, b'3', 0x98, 0x06, 0x01,
    ]);
    let (code, body) = raw(
        &server,
        "PUT",
        &format!("{CMS}/pb"),
        PROTOBUF,
        &protobuf("v1", "ConfigMap", replaced, ""),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        status(&body)["data"],
        serde_json::json!({"a": "1", "c": "3"})
    );

    let good = protobuf("v1", "ConfigMap", config_map("bad"), "");
    let truncated = &good[..good.len() - 3];
    let mut huge_length = b"k8s\0".to_vec();
    huge_length.extend([0x22, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    let bad: [(&str, Vec<u8>); 7] = [
        ("no prefix", good[4..].to_vec()),
        ("truncated", truncated.to_vec()),
        ("huge length", huge_length),
        (
            "gzip",
            protobuf("v1", "ConfigMap", config_map("bad"), "gzip"),
        ),
        (
            "another kind",
            protobuf("v1", "Secret", config_map("bad"), ""),
        ),
        (
            "unknown kind",
            protobuf("v1", "Nothing", config_map("bad"), ""),
        ),
        (
            "garbage payload",
            protobuf("v1", "ConfigMap", vec![0xff; 16], ""),
        ),
    ];
    for (what, body) in bad {
        let (code, out) = raw(&server, "POST", CMS, PROTOBUF, &body).await;
        assert_eq!(code, 400, "{what}: {out}");
        assert_eq!(status(&out)["reason"], "BadRequest", "{what}");
    }
    assert_eq!(names(&server).await, ["pb"]);

    // Custom resources are never protobuf, as on a cluster.
    let (code, _) = raw(
        &server,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
            "metadata":{"name":"gizmos.example.com"},
            "spec":{"group":"example.com","scope":"Namespaced",
              "names":{"plural":"gizmos","singular":"gizmo","kind":"Gizmo"},
              "versions":[{"name":"v1","served":true,"storage":true,
                "schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#,
    )
    .await;
    assert_eq!(code, 201);
    let (code, out) = raw(
        &server,
        "POST",
        "/apis/example.com/v1/namespaces/default/gizmos",
        PROTOBUF,
        &protobuf("example.com/v1", "Gizmo", Vec::new(), ""),
    )
    .await;
    assert_eq!(code, 415, "{out}");
    assert!(
        !status(&out)["message"]
            .as_str()
            .unwrap()
            .contains("protobuf"),
        "{out}"
    );
}

#[tokio::test]
async fn answers_are_json_and_a_client_that_takes_only_protobuf_is_told_so() {
    let (server, _client) = start().await;
    let auth = common::bearer(&server);
    // What client-go's typed clients send: protobuf first, JSON as the fallback.
    let (code, out) = common::send(
        &server,
        "POST",
        CMS,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", PROTOBUF),
            (
                "Accept",
                "application/vnd.kubernetes.protobuf, application/json",
            ),
        ],
        &protobuf("v1", "ConfigMap", config_map("typed"), ""),
    )
    .await;
    assert_eq!(code, 201, "{out}");
    assert_eq!(status(&out)["metadata"]["name"], "typed");
    let (code, out) = common::send(
        &server,
        "GET",
        &format!("{CMS}/typed"),
        &[("Authorization", auth.as_str()), ("Accept", PROTOBUF)],
        b"",
    )
    .await;
    assert_eq!(code, 406, "{out}");
    assert_eq!(status(&out)["reason"], "NotAcceptable");
}
