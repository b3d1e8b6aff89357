//! Service account tokens: the TokenRequest API (`serviceaccounts/{name}/token`, what `kubectl
//! create token` calls) issues a JWT the server signs with its service account key (ES256), for
//! the account and optionally bound to one of its namespace's Pods or Secrets; a request that
//! bears one authenticates as the account while the token is current, names this server's
//! audience, and the account (and the bound object) still exist with the uids it was issued for,
//! as kube-apiserver's service account token authenticator checks. The issuer's public key is
//! published as OpenID discovery (`/.well-known/openid-configuration`, `/openid/v1/jwks`), so a
//! relying party can check the tokens offline; with a state directory the key is kept there, so
//! tokens stay valid across restarts.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::authentication::v1::UserInfo;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

use crate::cluster::Inner;
use crate::error::{ApiError, FieldCause};

/// The issuer and API audience of a kind cluster's kube-apiserver (`--service-account-issuer`,
/// and the default `--api-audiences`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// `spec.expirationSeconds` when a request gives none (`TokenRequestSpec`'s default).
const DEFAULT_EXPIRATION: i64 = 3600;
/// The shortest lifetime a token may be asked for.
const MIN_EXPIRATION: i64 = 600;
/// The longest (`1 << 32` seconds).
const MAX_EXPIRATION: i64 = 1 << 32;

/// Where the signing key is kept in a state directory: a PEM `PRIVATE KEY` (PKCS#8, P-256), as
/// kube-apiserver's `--service-account-signing-key-file` takes it.
pub const KEY_FILE: &str = "service-account-key.pem";

/// The OpenID provider configuration's path.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";

/// The path of the key set the configuration points to.
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// Why the signing key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The key pair could not be generated or loaded.
    #[error("cannot make the service account signing key")]
    Key,
    /// The kept key could not be read or written.
    #[error("the service account signing key file {path}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kept key is not a PEM P-256 PKCS#8 private key.
    #[error("{path} does not hold a PEM PKCS#8 P-256 private key")]
    KeyFormat {
        /// The file.
        path: PathBuf,
    },
    /// The signature could not be made.
    #[error("cannot sign a service account token")]
    Sign,
}

