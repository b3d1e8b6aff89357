//! HTTP routing: parses Kubernetes API paths and query parameters and dispatches to the verbs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use k8s_openapi::api::authentication::v1::UserInfo;

use crate::auth::{self, Authenticator};
use crate::authz::attributes::{Attributes, NAMESPACE_SUBRESOURCES, is_watch};
use crate::authz::escalation::EscalationCheck;
use crate::authz::{Authorizer, Mode, impersonation};
use crate::cluster::Cluster;
use crate::component_statuses;
use crate::discovery::{self, aggregated};
use crate::error::{ApiError, FieldCause};
use crate::gc::Propagation;
use crate::health;
use crate::logs::LogOptions;
use crate::patch::{PATCH_TYPES, PatchKind};
use crate::path::{self, Segment};
use crate::proto_json;
use crate::protobuf;
use crate::resource::ResourceInfo;
use crate::reviews::{REVIEW_TYPES, Review, Reviewer};
use crate::scale;
use crate::selector::Selector;
use crate::service_account_tokens;
use crate::shard::ShardSelector;
use crate::table::{self, IncludeObject};
use crate::user;
use crate::verbs::{
    DeleteOptions, FieldValidation, ListOptions, ReadAt, Target, Warnings, WriteOptions, present,
};
use crate::watch::{self as watcher, MAX_WATCH_TIMEOUT, WatchParams};

/// Default request body limit (3 MiB, like etcd's default request size).
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Media types accepted for the body of a POST or PUT.
pub const OBJECT_TYPES: &str = "application/json, application/yaml";
/// Media types accepted for the body of a POST or PUT of a built-in kind.
pub const BUILTIN_OBJECT_TYPES: &str =
    "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// State shared by the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The objects.
    pub cluster: Arc<Cluster>,
    /// The bound address (for `/api`).
    pub addr: SocketAddr,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Period of watch bookmarks.
    pub bookmark_interval: Duration,
    /// The bearer tokens requests may carry, and their users.
    pub authenticator: Arc<Authenticator>,
    /// The service account token key: tokens it signed authenticate as their account.
    pub signer: Arc<crate::service_account_tokens::Signer>,
    /// What each user may do.
    pub authorizer: Authorizer,
    /// Whether the server runs the simulated scheduler and controllers (what ComponentStatuses
    /// report).
    pub simulated_controllers: bool,
    /// Flips to true on shutdown, ending watches.
    pub shutdown: watch::Receiver<bool>,
}

