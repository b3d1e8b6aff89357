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

/// The user a connection's verified client certificate names; a request extension.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateUser(pub UserInfo);

/// The user of a verified client certificate (DER): `CommonNameUserConversion`, the subject's
/// common name as the name and its organizations as groups, with `system:authenticated`, and
/// the certificate's SHA-256 as its credential id (`X509SHA256=<hex>`). None
/// when the certificate does not parse or names no one (an empty common name).
#[must_use]
pub fn user(der: &[u8]) -> Option<CertificateUser> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let subject = certificate.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    if name.is_empty() {
        return None;
    }
    let groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der));
    let info = UserInfo {
        username: Some(name.to_owned()),
        groups: (!groups.is_empty()).then_some(groups),
        extra: Some(std::collections::BTreeMap::from([(
            CREDENTIAL_ID.to_owned(),
            vec![format!("X509SHA256={fingerprint}")],
        )])),
        ..UserInfo::default()
    };
    Some(CertificateUser(user::with_authenticated_group(info)))
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
        let CertificateUser(info) = user(&certificate("jane", &["dev", "ops"])).expect("a user");
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
