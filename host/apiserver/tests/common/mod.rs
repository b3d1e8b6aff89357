//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use capstan_apiserver::{ApiServer, RunningServer};
use kube::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts an in-memory server on loopback.
pub async fn start() -> (RunningServer, Client) {
    start_with(ApiServer::builder()).await
}

/// Starts a configured server on loopback.
pub async fn start_with(builder: capstan_apiserver::ApiServerBuilder) -> (RunningServer, Client) {
    let server = builder
        .build()
        .expect("build server")
        .start_loopback()
        .await
        .expect("start server");
    let client = server.client().expect("client");
    (server, client)
}

/// A raw HTTP/1.1 exchange; returns the status code and body.
pub async fn raw(
    server: &RunningServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (413) before reading the whole body; ignore write errors then.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The `code` of a kube API error.
pub fn api_code(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}
