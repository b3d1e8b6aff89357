//! Accepting connections: TLS, then HTTP/1.1 with a deadline on the handshake and on request
//! heads, and a graceful shutdown that lets running requests finish.
//!
//! Connections are served with hyper directly (not `axum::serve`) because that is where the header
//! deadline is set: `http1::Builder::header_read_timeout`, which needs a timer. The deadline runs
//! while the server waits for a request head, so it also closes idle keep-alive connections; clients
//! reconnect. The TLS handshake gets the same deadline. Only HTTP/1.1 is offered (ALPN
//! `http/1.1`): HTTP/2 would need its own deadlines, and kube-rs and kubectl speak HTTP/1.1.

use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Default deadline for a TLS handshake and for a request head (request line and headers): a client
/// that has not finished either this long after connecting, or after its previous response, is
/// disconnected. kube-apiserver's `ReadHeaderTimeout` (32 s, `secure_serving.go`); since hyper
/// also closes idle keep-alive connections at this deadline (kube-apiserver waits 90 s for
/// those), a short one makes clients race the close: a request sent on a pooled connection as the
/// server drops it fails (5 s did, under load, in the host's sharding test).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);

/// Serves `router` on `listener` until `stop` turns true (or its sender is dropped), then stops
/// accepting, lets every connection finish its request and returns when all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    router: axum::Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // Every connection task holds a receiver; `closed()` resolves when the last one is dropped.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let router = router.clone();
        let mut stop = stop.clone();
        let open = open_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(header_read_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            // The user a verified client certificate names goes with each of the connection's
            // requests.
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|certificate| crate::client_certificates::user(certificate));
            let service = TowerToHyperService::new(router.layer(axum::Extension(user)));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

/// Resolves when `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Per-connection accept errors are skipped; others (such as too many open files) are logged and
/// slowed down so that the loop does not spin.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
