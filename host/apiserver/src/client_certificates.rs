//! Client-certificate authentication, as kube-apiserver's x509 authenticator
//! (`k8s.io/apiserver/pkg/authentication/request/x509`) does it with `--client-ca-file`: a
//! certificate this server's authority signed for client authentication (checked in the TLS
//! handshake, [`crate::tls`]) authenticates its connection's requests as the user its subject
//! names: the common name is the user name, each organization a group.

use k8s_openapi::api::authentication::v1::UserInfo;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::user;

/// The extra key naming the credential (`authentication.kubernetes.io/credential-id`).
pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// The user a connection's verified client certificate names, and until when (Unix seconds) it
/// does; a request extension. Expiry is checked at each request, as kube-apiserver verifies the
/// chain per request, so a long-lived connection does not outlive its certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateUser {
    /// Who.
    pub user: UserInfo,
    /// The certificate's `notAfter`.
    pub not_after: i64,
}

impl CertificateUser {
    /// The user, while the certificate is valid at `now` (Unix seconds).
    #[must_use]
    pub fn at(&self, now: i64) -> Option<&UserInfo> {
        (now <= self.not_after).then_some(&self.user)
    }
}

/// The user of a verified client certificate (DER): `CommonNameUserConversion`, the subject's
/// common name as the name and its organizations as groups, with `system:authenticated`, and
/// the certificate's SHA-256 as its credential id (`X509SHA256=<hex>`). None
/// when the certificate does not parse or names no one (an empty common name).
#[must_use]
pub fn user(der: &[u8]) -> Option<CertificateUser> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let subject = certificate.subject();
    // Attributes by their decoded OID (`CN` 2.5.4.3, `O` 2.5.4.10), as Go reads them.
    let values = |oid: &'static str| {
        subject
            .iter_attributes()
            .filter(move |a| a.attr_type().to_id_string() == oid)
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
    };
    let name = values("2.5.4.3").next()?;
    if name.is_empty() {
        return None;
    }
    let groups: Vec<String> = values("2.5.4.10").collect();
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der));
    let info = UserInfo {
        username: Some(name),
        groups: (!groups.is_empty()).then_some(groups),
        extra: Some(std::collections::BTreeMap::from([(
            CREDENTIAL_ID.to_owned(),
            vec![format!("X509SHA256={fingerprint}")],
        )])),
        ..UserInfo::default()
    };
    Some(CertificateUser {
        user: user::with_authenticated_group(info),
        not_after: certificate.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn certificate(common_name: &str, organizations: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // rcgen holds one value per attribute type: a second organization goes in under the
        // same OID as a custom type.
        for (i, o) in organizations.iter().enumerate() {
            let kind = if i == 0 {
                DnType::OrganizationName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 10])
            };
            params.distinguished_name.push(kind, *o);
        }
        let key = KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn the_common_name_is_the_user_and_organizations_are_groups() {
        let certified = user(&certificate("jane", &["dev", "ops"])).expect("a user");
        // Past its notAfter the certificate names no one.
        assert!(certified.at(certified.not_after).is_some());
        assert!(certified.at(certified.not_after + 1).is_none());
        let CertificateUser { user: info, .. } = certified;
        assert_eq!(info.username.as_deref(), Some("jane"));
        assert_eq!(
            info.groups.as_deref(),
            Some(
                &[
                    "dev".to_owned(),
                    "ops".to_owned(),
                    user::ALL_AUTHENTICATED.to_owned()
                ][..]
            )
        );
        assert!(user(&certificate("", &["dev"])).is_none());
        assert!(user(b"not a certificate").is_none());
    }
}