/// A JSON response.
pub fn json_response(code: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// An OpenID discovery document, cacheable for an hour as kube-apiserver serves them
/// (`pkg/routes/openidmetadata.go`).
fn openid_response(content_type: &'static str, doc: &Value) -> Response {
    let mut response = json_response(StatusCode::OK, doc);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Parses a query string (`application/x-www-form-urlencoded`: `+` is a space, a `%` not followed
/// by two hex digits is kept as is; of a repeated key, the last value).
#[must_use]
pub fn parse_query(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

struct Query(HashMap<String, String>);

impl Query {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn selector(&self, key: &str) -> Result<Selector, ApiError> {
        Selector::parse(self.get(key).unwrap_or_default())
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    fn label_selector(&self) -> Result<Selector, ApiError> {
        Selector::parse_labels(self.get("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    fn shards(&self) -> Result<ShardSelector, ApiError> {
        ShardSelector::parse(self.get("shardSelector").unwrap_or_default())
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid {key}: {v:?}")))
            })
            .transpose()
    }

    /// `timeoutSeconds`, at most [`MAX_WATCH_TIMEOUT`].
    fn timeout(&self) -> Result<Option<Duration>, ApiError> {
        Ok(self
            .number("timeoutSeconds")?
            .map(|s| Duration::from_secs(s).min(MAX_WATCH_TIMEOUT)))
    }

    /// The field selector, refused when it names a field `info`'s kind cannot be selected by.
    fn fields(&self, info: &ResourceInfo) -> Result<Selector, ApiError> {
        let fields = self.selector("fieldSelector")?;
        crate::selector::check_fields(&fields, info).map_err(ApiError::BadRequest)?;
        if crate::event_versions::is_events_api(info) {
            return Ok(fields.convert_keys(crate::event_versions::field_label));
        }
        Ok(fields)
    }

    fn list_options(&self, info: &ResourceInfo) -> Result<ListOptions, ApiError> {
        // A list ends when it is sent; its timeout is only checked, as kube-apiserver parses it.
        self.timeout()?;
        self.validate_list_options(false)?;
        let continue_token = self.get("continue").map(str::to_string);
        let rv = self.number("resourceVersion")?;
        if continue_token.is_some() && rv.is_some_and(|rv| rv != 0) {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        let read = match (self.get("resourceVersionMatch"), rv) {
            (_, None | Some(0)) => ReadAt::Latest,
            (Some("Exact"), Some(rv)) => ReadAt::Exact(rv),
            (_, Some(rv)) => ReadAt::NotOlderThan(rv),
        };
        Ok(ListOptions {
            labels: self.label_selector()?,
            fields: self.fields(info)?,
            shards: self.shards()?,
            limit: usize::try_from(self.number("limit")?.unwrap_or(0)).unwrap_or(usize::MAX),
            continue_token,
            read,
        })
    }

    /// apimachinery's `ValidateListOptions` (with the WatchList feature on, as in 1.32+): the
    /// combinations of `resourceVersion`, `resourceVersionMatch`, `continue` and
    /// `sendInitialEvents` a list or a watch may not ask for are a 422 on `ListOptions`.
    fn validate_list_options(&self, watch: bool) -> Result<(), ApiError> {
        const FIELD: &str = "resourceVersionMatch";
        let matching = self.get(FIELD);
        let rv = self.get("resourceVersion");
        let continued = self.get("continue").is_some();
        let initial = self.0.contains_key("sendInitialEvents");
        let mut causes = Vec::new();
        if watch {
            if initial && matching != Some("NotOlderThan") {
                causes.push(FieldCause::forbidden(
                    FIELD,
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if let Some(matching) = matching {
                if !initial {
                    causes.push(FieldCause::forbidden(
                        FIELD,
                        "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                    ));
                }
                if matching != "NotOlderThan" {
                    causes.push(FieldCause::not_supported(
                        FIELD,
                        &json!(matching),
                        &["NotOlderThan"],
                    ));
                }
                if continued {
                    causes.push(FieldCause::forbidden(
                        FIELD,
                        "resourceVersionMatch is forbidden when continue is provided",
                    ));
                }
            }
        } else {
            if let Some(matching) = matching {
                if rv.is_none() {
                    causes.push(FieldCause::forbidden(
                        FIELD,
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ));
                }
                if continued {
                    causes.push(FieldCause::forbidden(
                        FIELD,
                        "resourceVersionMatch is forbidden when continue is provided",
                    ));
                }
                if matching != "Exact" && matching != "NotOlderThan" {
                    causes.push(FieldCause::not_supported(
                        FIELD,
                        &json!(matching),
                        &["Exact", "NotOlderThan", ""],
                    ));
                }
                if matching == "Exact" && rv == Some("0") {
                    causes.push(FieldCause::forbidden(
                        FIELD,
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
            }
            if initial {
                causes.push(FieldCause::forbidden(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for list",
                ));
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid {
                kind: "ListOptions".into(),
                group: "meta.k8s.io".into(),
                name: String::new(),
                causes,
            })
        }
    }

    /// Write options; with RBAC on, `requester`'s writes of RBAC objects pass the escalation
    /// check.
    fn write_options_for(
        &self,
        options_kind: &str,
        headers: &HeaderMap,
        requester: Option<(&Authorizer, &UserInfo)>,
    ) -> Result<WriteOptions, ApiError> {
        let manager = match self.get("fieldManager") {
            Some(m) if m.len() > 128 => {
                return Err(ApiError::BadRequest(
                    "fieldManager must be at most 128 characters".into(),
                ));
            }
            Some(m) => m.to_string(),
            None => headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|m| !m.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        let admission = requester
            .filter(|(authorizer, _)| authorizer.mode() == Mode::Rbac)
            .map(|(authorizer, user)| {
                Arc::new(EscalationCheck {
                    user: user.clone(),
                    authorizer: *authorizer,
                }) as Arc<dyn crate::admission::Admission>
            });
        let field_validation =
            FieldValidation::parse(self.get("fieldValidation")).map_err(|value| {
                ApiError::Invalid {
                    kind: options_kind.into(),
                    group: "meta.k8s.io".into(),
                    name: String::new(),
                    causes: vec![FieldCause::not_supported(
                        "fieldValidation",
                        &Value::String(value),
                        &["Ignore", "Warn", "Strict"],
                    )],
                }
            })?;
        Ok(WriteOptions {
            manager,
            dry_run: self.get("dryRun") == Some("All"),
            force: self.flag("force"),
            admission,
            field_validation,
            warnings: Warnings::default(),
            user: requester.map(|(_, user)| user.clone()),
            authorizer: requester.map_or_else(Authorizer::default, |(authorizer, _)| *authorizer),
            subresource_view: None,
        })
    }
}

/// Adds a write's warnings as `Warning: 299 - "text"` headers, as kube-apiserver sends them.
fn with_warnings(response: Response, opts: &WriteOptions) -> Response {
    warning_headers(response, &opts.warnings)
}

/// `componentstatuses` (`src/component_statuses.rs`): get and list only, computed when read, each
/// answer with the type's deprecation warning.
fn component_statuses(
    app: &AppState,
    name: Option<&str>,
    request: &Request,
) -> Result<Response, ApiError> {
    let query = Query(parse_query(request.uri().query().unwrap_or_default()));
    if request.method() != Method::GET || query.flag("watch") {
        return Err(ApiError::MethodNotAllowed);
    }
    let simulated = app.simulated_controllers;
    let (doc, items) = match name {
        Some(name) => {
            Segment::Name.check(name)?;
            let status =
                component_statuses::get(name, simulated).ok_or_else(|| ApiError::NotFound {
                    resource: "componentstatus".into(),
                    name: name.to_owned(),
                })?;
            (status.clone(), vec![status])
        }
        None => {
            let list = component_statuses::list(simulated);
            let items = list["items"].as_array().cloned().unwrap_or_default();
            (list, items)
        }
    };
    let body = if table::wants_table(accept(request.headers())) {
        component_statuses::table(&items)
    } else {
        doc
    };
    let warnings = Warnings::default();
    warnings.push(component_statuses::DEPRECATION_WARNING.into());
    Ok(warning_headers(
        json_response(StatusCode::OK, &body),
        &warnings,
    ))
}

/// Adds `warnings` as `Warning: 299 - "text"` headers.
fn warning_headers(mut response: Response, warnings: &Warnings) -> Response {
    for text in warnings.take() {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = header::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// An aggregated discovery document with its media type and entity tag, or 304 when the client's
/// `If-None-Match` holds that tag (kube-apiserver's `ServeHTTPWithETag`).
fn aggregated_response(doc: &Value, version: aggregated::Version, headers: &HeaderMap) -> Response {
    // Serialized once: the tag is the hash of the bytes sent.
    let json = serde_json::to_vec(doc).unwrap_or_default();
    let tag = aggregated::etag(&json);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes());
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, version.content_type())],
            json,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(tag) = header::HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(header::VARY, header::HeaderValue::from_static("Accept"));
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public"),
    );
    response
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The media type of the body, lowercase, without parameters (empty when none is declared).
fn media_type(headers: &HeaderMap) -> String {
    content_type(headers)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge { limit })
}

/// The media type of a POST or PUT body, checked before the body is read: JSON or YAML, declared
/// (a missing `Content-Type` is refused, not guessed), or Kubernetes protobuf for a built-in
/// kind (`api_version`, `kind`) that has a protobuf message (not custom resources, as on a
/// cluster).
fn object_media_type(
    headers: &HeaderMap,
    api_version: &str,
    kind: &str,
) -> Result<String, ApiError> {
    let media = media_type(headers);
    let protobuf = proto_json::supports(api_version, kind);
    match media.as_str() {
        "application/json" | "application/yaml" => Ok(media),
        protobuf::MEDIA_TYPE if protobuf => Ok(media),
        _ if protobuf => Err(ApiError::UnsupportedMediaType(BUILTIN_OBJECT_TYPES.into())),
        _ => Err(ApiError::UnsupportedMediaType(OBJECT_TYPES.into())),
    }
}

fn decode_object(media: &str, body: &[u8]) -> Result<Value, ApiError> {
    if media == protobuf::MEDIA_TYPE {
        return protobuf::object(body).map_err(|e| ApiError::BadRequest(protobuf::error_text(&e)));
    }
    let value = if media == "application/yaml" {
        crate::patch::decode_yaml(body).map_err(|e| ApiError::BadRequest(e.to_string()))?
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid json: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a json object".into(),
        ));
    }
    Ok(value)
}

/// The single handler for every path: identifies the user ([`identify`]), then routes.
pub async fn handle(State(app): State<AppState>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = match identify(&app, &request) {
        Ok(user) => match route(&app, request, &user).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        },
        Err(error) => error.into_response(),
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed = ?started.elapsed(), "request");
    response
}

/// Who a request acts as, once allowed to do what it asks: authenticated by its connection's
/// client certificate or its bearer token (401 without an accepted one; the health probes need
/// none), then impersonating whom its
/// headers ask (403 unless allowed), then authorized for its verb on its resource or path (403
/// with kube-apiserver's message), as kube-apiserver's filters do in that order.
///
/// # Errors
/// [`ApiError::Unauthorized`], [`ApiError::Forbidden`] and the impersonation errors.
fn identify(app: &AppState, request: &Request) -> Result<UserInfo, ApiError> {
    let method = request.method();
    let path = request.uri().path();
    if auth::is_public(method, path) {
        return Ok(user::anonymous());
    }
    // The union of authenticators, in kube-apiserver's order: the client certificate, then
    // bearer tokens.
    let certified = request
        .extensions()
        .get::<Option<crate::client_certificates::CertificateUser>>()
        .and_then(|c| c.as_ref()?.at(chrono::Utc::now().timestamp()).cloned());
    let user = certified
        .or_else(|| app.authenticator.authenticate(request.headers()))
        .or_else(|| {
            let token = auth::presented(request.headers())?;
            let inner = app.cluster.lock();
            crate::service_account_tokens::authenticate(
                &inner,
                &app.signer,
                token,
                chrono::Utc::now().timestamp(),
            )
            .map(user::with_authenticated_group)
        })
        .ok_or(ApiError::Unauthorized)?;
    let user = impersonation::impersonate(&app.authorizer, &app.cluster, user, request.headers())?;
    if app.authorizer.mode() == Mode::AlwaysAllow {
        return Ok(user);
    }
    let decoded = path::segments(path)?;
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let query = parse_query(request.uri().query().unwrap_or_default());
    let attributes =
        Attributes::from_request(user.clone(), method.as_str(), path, &segments, &|key| {
            query.get(key).cloned()
        });
    app.authorizer.authorize(&app.cluster, &attributes)?;
    Ok(user)
}

async fn route(app: &AppState, request: Request, user: &UserInfo) -> Result<Response, ApiError> {
    let decoded = path::segments(request.uri().path())?;
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let get = request.method() == Method::GET;
    if get && segments == ["openapi", "v2"] {
        let doc = discovery::openapi_v2::document(&app.cluster.lock());
        return Ok(
            if discovery::openapi_v2::wants_protobuf(accept(request.headers())) {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, discovery::openapi_v2::PROTOBUF)],
                    discovery::openapi_v2::protobuf(&doc),
                )
                    .into_response()
            } else {
                json_response(StatusCode::OK, &doc)
            },
        );
    }
    if get && let Some(endpoint) = segments.first().and_then(|s| health::Endpoint::of(s)) {
        let shutting_down = *app.shutdown.borrow();
        if let [_] = segments.as_slice() {
            let query = request.uri().query().unwrap_or_default();
            return Ok(health::answer(endpoint, query, shutting_down));
        }
        // A check's own path (`/readyz/etcd`, `/livez/poststarthook/rbac/bootstrap-roles`).
        if let Some(answer) = health::answer_one(endpoint, &segments[1..].join("/"), shutting_down)
        {
            return Ok(answer);
        }
    }
    if protobuf::accepts_only_protobuf(accept(request.headers())) {
        // Bodies are read as protobuf but answered only as JSON (client-go's typed clients, which
        // send protobuf, also accept JSON).
        return Err(ApiError::NotAcceptable("application/json".into()));
    }
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match segments.as_slice() {
        ["version"] if get => ok(discovery::version()),
        [".well-known", "openid-configuration"] | [".well-known", "openid-configuration", ""]
            if get =>
        {
            let doc = service_account_tokens::openid_configuration(app.addr);
            Ok(openid_response("application/json", &doc))
        }
        ["openid", "v1", "jwks"] | ["openid", "v1", "jwks", ""] if get => {
            let doc = service_account_tokens::jwks(&app.signer);
            Ok(openid_response("application/jwk-set+json", &doc))
        }
        ["api" | "apis"] if get => {
            let core = segments == ["api"];
            match aggregated::negotiate(accept(request.headers())) {
                Some(version) => {
                    let doc = aggregated::document(&app.cluster.lock().registry, core, version);
                    Ok(aggregated_response(&doc, version, request.headers()))
                }
                None if core => ok(discovery::api_versions(app.addr)),
                None => ok(discovery::group_list(&app.cluster.lock().registry)),
            }
        }
        ["api", "v1"] if get => {
            ok(
                discovery::resource_list(&app.cluster.lock().registry, "", "v1")
                    .unwrap_or_default(),
            )
        }
        ["apis", group] if get => {
            Segment::Group.check(group)?;
            discovery::group(&app.cluster.lock().registry, group)
                .map_or(Err(ApiError::UnknownResource), ok)
        }
        ["apis", group, version] if get => {
            Segment::Group.check(group)?;
            Segment::Version.check(version)?;
            discovery::resource_list(&app.cluster.lock().registry, group, version)
                .map_or(Err(ApiError::UnknownResource), ok)
        }
        ["openapi", "v3"] if get => ok(discovery::openapi_v3_index(&app.cluster.lock().registry)),
        ["openapi", "v3", "api", "v1"] if get => {
            discovery::openapi_v3_group(&app.cluster.lock(), "", "v1")
                .map_or(Err(ApiError::UnknownResource), ok)
        }
        ["openapi", "v3", "apis", group, version] if get => {
            Segment::Group.check(group)?;
            Segment::Version.check(version)?;
            discovery::openapi_v3_group(&app.cluster.lock(), group, version)
                .map_or(Err(ApiError::UnknownResource), ok)
        }
        ["api", "v1", "namespaces", namespace, "pods", name, "log"] => {
            Segment::Namespace.check(namespace)?;
            Segment::Name.check(name)?;
            if !get {
                return Err(ApiError::MethodNotAllowed);
            }
            let query = Query(parse_query(request.uri().query().unwrap_or_default()));
            pod_log(app, namespace, name, &query)
        }
        ["api", "v1", "componentstatuses"] => component_statuses(app, None, &request),
        ["api", "v1", "componentstatuses", name] => component_statuses(app, Some(name), &request),
        ["api", "v1", rest @ ..] if !rest.is_empty() => {
            let target = resolve(app, "", "v1", rest)?;
            resource(app, target, request, user).await
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            Segment::Group.check(group)?;
            Segment::Version.check(version)?;
            if let Some((kind, namespace)) = Review::at(group, version, rest) {
                if let Some(ns) = namespace {
                    Segment::Namespace.check(ns)?;
                }
                return review(app, kind, namespace, request, user).await;
            }
            let target = resolve(app, group, version, rest)?;
            resource(app, target, request, user).await
        }
        _ => Err(ApiError::UnknownResource),
    }
}

/// Answers a review (POST only; 201 Created). The body is JSON, YAML or Kubernetes protobuf.
async fn review(
    app: &AppState,
    kind: Review,
    namespace: Option<&str>,
    request: Request,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let (parts, body) = request.into_parts();
    let media = media_type(&parts.headers);
    if !["application/json", "application/yaml", protobuf::MEDIA_TYPE].contains(&media.as_str()) {
        return Err(ApiError::UnsupportedMediaType(REVIEW_TYPES.into()));
    }
    let bytes = read_body(body, &parts.headers, app.max_body_bytes).await?;
    let reviewer = Reviewer {
        authorizer: &app.authorizer,
        cluster: &app.cluster,
        user,
    };
    let answer = reviewer.review(kind, namespace, &media, &bytes)?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// The target of a resource path below `/api/v1` or `/apis/{group}/{version}`. Every segment is
/// checked ([`Segment::check`]) before it is used: an empty name or namespace (`configmaps/`,
/// `namespaces//configmaps`) is refused, never read as a collection. `namespaces/{ns}/{x}` is a
/// resource `x` in namespace `ns` unless `x` is a subresource of a namespace (`status`,
/// `finalize`), as apiserver's request info reads it, so that what is authorized is what is
/// served.
fn resolve(app: &AppState, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let registry = &app.cluster.lock().registry;
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] if !NAMESPACE_SUBRESOURCES.contains(resource) => (
            Some(*ns),
            std::iter::once(*resource)
                .chain(tail.iter().copied())
                .collect::<Vec<_>>(),
        ),
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::UnknownResource),
    };
    Segment::Resource.check(plural)?;
    let info = registry
        .lookup(group, version, plural)
        .ok_or(ApiError::UnknownResource)?;
    if namespace.is_some() && !info.namespaced {
        return Err(ApiError::UnknownResource);
    }
    if let Some(ns) = namespace {
        Segment::Namespace.check(ns)?;
    }
    if let Some(name) = name {
        Segment::Name.check(name)?;
    }
    if let Some(sub) = subresource {
        Segment::Subresource.check(sub)?;
    }
    let (namespace, name, subresource) = (
        namespace.map(str::to_string),
        name.map(str::to_string),
        subresource.map(str::to_string),
    );
    let served = |s: &str| match s {
        "status" => info.status_subresource,
        "scale" => info.scale.is_some(),
        "finalize" => info.group_resource() == crate::resource::NAMESPACE_RESOURCE,
        "binding" | "eviction" => info.group.is_empty() && info.kind == "Pod",
        "token" => info.group.is_empty() && info.kind == "ServiceAccount",
        "approval" => crate::certificates::is_csr(&info),
        _ => false,
    };
    if subresource.as_deref().is_some_and(|s| !served(s)) {
        return Err(ApiError::UnknownResource);
    }
    Ok(Target {
        info,
        namespace,
        name,
        subresource,
    })
}

#[derive(Serialize)]
struct ListOut<'a> {
    kind: &'a str,
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    metadata: Value,
    items: Vec<Cow<'a, Value>>,
}

fn list_meta(rv: u64, continue_token: Option<String>) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = continue_token {
        meta["continue"] = json!(token);
    }
    meta
}

async fn resource(
    app: &AppState,
    target: Target,
    request: Request,
    user: &UserInfo,
) -> Result<Response, ApiError> {
    if let Some(storage) = &target.info.conversion_webhook {
        return Err(crate::custom_resource_definitions::webhook_refusal(
            &target.info,
            storage,
        ));
    }
    let requester = Some((&app.authorizer, user));
    let (parts, body) = request.into_parts();
    let query = Query(parse_query(parts.uri.query().unwrap_or_default()));
    let headers = &parts.headers;
    let cluster = &app.cluster;
    let table = table::wants_table(accept(headers))
        .then(|| IncludeObject::parse(query.get("includeObject")));
    let info = target.info.clone();
    if target.subresource.as_deref() == Some("scale") {
        let bytes = read_body(body, headers, app.max_body_bytes).await?;
        return scale_subresource(cluster, target, &parts.method, headers, &bytes, || {
            query.write_options_for(
                if parts.method == Method::PUT {
                    "UpdateOptions"
                } else {
                    "PatchOptions"
                },
                headers,
                requester,
            )
        });
    }
    match (&parts.method, target.name.is_some()) {
        // The namespace finalize subresource serves update only.
        (&Method::PUT, true) if target.subresource.as_deref() == Some("finalize") => {
            let media = object_media_type(headers, &info.api_version(), &info.kind)?;
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let object = decode_object(&media, &bytes)?;
            let updated = cluster.finalize_namespace(&target, &object)?;
            Ok(json_response(StatusCode::OK, &present(&info, &updated)))
        }
        (_, true) if target.subresource.as_deref() == Some("finalize") => {
            Err(ApiError::MethodNotAllowed)
        }
        // `pods/binding` serves create only: the scheduler's write of a pod's node.
        (&Method::POST, true) if target.subresource.as_deref() == Some("binding") => {
            let media = object_media_type(headers, "v1", "Binding")?;
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let binding = decode_object(&media, &bytes)?;
            let options = query.write_options_for("CreateOptions", headers, requester)?;
            cluster.bind(&target, &binding, &options)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (_, true) if target.subresource.as_deref() == Some("binding") => {
            Err(ApiError::MethodNotAllowed)
        }
        // `pods/eviction` serves create only: `kubectl drain`'s way of deleting a Pod.
        (&Method::POST, true) if target.subresource.as_deref() == Some("eviction") => {
            let media = object_media_type(headers, "policy/v1", "Eviction")?;
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let eviction = decode_object(&media, &bytes)?;
            let options = query.write_options_for("CreateOptions", headers, requester)?;
            let inner = match &eviction["deleteOptions"] {
                Value::Object(_) => serde_json::to_vec(&eviction["deleteOptions"])
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                _ => Vec::new(),
            };
            let delete = delete_options(&Query(HashMap::new()), &inner)?;
            cluster.evict(&target, &eviction, &options, &delete)?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (_, true) if target.subresource.as_deref() == Some("eviction") => {
            Err(ApiError::MethodNotAllowed)
        }
        // `serviceaccounts/token` serves create only: `kubectl create token`.
        (&Method::POST, true) if target.subresource.as_deref() == Some("token") => {
            let media = object_media_type(headers, "authentication.k8s.io/v1", "TokenRequest")?;
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let asked = decode_object(&media, &bytes)?;
            let answer = crate::service_account_tokens::request(
                &cluster.lock(),
                &app.signer,
                target.namespace.as_deref().unwrap_or_default(),
                target.name.as_deref().unwrap_or_default(),
                &asked,
                chrono::Utc::now().timestamp(),
            )?;
            Ok(json_response(StatusCode::CREATED, &answer))
        }
        (_, true) if target.subresource.as_deref() == Some("token") => {
            Err(ApiError::MethodNotAllowed)
        }
        (&Method::GET, false) if is_watch(query.0.get("watch").map(String::as_str)) => {
            query.validate_list_options(true)?;
            let params = WatchParams {
                target,
                labels: query.label_selector()?,
                fields: query.fields(&info)?,
                shards: query.shards()?,
                resource_version: query.number("resourceVersion")?,
                send_initial_events: query.flag("sendInitialEvents"),
                bookmarks: query.flag("allowWatchBookmarks"),
                timeout: query.timeout()?,
                table,
            };
            let stream = watcher::stream(
                cluster.clone(),
                params,
                app.shutdown.clone(),
                app.bookmark_interval,
            );
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream),
            )
                .into_response())
        }
        (&Method::GET, false) => {
            let options = query.list_options(&info)?;
            let page = cluster.list(&target, &options)?;
            let mut meta = list_meta(page.resource_version, page.continue_token);
            if let Some(remaining) = page.remaining_item_count {
                meta["remainingItemCount"] = json!(remaining);
            }
            if !options.shards.is_empty() {
                // KEP-5866: the applied selector is echoed, so a client can tell this server
                // from one that ignored the parameter.
                meta["shardInfo"] = json!({"selector": options.shards.to_string()});
            }
            if let Some(include) = table {
                let objects: Vec<&Value> = page.items.iter().map(AsRef::as_ref).collect();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(&info, &objects, meta, include),
                ));
            }
            let api_version = info.api_version();
            let items = page.items.iter().map(|o| present(&info, o)).collect();
            Ok(json_response(
                StatusCode::OK,
                &ListOut {
                    kind: &info.list_kind,
                    api_version: &api_version,
                    metadata: meta,
                    items,
                },
            ))
        }
        (&Method::GET, true) => {
            let object = cluster.get(&target)?;
            if let Some(include) = table {
                let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(&info, &[object.as_ref()], meta, include),
                ));
            }
            Ok(json_response(StatusCode::OK, &present(&info, &object)))
        }
        (&Method::POST, false) if target.subresource.is_none() => {
            let media = object_media_type(headers, &info.api_version(), &info.kind)?;
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let object = decode_object(&media, &bytes)?;
            let opts = query.write_options_for("CreateOptions", headers, requester)?;
            let created = cluster.create(&target, object, &opts)?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &present(&info, &created)),
                &opts,
            ))
        }
        (&Method::PUT, true) => {
            let media = object_media_type(headers, &info.api_version(), &info.kind)?;
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let object = decode_object(&media, &bytes)?;
            let opts = query.write_options_for("UpdateOptions", headers, requester)?;
            let updated = cluster.update(&target, object, &opts)?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &present(&info, &updated)),
                &opts,
            ))
        }
        (&Method::PATCH, true) => {
            let kind = PatchKind::from_content_type(content_type(headers))
                .ok_or_else(|| ApiError::UnsupportedMediaType(PATCH_TYPES.into()))?;
            if kind == PatchKind::Apply && query.get("fieldManager").is_none() {
                return Err(ApiError::BadRequest(
                    "fieldManager is required for apply requests".into(),
                ));
            }
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let opts = query.write_options_for("PatchOptions", headers, requester)?;
            let (object, created) = cluster.patch(&target, kind, &bytes, &opts)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                json_response(code, &present(&info, &object)),
                &opts,
            ))
        }
        (&Method::DELETE, named) if target.subresource.is_none() => {
            let bytes = read_body(body, headers, app.max_body_bytes).await?;
            let mut opts = delete_options(&query, &bytes)?;
            opts.user = Some(user.clone());
            opts.authorizer = app.authorizer;
            if named {
                let object = cluster.delete(&target, &opts)?;
                return Ok(warning_headers(
                    json_response(StatusCode::OK, &present(&info, &object)),
                    &opts.warnings,
                ));
            }
            let deleted = cluster.delete_collection(&target, &query.list_options(&info)?, &opts)?;
            let items = deleted.iter().map(|o| present(&info, o)).collect();
            let rv = cluster.lock().store.resource_version();
            let out = ListOut {
                kind: &info.list_kind,
                api_version: &info.api_version(),
                metadata: list_meta(rv, None),
                items,
            };
            Ok(json_response(StatusCode::OK, &out))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// `GET`, `PUT` or `PATCH` of a `/scale` subresource: the Scale is built from the object, and a
/// write changes only the object's replicas (a PATCH retries on a conflict, as kube-apiserver's
/// `GuaranteedUpdate` does; a PUT's `resourceVersion` is a precondition).
fn scale_subresource(
    cluster: &Cluster,
    target: Target,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    options: impl Fn() -> Result<WriteOptions, ApiError>,
) -> Result<Response, ApiError> {
    let paths = scale::paths(&target.info)?.clone();
    let object_target = Target {
        subresource: None,
        ..target.clone()
    };
    let name = target.name.clone().unwrap_or_default();
    for _ in 0..3 {
        let object = cluster.get(&object_target)?;
        let current = scale::of(&paths, &object);
        let wanted = match *method {
            Method::GET => return Ok(json_response(StatusCode::OK, &current)),
            Method::PUT => {
                let media = object_media_type(headers, "autoscaling/v1", "Scale")?;
                let asked = decode_object(&media, body)?;
                if let Some(rv) = asked["metadata"]["resourceVersion"].as_str()
                    && Some(rv) != object["metadata"]["resourceVersion"].as_str()
                {
                    return Err(ApiError::Conflict {
                        resource: target.info.group_resource(),
                        name,
                        message: crate::verbs::OPTIMISTIC_LOCK_MESSAGE.to_owned(),
                    });
                }
                asked
            }
            Method::PATCH => {
                let kind = PatchKind::from_content_type(content_type(headers))
                    .filter(|k| *k != PatchKind::Apply)
                    .ok_or_else(|| ApiError::UnsupportedMediaType(PATCH_TYPES.into()))?;
                crate::patch::apply_patch(kind, "Scale", &current, body)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?
            }
            _ => return Err(ApiError::MethodNotAllowed),
        };
        let replicas = scale::wanted_replicas(&wanted, &name)?;
        let scaled = scale::with_replicas(&paths, &object, replicas);
        let mut opts = options()?;
        opts.subresource_view = Some(crate::verbs::SubresourceView {
            subresource: "scale",
            object: scale::of(&paths, &scaled),
            old: current,
        });
        match cluster.update(&object_target, scaled, &opts) {
            Ok(updated) => return Ok(json_response(StatusCode::OK, &scale::of(&paths, &updated))),
            Err(ApiError::Conflict { .. }) if *method == Method::PATCH => {}
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict {
        resource: target.info.group_resource(),
        name,
        message: "the object kept changing while it was scaled; try again".into(),
    })
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log` as `text/plain`; `previous`, `follow`,
/// `timestamps`, `sinceSeconds` and `sinceTime` are ignored (there is one log per container, and
/// it is complete).
fn pod_log(
    app: &AppState,
    namespace: &str,
    pod: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let opts = LogOptions {
        container: query.get("container").map(str::to_string),
        tail_lines: query.number("tailLines")?,
        limit_bytes: query.number("limitBytes")?,
    };
    let body = app.cluster.pod_log(namespace, pod, &opts)?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("the delete options are not valid json: {e}"))
        })?
    };
    let policy = query
        .get("propagationPolicy")
        .or_else(|| body["propagationPolicy"].as_str());
    let orphan = body["orphanDependents"].as_bool();
    let propagation = match (policy, orphan) {
        // `ValidateDeleteOptions`.
        (Some(p), Some(_)) => {
            return Err(ApiError::Invalid {
                kind: "DeleteOptions".into(),
                group: "meta.k8s.io".into(),
                name: String::new(),
                causes: vec![crate::error::FieldCause::invalid(
                    "propagationPolicy",
                    p,
                    "orphanDependents and deletionPropagation cannot be both set",
                )],
            });
        }
        (Some(p), None) => {
            Some(Propagation::parse(p).map_err(|e| ApiError::BadRequest(e.to_string()))?)
        }
        (None, Some(true)) => Some(Propagation::Orphan),
        (None, Some(false)) => Some(Propagation::Background),
        (None, None) => None,
    };
    let dry_run = query.get("dryRun") == Some("All")
        || body["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        propagation,
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run,
        ..DeleteOptions::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&x");
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["x"], "");
        assert_eq!(parse_query("a=%zz%4")["a"], "%zz%4");
    }

    #[test]
    fn watch_timeouts_are_capped_and_must_be_numbers() {
        let timeout = |q: &str| Query(parse_query(q)).timeout();
        assert_eq!(timeout("").unwrap(), None);
        assert_eq!(
            timeout("timeoutSeconds=30").unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            timeout("timeoutSeconds=18446744073709551615").unwrap(),
            Some(MAX_WATCH_TIMEOUT)
        );
        for bad in ["99999999999999999999", "-1", "abc", "1.5"] {
            assert_eq!(
                timeout(&format!("timeoutSeconds={bad}"))
                    .unwrap_err()
                    .code(),
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies_declare_json_or_yaml_or_protobuf_for_built_in_kinds() {
        let with = |ct: &str, api_version: &str, kind: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            object_media_type(&headers, api_version, kind)
        };
        let widget = |ct: &str| with(ct, "example.com/v1", "Widget");
        let deployment = |ct: &str| with(ct, "apps/v1", "Deployment");
        assert_eq!(widget("application/json").unwrap(), "application/json");
        assert_eq!(
            widget("Application/YAML; charset=utf-8").unwrap(),
            "application/yaml"
        );
        assert_eq!(
            deployment("application/vnd.kubernetes.protobuf").unwrap(),
            "application/vnd.kubernetes.protobuf"
        );
        for bad in [
            "",
            "*/*",
            "text/plain",
            "application/vnd.kubernetes.protobuf",
        ] {
            let refused = widget(bad).unwrap_err();
            assert_eq!(refused.code(), 415, "{bad}");
            assert!(!refused.to_string().contains("protobuf"), "{refused}");
        }
        let refused = deployment("text/plain").unwrap_err();
        assert_eq!(refused.code(), 415);
        assert!(refused.to_string().contains("protobuf"), "{refused}");
        assert_eq!(
            object_media_type(&HeaderMap::new(), "v1", "ConfigMap")
                .unwrap_err()
                .code(),
            415
        );
    }

    #[test]
    fn delete_options_parse() {
        let q = Query(parse_query("propagationPolicy=Orphan"));
        assert_eq!(
            delete_options(&q, b"").unwrap().propagation,
            Some(Propagation::Orphan)
        );
        let none = Query(HashMap::new());
        assert_eq!(delete_options(&none, b"").unwrap().propagation, None);
        assert_eq!(
            delete_options(&none, br#"{"orphanDependents":false}"#)
                .unwrap()
                .propagation,
            Some(Propagation::Background)
        );
        let both = delete_options(&q, br#"{"orphanDependents":true}"#).unwrap_err();
        assert_eq!(both.code(), 422);
        assert_eq!(
            both.to_string(),
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Orphan\": \
             orphanDependents and deletionPropagation cannot be both set"
        );
        let q = Query(HashMap::new());
        let opts = delete_options(
            &q,
            br#"{"propagationPolicy":"Foreground","preconditions":{"uid":"u"}}"#,
        )
        .unwrap();
        assert_eq!(opts.propagation, Some(Propagation::Foreground));
        assert_eq!(opts.uid.as_deref(), Some("u"));
        assert!(delete_options(&q, b"{").is_err());
    }
}
