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
    let (code, body) = raw(&server, "GET", "/openapi/v2", "application/json", b"").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = raw(&server, "GET", "/version", "application/json", b"").await;
    assert_eq!(code, 200);
    assert_eq!(status(&body)["major"], "1");
    server.shutdown().await.unwrap();
}
