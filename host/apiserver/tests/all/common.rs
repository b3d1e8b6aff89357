//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capstan_apiserver::{ApiServer, RunningServer};
use kube::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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

/// A raw HTTP/1.1 exchange with the server's token; returns the status code and body.
pub async fn raw(
    server: &RunningServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let auth = bearer(server);
    send(
        server,
        method,
        path,
        &[("Content-Type", content_type), ("Authorization", &auth)],
        body,
    )
    .await
}

/// A TLS connection to the server that trusts only its authority.
pub async fn connect(server: &RunningServer) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr()).await.expect("connect");
    let config = server.authority().client_config().expect("tls config");
    let name = rustls::pki_types::ServerName::from(server.addr().ip());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("tls handshake")
}

/// `Bearer TOKEN` for the server.
pub fn bearer(server: &RunningServer) -> String {
    format!("Bearer {}", server.token())
}

/// A raw HTTP/1.1 exchange with exactly `headers` (besides `Host`, `Content-Length` and
/// `Connection: close`); returns the status code and body.
pub async fn send(
    server: &RunningServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (code, _, body) = exchange(server, method, path, headers, body).await;
    (code, body)
}

/// As [`send`], also returning the answer's head (status line and headers).
pub async fn exchange(
    server: &RunningServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = connect(server).await;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
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
        .unwrap_or_else(|| panic!("no status line for {method} {path}: {text:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    (code, head, body)
}

/// The value of header `name` in an answer's head, if present.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The `code` of a kube API error.
pub fn api_code(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// kubectl: `$KUBECTL`, else the first on the PATH; the test fails without it.
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBECTL").map_or_else(
        || {
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
                .expect("kubectl is required by this test: install it, or set KUBECTL")
        },
        PathBuf::from,
    )
}

/// The real kubectl, with a kubeconfig and cache of its own for one server.
pub struct Kubectl {
    /// The binary.
    pub bin: PathBuf,
    /// Its directory: kubeconfig, cache and `HOME`.
    pub dir: tempfile::TempDir,
}

impl Kubectl {
    /// kubectl with a kubeconfig for `server`, in a directory of its own.
    pub fn for_server(server: &capstan_apiserver::RunningServer) -> Self {
        let k = Self {
            bin: kubectl_path(),
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        server
            .write_kubeconfig(&k.dir.path().join("kubeconfig"))
            .expect("write the kubeconfig");
        k
    }

    /// `kubectl ARGS` against the server, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--request-timeout=30s")
            .args(args)
            .env("HOME", self.dir.path());
        cmd
    }

    /// Runs `kubectl ARGS`, which must succeed; returns its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run kubectl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Writes `text` to a file `name` in kubectl's directory; returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write manifest");
        path_str(&path)
    }
}

/// A path as a command-line argument.
pub fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
