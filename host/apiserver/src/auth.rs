//! Bearer-token authentication: the random token the server makes when it is built, the static
//! token users added to it (kube-apiserver's `--token-auth-file`), and the check every request but
//! the health probes passes (`Authorization: Bearer <token>`, as kube-apiserver's static-token
//! authenticator reads it).

use std::fmt;

use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::UserInfo;
use subtle::ConstantTimeEq as _;

use crate::user;

/// Random bytes in a generated token (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// Paths answered without credentials (GET only), with their sub-paths: the health probes.
pub const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];

/// A token cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The operating system's random source failed.
    #[error("reading the operating system's random source")]
    Random(#[source] getrandom::Error),
    /// A given token is empty.
    #[error("a bearer token must not be empty")]
    Empty,
    /// A given token has a character a bearer token may not carry (RFC 6750 `b64token`).
    #[error(
        "a bearer token may only contain ASCII letters, digits and '-', '.', '_', '~', '+', '/', '='"
    )]
    Character,
}

/// The server's bearer token. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// A new token: [`TOKEN_BYTES`] bytes from the operating system's CSPRNG, base64url-encoded.
    ///
    /// # Errors
    /// [`TokenError::Random`] when the random source fails.
    pub fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
        Ok(Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        ))
    }

    /// A token chosen by the caller (for example to keep one across restarts on the same state).
    ///
    /// # Errors
    /// [`TokenError`] when it is empty or is not an RFC 6750 `b64token`.
    pub fn new(token: impl Into<String>) -> Result<Self, TokenError> {
        let token = token.into();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
        if !token.chars().all(allowed) {
            return Err(TokenError::Character);
        }
        Ok(Self(token))
    }

    /// The token text, for a kubeconfig or an `Authorization` header.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`. The scheme is matched without
    /// regard to case and the token in constant time, as kube-apiserver does.
    #[must_use]
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        presented(headers).is_some_and(|token| self.matches(token))
    }

    fn matches(&self, token: &str) -> bool {
        bool::from(token.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any case), if there is one.
pub(crate) fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let mut parts = value.splitn(3, ' ');
    let (Some(scheme), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The bearer tokens the server accepts and the user each authenticates as: the server's own token
/// (first, user [`user::ADMIN`] in `system:masters`) and any static token users. `Debug` shows the
/// users, not the tokens.
#[derive(Clone)]
pub struct Authenticator {
    entries: Vec<(BearerToken, UserInfo)>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(_, u)| user::name(u)))
            .finish()
    }
}

impl Authenticator {
    /// Accepts `admin` as the server's token ([`user::admin`]).
    #[must_use]
    pub fn new(admin: BearerToken) -> Self {
        Self {
            entries: vec![(admin, user::admin())],
        }
    }

    /// Also accepts `token` as `user`. A token already accepted keeps its first user (the
    /// server's own token always stays the admin's).
    pub fn add(&mut self, token: BearerToken, user: UserInfo) {
        if self.entries.iter().any(|(t, _)| t == &token) {
            tracing::warn!(
                user = user::name(&user),
                "a static token repeats one already accepted; ignored"
            );
            return;
        }
        self.entries.push((token, user));
    }

    /// The user `headers` authenticate as, with `system:authenticated` added (kube-apiserver's
    /// `AuthenticatedGroupAdder`); None without a bearer token or with one not accepted. Every
    /// accepted token is compared, each in constant time.
    #[must_use]
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<UserInfo> {
        let token = presented(headers)?;
        let mut found = None;
        for (accepted, user) in &self.entries {
            if accepted.matches(token) && found.is_none() {
                found = Some(user);
            }
        }
        found.cloned().map(user::with_authenticated_group)
    }
}

/// Whether a request is answered without credentials: `GET` of a health probe or one of its
/// sub-paths (`/readyz/ping`).
#[must_use]
pub fn is_public(method: &Method, path: &str) -> bool {
    method == Method::GET
        && PUBLIC_PATHS.iter().any(|p| {
            path.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header value"),
        );
        headers
    }

    #[test]
    fn generated_tokens_are_long_and_distinct() {
        let a = BearerToken::generate().expect("token");
        let b = BearerToken::generate().expect("token");
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43, "32 bytes in unpadded base64");
        assert!(BearerToken::new(a.as_str()).is_ok());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn only_the_exact_bearer_token_authorizes() {
        let token = BearerToken::new("s3cret").expect("token");
        assert!(token.authorizes(&with("Bearer s3cret")));
        assert!(token.authorizes(&with("bearer s3cret")));
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer  s3cret",
            "Bearer s3cret x",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert!(!token.authorizes(&with(bad)), "{bad}");
        }
        assert!(!token.authorizes(&HeaderMap::new()));
    }

    #[test]
    fn static_users_authenticate_with_their_groups() {
        let mut auth = Authenticator::new(BearerToken::new("admin-t").expect("token"));
        auth.add(
            BearerToken::new("bob-t").expect("token"),
            user::named("bob", &["dev"]),
        );
        auth.add(
            BearerToken::new("admin-t").expect("token"),
            user::named("mallory", &[]),
        );
        let admin = auth.authenticate(&with("Bearer admin-t")).expect("admin");
        assert_eq!(user::name(&admin), user::ADMIN);
        assert!(user::in_group(&admin, user::SYSTEM_MASTERS));
        let bob = auth.authenticate(&with("bearer bob-t")).expect("bob");
        assert_eq!(user::groups(&bob), ["dev", user::ALL_AUTHENTICATED]);
        for bad in ["Bearer bob", "Bearer bob-t2", "Basic bob-t", "Bearer "] {
            assert!(auth.authenticate(&with(bad)).is_none(), "{bad}");
        }
        assert!(!format!("{auth:?}").contains("bob-t"));
    }

    #[test]
    fn given_tokens_are_checked() {
        assert!(matches!(BearerToken::new(""), Err(TokenError::Empty)));
        assert!(matches!(
            BearerToken::new("a b"),
            Err(TokenError::Character)
        ));
        assert!(matches!(
            BearerToken::new("a\"b"),
            Err(TokenError::Character)
        ));
    }

    #[test]
    fn health_probes_are_public() {
        for path in ["/healthz", "/livez", "/readyz", "/readyz/ping"] {
            assert!(is_public(&Method::GET, path), "{path}");
        }
        assert!(!is_public(&Method::POST, "/healthz"));
        for path in ["/healthzz", "/version", "/api", "/", "/api/v1/healthz"] {
            assert!(!is_public(&Method::GET, path), "{path}");
        }
    }
}
