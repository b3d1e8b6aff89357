//! Sharded watches: a kube client whose requests carry a KEP-5866 `shardSelector`, so that an
//! informer lists and watches only the objects whose uid hashes into this replica's ranges, and
//! the check whether the API server applies it.
//!
//! A server without the feature ignores the parameter (an unknown query parameter): the informer
//! then caches every object, and the shard gate alone keeps the replica to its share. A list the
//! server did shard echoes the selector in `metadata.shardInfo`, which [`applied`] looks for.

use capstan_apiserver::shard::ShardSelector;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Response = http::Response<kube::client::Body>;

/// `client`, with `shardSelector=<selector>` added to every request.
#[must_use]
pub fn client(client: kube::Client, selector: &ShardSelector) -> kube::Client {
    let namespace = client.default_namespace().to_owned();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("shardSelector", &selector.to_string())
        .finish();
    kube::Client::new(WithSelector { client, query }, namespace)
}

/// Whether the server behind `client` (one made by [`client`]) applies the shard selector to
/// lists of the collection at `path` (e.g. `/apis/examples.capstan.dev/v1alpha1/webapps`).
pub async fn applied(client: &kube::Client, path: &str) -> bool {
    let request = http::Request::get(format!("{path}?limit=1")).body(Vec::new());
    let Ok(request) = request else {
        return false;
    };
    match client.request::<serde_json::Value>(request).await {
        Ok(list) => list["metadata"].get("shardInfo").is_some(),
        Err(_) => false,
    }
}

/// The service behind a sharded client.
#[derive(Clone)]
struct WithSelector {
    client: kube::Client,
    /// `shardSelector=...`, encoded.
    query: String,
}

impl tower::Service<http::Request<kube::client::Body>> for WithSelector {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<kube::client::Body>) -> Self::Future {
        let uri = request.uri();
        let joined = match uri.query() {
            Some(q) if !q.is_empty() => format!("{}?{q}&{}", uri.path(), self.query),
            _ => format!("{}?{}", uri.path(), self.query),
        };
        match joined.parse() {
            Ok(with) => *request.uri_mut() = with,
            Err(e) => return Box::pin(std::future::ready(Err(Box::new(e) as BoxError))),
        }
        let client = self.client.clone();
        Box::pin(async move { client.send(request).await.map_err(Into::into) })
    }
}