/// The server's service account signing key: kept in the state directory when there is one, else
/// made when the server is built (tokens then do not outlive the process).
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    header: String,
    rng: SystemRandom,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// A new P-256 key, and its key id (the SHA-256 of the public key, as kube-apiserver's `kid`
    /// is a hash of the public key).
    ///
    /// # Errors
    /// [`TokenError::Key`] when no key can be generated.
    pub fn generate() -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| TokenError::Key)?;
        Self::from_pkcs8(pkcs8.as_ref(), rng).ok_or(TokenError::Key)
    }

    fn from_pkcs8(pkcs8: &[u8], rng: SystemRandom) -> Option<Self> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).ok()?;
        use sha2::Digest as _;
        let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(key.public_key().as_ref()));
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid}).to_string());
        Some(Self {
            key,
            kid,
            header,
            rng,
        })
    }

    /// The key kept in `state_dir` ([`KEY_FILE`]), made and written there (mode 0600) at the
    /// first start; a new key for each process without a state directory.
    ///
    /// # Errors
    /// [`TokenError::KeyFile`] when the file cannot be read or written, [`TokenError::KeyFormat`]
    /// when it holds something else than a P-256 PKCS#8 key (it is never overwritten).
    pub fn open(state_dir: Option<&Path>) -> Result<Self, TokenError> {
        let Some(dir) = state_dir else {
            return Self::generate();
        };
        let path = dir.join(KEY_FILE);
        let file_error = |source| TokenError::KeyFile {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let format = || TokenError::KeyFormat { path: path.clone() };
                let pem = pem::parse(&bytes).map_err(|_| format())?;
                if pem.tag() != "PRIVATE KEY" {
                    return Err(format());
                }
                Self::from_pkcs8(pem.contents(), SystemRandom::new()).ok_or_else(format)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| TokenError::Key)?;
                let text = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref()));
                crate::persist::write_private(&path, text.as_bytes()).map_err(file_error)?;
                Self::from_pkcs8(pkcs8.as_ref(), rng).ok_or(TokenError::Key)
            }
            Err(error) => Err(file_error(error)),
        }
    }

    /// The public key as a JSON Web Key (RFC 7517; `x` and `y` the point's coordinates), as
    /// kube-apiserver lists it in its key set.
    #[must_use]
    pub fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
        let x = point.get(1..33).unwrap_or_default();
        let y = point.get(33..65).unwrap_or_default();
        json!({"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
    }

    fn sign(&self, claims: &Value) -> Result<String, TokenError> {
        let signed = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signed.as_bytes())
            .map_err(|_| TokenError::Sign)?;
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of `token` when this key signed it (with exactly this key's header); None for
    /// anything else.
    fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || header != self.header {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(
                &token.as_bytes()[..header.len() + 1 + payload.len()],
                &signature,
            )
            .ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

/// The OpenID provider configuration of the service account issuer, served at
/// [`OPENID_CONFIGURATION_PATH`]: its key set is at [`JWKS_PATH`] on this server's address, as
/// kube-apiserver builds `jwks_uri` from its external address (`openIDConfigJSON`).
#[must_use]
pub fn openid_configuration(addr: SocketAddr) -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": format!("https://{addr}{JWKS_PATH}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// The issuer's key set, served at [`JWKS_PATH`] as `application/jwk-set+json`.
#[must_use]
pub fn jwks(signer: &Signer) -> Value {
    json!({"keys": [signer.jwk()]})
}

fn invalid(causes: Vec<FieldCause>) -> ApiError {
    ApiError::Invalid {
        kind: "TokenRequest".into(),
        group: "authentication.k8s.io".into(),
        name: String::new(),
        causes,
    }
}

/// `TokenREST.Create`: a token for the ServiceAccount `namespace/name`, as `request` (a
/// `TokenRequest`) asks, at `now` (Unix seconds). Answers the TokenRequest with its defaults and
/// `status.token` and `status.expirationTimestamp`.
///
/// # Errors
/// 404 for a missing account or bound object, 422 for a lifetime out of bounds or a bound kind
/// other than Pod or Secret, 409 for a bound object of another uid, 500 when signing fails.
pub fn request(
    inner: &Inner,
    signer: &Signer,
    namespace: &str,
    name: &str,
    request: &Value,
    now: i64,
) -> Result<Value, ApiError> {
    let account = inner
        .store
        .get("serviceaccounts", &(namespace.to_owned(), name.to_owned()))
        .ok_or_else(|| ApiError::NotFound {
            resource: "serviceaccounts".into(),
            name: name.to_owned(),
        })?;
    let spec = &request["spec"];
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION,
        v => v.as_i64().unwrap_or(0),
    };
    // `ValidateTokenRequest`.
    if expiration < MIN_EXPIRATION {
        return Err(invalid(vec![FieldCause::invalid_value(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(vec![FieldCause::invalid_value(
            "spec.expirationSeconds",
            &json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    let audiences = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => Value::Array(list.clone()),
        _ => json!([ISSUER]),
    };
    let mut private = json!({
        "namespace": namespace,
        "serviceaccount": {"name": name, "uid": account["metadata"]["uid"]},
    });
    let bound = &spec["boundObjectRef"];
    if !bound.is_null() {
        let kind = bound["kind"].as_str().unwrap_or_default();
        let resource = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            _ => {
                return Err(invalid(vec![FieldCause::not_supported(
                    "spec.boundObjectRef.kind",
                    &bound["kind"],
                    &["Pod", "Secret"],
                )]));
            }
        };
        let bound_name = bound["name"].as_str().unwrap_or_default();
        let object = inner
            .store
            .get(resource, &(namespace.to_owned(), bound_name.to_owned()))
            .ok_or_else(|| ApiError::NotFound {
                resource: resource.into(),
                name: bound_name.to_owned(),
            })?;
        let uid = &object["metadata"]["uid"];
        if let Some(asked) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && uid != asked
        {
            return Err(ApiError::Conflict {
                resource: resource.into(),
                name: bound_name.to_owned(),
                message: format!(
                    "the UID in the bound object reference ({asked}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            });
        }
        let claim = json!({"name": bound_name, "uid": uid});
        if kind == "Pod" {
            private["pod"] = claim;
            // `ServiceAccountTokenPodNodeInfo`: the node the Pod runs on, when it has one.
            if let Some(node) = object["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
                && let Some(node_object) =
                    inner.store.get("nodes", &(String::new(), node.to_owned()))
            {
                private["node"] = json!({"name": node, "uid": node_object["metadata"]["uid"]});
            }
        } else {
            private["secret"] = claim;
        }
    }
    let expires = now + expiration;
    let claims = json!({
        "aud": audiences,
        "exp": expires,
        "iat": now,
        "iss": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": private,
        "nbf": now,
        "sub": crate::user::service_account_username(namespace, name),
    });
    let token = signer
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expiration_timestamp = chrono::DateTime::from_timestamp(expires, 0)
        .map(crate::cluster::timestamp)
        .unwrap_or_default();
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": if bound.is_null() { Value::Null } else { bound.clone() },
        },
        "status": {"token": token, "expirationTimestamp": expiration_timestamp},
    }))
}

/// The user a request bearing `token` authenticates as, at `now` (Unix seconds): the service
/// account, in `system:serviceaccounts` and `system:serviceaccounts:NAMESPACE`, with the token's
/// id and bound Pod and node as `extra`; None unless this server signed the token, it is current,
/// names this server's audience, and its account (and bound object) still exist with their uids.
#[must_use]
pub fn authenticate(inner: &Inner, signer: &Signer, token: &str, now: i64) -> Option<UserInfo> {
    let claims = signer.verify(token)?;
    let time = |key: &str| claims[key].as_i64();
    if claims["iss"] != ISSUER
        || time("nbf")? > now
        || time("exp")? <= now
        || !claims["aud"]
            .as_array()?
            .iter()
            .any(|a| a.as_str() == Some(ISSUER))
    {
        return None;
    }
    let private = &claims["kubernetes.io"];
    let namespace = private["namespace"].as_str()?;
    let account = &private["serviceaccount"];
    let name = account["name"].as_str()?;
    let live = |resource: &str, namespace: &str, claim: &Value| -> Option<()> {
        let object = inner.store.get(
            resource,
            &(namespace.to_owned(), claim["name"].as_str()?.to_owned()),
        )?;
        (object["metadata"]["uid"] == claim["uid"] && !crate::gc::is_deleting(object)).then_some(())
    };
    live("serviceaccounts", namespace, account)?;
    let mut extra = std::collections::BTreeMap::new();
    if let Some(jti) = claims["jti"].as_str() {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("JTI={jti}")],
        );
    }
    if !private["secret"].is_null() {
        live("secrets", namespace, &private["secret"])?;
    }
    let pod = &private["pod"];
    if !pod.is_null() {
        live("pods", namespace, pod)?;
        for (object, key) in [(pod, "pod"), (&private["node"], "node")] {
            for field in ["name", "uid"] {
                if let Some(value) = object[field].as_str() {
                    extra.insert(
                        format!("authentication.kubernetes.io/{key}-{field}"),
                        vec![value.to_owned()],
                    );
                }
            }
        }
    }
    Some(UserInfo {
        username: Some(crate::user::service_account_username(namespace, name)),
        uid: account["uid"].as_str().map(str::to_owned),
        groups: Some(crate::user::service_account_groups(namespace)),
        extra: Some(extra),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_keys_untampered_tokens_verify() {
        let signer = Signer::generate().expect("a key");
        let claims = json!({"sub": "system:serviceaccount:default:bot", "exp": 10});
        let token = signer.sign(&claims).expect("signed");
        assert_eq!(signer.verify(&token), Some(claims));
        let other = Signer::generate().expect("another key");
        assert_eq!(other.verify(&token), None, "another server's key");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] =
            URL_SAFE_NO_PAD.encode(r#"{"sub":"system:serviceaccount:kube-system:admin","exp":10}"#);
        assert_eq!(signer.verify(&parts.join(".")), None, "a changed payload");
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        assert_eq!(
            signer.verify(&format!("{none}.{}.", parts[1])),
            None,
            "an unsigned token"
        );
        assert_eq!(signer.verify(&format!("{token}.x")), None, "four parts");
        assert_eq!(signer.verify("not a token"), None);
    }

    #[test]
    fn a_kept_key_is_read_back_and_what_is_not_a_key_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("a directory");
        let first = Signer::open(Some(dir.path())).expect("a new key");
        let again = Signer::open(Some(dir.path())).expect("the kept key");
        assert_eq!(first.jwk(), again.jwk());
        let claims = json!({"sub": "system:serviceaccount:default:bot"});
        let token = first.sign(&claims).expect("signed");
        assert_eq!(again.verify(&token), Some(claims));
        let jwk = first.jwk();
        for coordinate in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD
                .decode(jwk[coordinate].as_str().expect("a coordinate"))
                .expect("base64url");
            assert_eq!(bytes.len(), 32, "{jwk}");
        }

        let path = dir.path().join(KEY_FILE);
        let refused = |text: &str| {
            std::fs::write(&path, text).expect("written");
            let error = Signer::open(Some(dir.path()))
                .map(|_| ())
                .expect_err("refused");
            assert!(matches!(error, TokenError::KeyFormat { .. }), "{error:?}");
            assert_eq!(std::fs::read_to_string(&path).expect("kept"), text);
        };
        refused("not a key");
        refused(&pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3])));
        refused(&pem::encode(&pem::Pem::new("PRIVATE KEY", vec![0; 40])));

        // A directory where the key should be is not a file to read, nor replaced.
        let other = tempfile::tempdir().expect("a directory");
        std::fs::create_dir(other.path().join(KEY_FILE)).expect("a directory");
        let error = Signer::open(Some(other.path()))
            .map(|_| ())
            .expect_err("refused");
        assert!(matches!(error, TokenError::KeyFile { .. }), "{error:?}");
        assert!(other.path().join(KEY_FILE).is_dir());
    }
}
