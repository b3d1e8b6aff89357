//! CertificateSigningRequests (`certificates.k8s.io/v1`): the registry's strategies for the object,
//! its `/status` and its `/approval` (`pkg/registry/certificates/certificates/strategy.go`),
//! `ValidateCertificateSigningRequest*` (`pkg/apis/certificates/validation`), the
//! `CertificateSubjectRestriction`, `CertificateApproval` and `CertificateSigning` admission
//! plugins, and kube-controller-manager's signers of the `kubernetes.io` signer names
//! (`pkg/controller/certificates/signer`), run with the simulated controllers: an approved request
//! is issued a certificate from the server's authority, which the server then accepts as a client
//! certificate ([`crate::client_certificates`]).

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::UserInfo;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, DnValue, ExtendedKeyUsagePurpose,
    IsCa, KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::{Value, json};
use x509_parser::certification_request::X509CertificationRequest;

use crate::authz::attributes::{Attributes, ResourceRequest};
use crate::authz::{Authorizer, Mode};
use crate::cluster::{Cluster, Inner};
use crate::error::{ApiError, FieldCause};
use crate::resource::ResourceInfo;
use crate::strategy::Change;
use crate::tls::Authority;
use crate::workloads::Writes;

/// The storage resource.
pub const RESOURCE: &str = "certificatesigningrequests.certificates.k8s.io";
/// The API group.
pub const GROUP: &str = "certificates.k8s.io";

/// Signs client certificates the server accepts.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Signs kubelets' client certificates.
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signs kubelets' serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The v1beta1 default, refused by v1.
const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// `certificates.KeyUsage` values, sorted as `field.NotSupported` lists them.
const USAGES: [&str; 23] = [
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// The condition types whose status can only be `True`.
const APPROVAL_TYPES: [&str; 3] = ["Approved", "Denied", "Failed"];

/// Whether `info` is the CertificateSigningRequest resource.
#[must_use]
pub fn is_csr(info: &ResourceInfo) -> bool {
    info.group == GROUP && info.kind == "CertificateSigningRequest"
}

/// `PrepareForCreate`: the requester's identity in the spec (whatever the body said) and an
/// empty status.
pub fn requested_by(object: &mut Value, user: Option<&UserInfo>) {
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        for key in ["username", "uid", "groups", "extra"] {
            spec.remove(key);
        }
        if let Some(user) = user {
            let mut set = |key: &str, value: Value| {
                spec.insert(key.to_owned(), value);
            };
            if let Some(name) = user.username.as_deref().filter(|n| !n.is_empty()) {
                set("username", json!(name));
            }
            if let Some(uid) = user.uid.as_deref().filter(|u| !u.is_empty()) {
                set("uid", json!(uid));
            }
            if let Some(groups) = user.groups.as_ref().filter(|g| !g.is_empty()) {
                set("groups", json!(groups));
            }
            if let Some(extra) = user.extra.as_ref().filter(|e| !e.is_empty()) {
                set("extra", json!(extra));
            }
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
}

fn conditions(object: &Value) -> &[Value] {
    object["status"]["conditions"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn of_type<'a>(object: &'a Value, kind: &str) -> Vec<&'a Value> {
    conditions(object)
        .iter()
        .filter(|c| c["type"] == kind)
        .collect()
}

/// The strategies' `PrepareForUpdate` at `now`: an update of the object keeps the old spec and
/// status; `/status` keeps the spec and the old `Approved` and `Denied` conditions (when as many
/// are sent); `/approval` keeps the spec and the certificate. Condition times are filled in
/// (`populateConditionTimestamps`) on both subresources.
pub(crate) fn prepare_update(old: &Value, object: &mut Value, change: Change, now: &str) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let keep = |map: &mut serde_json::Map<String, Value>, key: &str, value: Option<&Value>| {
        match value {
            Some(v) => map.insert(key.to_owned(), v.clone()),
            None => map.remove(key),
        };
    };
    keep(map, "spec", old.get("spec"));
    match change {
        Change::Object | Change::Binding => keep(map, "status", old.get("status")),
        Change::Status => {
            for kind in ["Approved", "Denied"] {
                let before = of_type(old, kind);
                let positions: Vec<usize> = conditions(object)
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c["type"] == kind)
                    .map(|(i, _)| i)
                    .collect();
                if before.len() == positions.len()
                    && let Some(list) = conditions_mut(object)
                {
                    for (i, kept) in positions.into_iter().zip(before) {
                        list[i] = kept.clone();
                    }
                }
            }
            timestamps(old, object, now);
        }
        Change::Approval => {
            timestamps(old, object, now);
            let conditions = object
                .get_mut("status")
                .and_then(|s| s.get_mut("conditions"))
                .map_or(Value::Null, Value::take);
            let mut status = old.get("status").cloned().unwrap_or_else(|| json!({}));
            if let Some(s) = status.as_object_mut() {
                if conditions.is_null() {
                    s.remove("conditions");
                } else {
                    s.insert("conditions".into(), conditions);
                }
            }
            if let Some(map) = object.as_object_mut() {
                map.insert("status".into(), status);
            }
        }
    }
}

/// The conditions of `object`'s status, when it has a list of them (a body may say anything).
fn conditions_mut(object: &mut Value) -> Option<&mut Vec<Value>> {
    object
        .get_mut("status")?
        .get_mut("conditions")?
        .as_array_mut()
}

/// `populateConditionTimestamps`: a condition without `lastUpdateTime` gets `now`; one without
/// `lastTransitionTime` gets the old one's of the same type and status, else `now`.
fn timestamps(old: &Value, object: &mut Value, now: &str) {
    let Some(list) = conditions_mut(object) else {
        return;
    };
    for condition in list.iter_mut().filter(|c| c.is_object()) {
        if condition["lastUpdateTime"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            condition["lastUpdateTime"] = json!(now);
        }
        if condition["lastTransitionTime"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            let earlier = conditions(old)
                .iter()
                .find(|c| {
                    c["type"] == condition["type"]
                        && c["status"] == condition["status"]
                        && c["lastTransitionTime"]
                            .as_str()
                            .is_some_and(|t| !t.is_empty())
                })
                .map(|c| c["lastTransitionTime"].clone());
            condition["lastTransitionTime"] = earlier.unwrap_or_else(|| json!(now));
        }
    }
}

/// The PEM text of `spec.request` (base64 in JSON), or why it is not a request.
fn request_pem(object: &Value) -> Result<(Vec<u8>, String), String> {
    let bytes = decode(object["spec"]["request"].as_str().unwrap_or_default())
        .ok_or_else(|| "PEM block type must be CERTIFICATE REQUEST".to_owned())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok((bytes, text))
}

/// `certificates.ParseCSR`: `read` of the request in the first PEM block, a `CERTIFICATE
/// REQUEST`.
fn with_request<R>(
    bytes: &[u8],
    read: impl FnOnce(&X509CertificationRequest<'_>) -> Result<R, String>,
) -> Result<R, String> {
    use x509_parser::prelude::FromDer;
    let block = pem::parse(bytes)
        .ok()
        .filter(|b| b.tag() == "CERTIFICATE REQUEST")
        .ok_or_else(|| "PEM block type must be CERTIFICATE REQUEST".to_owned())?;
    let (_, request) = X509CertificationRequest::from_der(block.contents())
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    read(&request)
}

/// `ParseCSR` and `CheckSignature`: a request whose signature holds.
fn parse_request(bytes: &[u8]) -> Result<(), String> {
    with_request(bytes, |request| {
        request
            .verify_signature()
            .map_err(|_| "x509: ECDSA verification failure".to_owned())
    })
}

/// Go's `%#v` of a byte slice: `[]byte{0x2d, 0xa}`.
fn go_bytes(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(|b| format!("0x{b:x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

/// `ValidateSignerName`.
fn signer_name_causes(name: &str, errs: &mut Vec<FieldCause>) {
    const PATH: &str = "spec.signerName";
    if name.is_empty() {
        errs.push(FieldCause::required(PATH, ""));
        return;
    }
    let Some((domain, path)) = name.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        errs.push(FieldCause::invalid(
            PATH,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if domain.len() > 253 {
        errs.push(FieldCause::too_long(PATH, 253));
    }
    {
        let labels: Vec<&str> = domain.split('.').collect();
        for label in &labels {
            if let Err(e) = crate::validation::dns1123_label(label) {
                errs.push(FieldCause::invalid(
                    PATH,
                    domain,
                    format!("validating label {label:?}: {e}"),
                ));
                break;
            }
        }
        if labels.len() < 2 {
            errs.push(FieldCause::invalid(
                PATH,
                domain,
                "should be a domain with at least two segments separated by dots",
            ));
        }
    }
    for label in path.split('.') {
        if let Err(e) = crate::validation::dns1123_subdomain(label) {
            errs.push(FieldCause::invalid(
                PATH,
                path,
                format!("validating label {label:?}: {e}"),
            ));
            break;
        }
    }
    if name.len() > 253 + 253 + 63 + 1 + 1 {
        errs.push(FieldCause::too_long(PATH, 571));
    }
}

/// `validateCertificate`: PEM blocks of `CERTIFICATE`s only, without headers, at least one.
fn certificate_error(bytes: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    if bytes.is_empty() {
        return None;
    }
    // Go's `pem.Decode` stops at a block it cannot read, as if there were none after it.
    let blocks = pem::parse_many(bytes).unwrap_or_default();
    if blocks.is_empty() {
        return Some("must contain at least one CERTIFICATE PEM block".to_owned());
    }
    for block in &blocks {
        if block.tag() != "CERTIFICATE" {
            return Some(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                block.tag()
            ));
        }
        if block.headers().iter().next().is_some() {
            return Some("no PEM block headers are permitted".to_owned());
        }
        if let Err(e) = x509_parser::certificate::X509Certificate::from_der(block.contents()) {
            return Some(format!("x509: malformed certificate: {e}"));
        }
    }
    None
}

/// `ValidateCertificateSigningRequest{Create,Update,StatusUpdate,ApprovalUpdate}` for `change`.
pub(crate) fn validate(
    object: &Value,
    old: Option<&Value>,
    change: Change,
    errs: &mut Vec<FieldCause>,
) {
    let spec = &object["spec"];
    let request = request_pem(object);
    let parsed = request
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|(bytes, _)| parse_request(bytes));
    if let Err(message) = parsed {
        let bytes = request.map(|(bytes, _)| bytes).unwrap_or_default();
        errs.push(FieldCause::invalid_printed(
            "spec.request",
            &go_bytes(&bytes),
            message,
        ));
    }
    let usages = spec["usages"].as_array().map_or(&[][..], Vec::as_slice);
    if usages.is_empty() {
        errs.push(FieldCause::required("spec.usages", ""));
    }
    // Unknown usages first, then repeated ones, as two passes (an unknown repeat is both).
    for (i, usage) in usages.iter().enumerate() {
        if !usage.as_str().is_some_and(|u| USAGES.contains(&u)) {
            errs.push(FieldCause::not_supported(
                &format!("spec.usages[{i}]"),
                usage,
                &USAGES,
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, usage) in usages.iter().enumerate() {
        if !seen.insert(usage.to_string()) {
            errs.push(FieldCause::duplicate(&format!("spec.usages[{i}]"), usage));
        }
    }
    let signer = spec["signerName"].as_str().unwrap_or_default();
    let old_signer = old.and_then(|o| o["spec"]["signerName"].as_str());
    if signer == LEGACY_UNKNOWN {
        if old_signer != Some(LEGACY_UNKNOWN) {
            errs.push(FieldCause::invalid(
                "spec.signerName",
                signer,
                "the legacy signerName is not allowed via this API version",
            ));
        }
    } else {
        signer_name_causes(signer, errs);
    }
    if let Some(seconds) = spec["expirationSeconds"].as_i64()
        && seconds < 600
    {
        errs.push(FieldCause::invalid_value(
            "spec.expirationSeconds",
            &json!(seconds),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    condition_causes(object, old, errs);
    if let Some(old) = old {
        update_causes(object, old, change, errs);
    }
}

fn condition_causes(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let old_has = |kind: &str| old.is_some_and(|o| !of_type(o, kind).is_empty());
    let old_empty_type = old.is_some_and(|o| conditions(o).iter().any(|c| c["type"] == ""));
    // Repeated types are allowed when the old object already had one repeat (of any type).
    let old_repeats = old.is_some_and(|o| {
        let types: Vec<&Value> = conditions(o).iter().map(|c| &c["type"]).collect();
        (1..types.len()).any(|i| types[..i].contains(&types[i]))
    });
    let (mut approved, mut denied) = (false, false);
    let mut seen = std::collections::HashSet::new();
    for (i, condition) in conditions(object).iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        let kind = condition["type"].as_str().unwrap_or_default();
        if kind.is_empty() && !old_empty_type {
            errs.push(FieldCause::required(&format!("{path}.type"), ""));
        }
        let status = condition["status"].as_str().unwrap_or_default();
        if status.is_empty() {
            errs.push(FieldCause::required(&format!("{path}.status"), ""));
        } else if APPROVAL_TYPES.contains(&kind) {
            if status != "True" {
                errs.push(FieldCause::not_supported(
                    &format!("{path}.status"),
                    &json!(status),
                    &["True"],
                ));
            }
        } else if !["False", "True", "Unknown"].contains(&status) {
            errs.push(FieldCause::not_supported(
                &format!("{path}.status"),
                &json!(status),
                &["False", "True", "Unknown"],
            ));
        }
        let both = old_has("Approved") && old_has("Denied");
        match kind {
            "Approved" => {
                approved = true;
                if denied && !both {
                    errs.push(FieldCause::invalid(
                        &format!("{path}.type"),
                        kind,
                        "Approved and Denied conditions are mutually exclusive",
                    ));
                }
            }
            "Denied" => {
                denied = true;
                if approved && !both {
                    errs.push(FieldCause::invalid(
                        &format!("{path}.type"),
                        kind,
                        "Approved and Denied conditions are mutually exclusive",
                    ));
                }
            }
            _ => {}
        }
        if !seen.insert(kind) && !old_repeats {
            errs.push(FieldCause::duplicate(&format!("{path}.type"), &json!(kind)));
        }
    }
    let certificate = object["status"]["certificate"].as_str().unwrap_or_default();
    let old_certificate = old.and_then(|o| o["status"]["certificate"].as_str());
    let old_valid = old_certificate
        .is_none_or(|c| decode(c).is_none_or(|bytes| certificate_error(&bytes).is_none()));
    if Some(certificate) != old_certificate.or(Some("")) && old_valid {
        let message = match decode(certificate) {
            Some(bytes) => certificate_error(&bytes),
            None => Some("must contain at least one CERTIFICATE PEM block".to_owned()),
        };
        if let Some(message) = message {
            errs.push(FieldCause::invalid(
                "status.certificate",
                "<certificate data>",
                message,
            ));
        }
    }
}

fn decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// `validateCertificateSigningRequestUpdate`: approval conditions are never removed, added only
/// through `/approval`; the certificate is set only through `/status`, and once.
fn update_causes(object: &Value, old: &Value, change: Change, errs: &mut Vec<FieldCause>) {
    for kind in APPROVAL_TYPES {
        let (before, after) = (of_type(old, kind).len(), of_type(object, kind).len());
        if after < before {
            errs.push(FieldCause::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {kind:?}"),
            ));
        } else if kind != "Failed" && change != Change::Approval && after > before {
            errs.push(FieldCause::forbidden(
                "status.conditions",
                &format!("updates may not add a condition of type {kind:?}"),
            ));
        }
    }
    let certificate = object["status"]["certificate"].as_str().unwrap_or_default();
    let before = old["status"]["certificate"].as_str().unwrap_or_default();
    if certificate != before {
        let detail = if change != Change::Status {
            "updates may not set certificate content"
        } else if !before.is_empty() {
            "updates may not modify existing certificate content"
        } else {
            return;
        };
        errs.push(FieldCause::forbidden("status.certificate", detail));
    }
}

/// Why a request is refused at admission (a 403) or not issued by a signer.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The apiserver-client signer is asked for the `system:masters` group.
    #[error(
        "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
    )]
    Masters,
    /// The request does not parse (`CertificateSubjectRestriction`).
    #[error("failed to parse CSR: {0}")]
    Unparsable(String),
    /// The signer does not issue what the request asks for: the message of its `Failed`
    /// condition (`SignerValidationFailure`).
    #[error("{0}")]
    Refused(String),
    /// The certificate could not be made (retried at the next pass).
    #[error("error auto signing csr")]
    Sign(#[source] crate::tls::TlsError),
    /// No random serial number could be drawn (retried at the next pass).
    #[error("error auto signing csr: no random serial number")]
    Random(#[source] getrandom::Error),
    /// The validity window is out of the representable range (retried at the next pass).
    #[error("error auto signing csr: validity out of range")]
    Time(#[source] time::error::ComponentRange),
}

/// `CertificateSubjectRestriction`: a request to the apiserver-client signer may not ask for the
/// `system:masters` group.
///
/// # Errors
/// [`CertificateError`].
pub(crate) fn restrict_subject(object: &Value) -> Result<(), CertificateError> {
    if object["spec"]["signerName"] != KUBE_APISERVER_CLIENT {
        return Ok(());
    }
    let (bytes, _) = request_pem(object).map_err(CertificateError::Unparsable)?;
    let subject = subject_of(&bytes).map_err(CertificateError::Unparsable)?;
    if subject.organizations.iter().any(|o| o == "system:masters") {
        return Err(CertificateError::Masters);
    }
    Ok(())
}

/// The OID of a subject's organization (`O`).
const ORGANIZATION_OID: &str = "2.5.4.10";

/// What a request's subject says, read from its DER (every value, repeated ones included).
struct Subject {
    organizations: Vec<String>,
    /// An attribute type (its OID) that appears more than once, if any.
    repeated: Option<String>,
}

fn subject_of(pem_bytes: &[u8]) -> Result<Subject, String> {
    with_request(pem_bytes, |request| {
        let name = &request.certification_request_info.subject;
        // By the decoded OID, not its bytes: an organization whose OID is encoded in a longer form
        // is still one (and rcgen signs it as one).
        let organizations = name
            .iter_attributes()
            .filter(|a| a.attr_type().to_id_string() == ORGANIZATION_OID)
            .map(|a| a.as_str().map(str::to_owned).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        let repeated = name
            .iter_attributes()
            .map(|a| a.attr_type().to_id_string())
            .find(|oid| !seen.insert(oid.clone()));
        Ok(Subject {
            organizations,
            repeated,
        })
    })
}

fn dn_text(value: &DnValue) -> String {
    match value {
        DnValue::PrintableString(s) => s.as_str().to_owned(),
        DnValue::Utf8String(s) => s.clone(),
        DnValue::Ia5String(s) => s.as_str().to_owned(),
        DnValue::TeletexString(s) => s.as_str().to_owned(),
        DnValue::BmpString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        DnValue::UniversalString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    }
}

/// `CertificateApproval` (an `/approval` write needs `approve`) and `CertificateSigning` (a
/// `/status` write that changes the certificate or conditions needs `sign`) on `signers` named
/// by the old request's signer, or its `domain/*`; RBAC decides, always-allow allows.
///
/// # Errors
/// Their 403.
pub(crate) fn admit_signer_verbs(
    inner: &Inner,
    authorizer: Authorizer,
    user: &UserInfo,
    subresource: Option<&str>,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let verb = match subresource {
        Some("approval") => "approve",
        Some("status")
            if new["status"]["certificate"] != old["status"]["certificate"]
                || new["status"]["conditions"] != old["status"]["conditions"] =>
        {
            "sign"
        }
        _ => return Ok(()),
    };
    if authorizer.mode() == Mode::AlwaysAllow {
        return Ok(());
    }
    let signer = old["spec"]["signerName"].as_str().unwrap_or_default();
    let allowed = |name: String| {
        let attributes = Attributes::resource(
            user.clone(),
            verb,
            ResourceRequest {
                group: GROUP.to_owned(),
                version: "*".to_owned(),
                resource: "signers".to_owned(),
                name,
                ..ResourceRequest::default()
            },
        );
        authorizer.decide(inner, &attributes).allowed()
    };
    let domain_wide = signer
        .split_once('/')
        .map(|(domain, _)| format!("{domain}/*"));
    if allowed(signer.to_owned()) || domain_wide.is_some_and(allowed) {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        group: GROUP.to_owned(),
        resource: "certificatesigningrequests".to_owned(),
        name: new["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        message: format!("user not permitted to {verb} requests with signerName {signer:?}"),
    })
}

/// The signers' pass at `now`: every approved request of a `kubernetes.io` signer without a
/// certificate or a failure is issued one, or gets a `Failed` condition saying why not.
pub(crate) fn pass(cluster: &Cluster, authority: &Authority, writes: &mut Writes<'_>) {
    let pending: Vec<Value> = {
        let inner = cluster.lock();
        inner
            .store
            .list(RESOURCE, None, None)
            .map(|(_, o)| o)
            .filter(|o| due(o))
            .map(|o| (**o).clone())
            .collect()
    };
    let now = chrono::Utc::now();
    for request in pending {
        let mut status = request["status"].clone();
        match issue(authority, &request, now) {
            Ok(pem) => {
                status["certificate"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(pem));
            }
            Err(CertificateError::Refused(message)) => {
                let failed = json!({"type": "Failed", "status": "True",
                    "reason": "SignerValidationFailure", "message": message,
                    "lastUpdateTime": crate::cluster::timestamp(now)});
                match status["conditions"].as_array_mut() {
                    Some(list) => list.push(failed),
                    None => status["conditions"] = json!([failed]),
                }
            }
            Err(error) => {
                tracing::warn!(
                    request = request["metadata"]["name"].as_str().unwrap_or_default(),
                    error = %crate::protobuf::error_text(&error),
                    "cannot sign a certificate signing request; retrying at the next pass"
                );
                continue;
            }
        }
        writes.status(RESOURCE, &request, status);
    }
}

/// Approved (and not denied), not failed, not issued, for a signer here.
fn due(request: &Value) -> bool {
    let signer = request["spec"]["signerName"].as_str().unwrap_or_default();
    [KUBE_APISERVER_CLIENT, KUBELET_CLIENT, KUBELET_SERVING].contains(&signer)
        && request["status"]["certificate"]
            .as_str()
            .is_none_or(str::is_empty)
        && !of_type(request, "Approved").is_empty()
        && of_type(request, "Denied").is_empty()
        && of_type(request, "Failed").is_empty()
}

fn usage_set(request: &Value) -> std::collections::BTreeSet<&str> {
    request["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// What the signer of `request`'s signer name checks (`ValidateKubeletServingCSR`,
/// `ValidateKubeletClientCSR`, the client signer's usages).
fn signer_check(request: &Value, csr: &CertificateSigningRequestParams) -> Result<(), String> {
    let signer = request["spec"]["signerName"].as_str().unwrap_or_default();
    let usages = usage_set(request);
    let names = &csr.params.distinguished_name;
    // The organizations as rcgen will sign them, whatever form their OID took in the request.
    let organizations: Vec<String> = names
        .iter()
        .filter(|(k, _)| {
            **k == DnType::OrganizationName || **k == DnType::CustomDnType(vec![2, 5, 4, 10])
        })
        .map(|(_, v)| dn_text(v))
        .collect();
    let common_name = names
        .get(&DnType::CommonName)
        .map(dn_text)
        .unwrap_or_default();
    let sans = &csr.params.subject_alt_names;
    let has = |f: fn(&SanType) -> bool| sans.iter().any(f);
    let set = |items: &[&'static str]| {
        items
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let node_prefix = || {
        common_name
            .starts_with("system:node:")
            .then_some(())
            .ok_or_else(|| "subject common name does not begin with system:node:".to_owned())
    };
    match signer {
        KUBE_APISERVER_CLIENT => {
            // What `CertificateSubjectRestriction` refused at creation, checked again on what
            // is signed.
            if organizations.iter().any(|o| o == "system:masters") {
                return Err(CertificateError::Masters.to_string());
            }
            let in_order = request["spec"]["usages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str);
            for usage in in_order {
                if !["digital signature", "key encipherment", "client auth"].contains(&usage) {
                    return Err(format!("invalid usage for client certificate: {usage}"));
                }
            }
            if !usages.contains("client auth") {
                return Err("missing required usage for client certificate: client auth".into());
            }
            Ok(())
        }
        KUBELET_SERVING => {
            if organizations != ["system:nodes"] {
                return Err("subject organization is not system:nodes".into());
            }
            if !has(|s| matches!(s, SanType::DnsName(_) | SanType::IpAddress(_))) {
                return Err("DNS or IP subjectAltName is required".into());
            }
            if has(|s| matches!(s, SanType::Rfc822Name(_))) {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if has(|s| matches!(s, SanType::URI(_))) {
                return Err("URI subjectAltNames are not allowed".into());
            }
            if usages != set(&["digital signature", "key encipherment", "server auth"])
                && usages != set(&["digital signature", "server auth"])
            {
                return Err(
                    "usages did not match [digital signature key encipherment server auth]".into(),
                );
            }
            node_prefix()
        }
        _ => {
            if organizations != ["system:nodes"] {
                return Err("subject organization is not system:nodes".into());
            }
            for (test, what) in [
                (
                    (|s| matches!(s, SanType::DnsName(_))) as fn(&SanType) -> bool,
                    "DNS",
                ),
                (|s| matches!(s, SanType::Rfc822Name(_)), "Email"),
                (|s| matches!(s, SanType::IpAddress(_)), "IP"),
                (|s| matches!(s, SanType::URI(_)), "URI"),
            ] {
                if has(test) {
                    return Err(format!("{what} subjectAltNames are not allowed"));
                }
            }
            node_prefix()?;
            if usages != set(&["digital signature", "key encipherment", "client auth"])
                && usages != set(&["digital signature", "client auth"])
            {
                return Err(
                    "usages did not match [client auth digital signature key encipherment]".into(),
                );
            }
            Ok(())
        }
    }
}

/// The certificate for `request` (PEM), or the failure's message: the request's subject, names
/// and key, none of its extensions, the usages of its spec, not a CA, valid from five minutes
/// ago for its `expirationSeconds` (at least 10 minutes, at most a year, the signer's
/// `--cluster-signing-duration`).
fn issue(
    authority: &Authority,
    request: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, CertificateError> {
    const YEAR: i64 = 365 * 24 * 3600;
    let (bytes, text) = request_pem(request).map_err(CertificateError::Refused)?;
    // rcgen keeps one value per subject attribute: a subject that repeats one (two
    // organizations) is refused rather than issued with fewer groups than it asked for.
    if let Some(oid) = subject_of(&bytes)
        .map_err(CertificateError::Refused)?
        .repeated
    {
        return Err(CertificateError::Refused(format!(
            "this signer issues subjects with one value per attribute; the request repeats {oid}"
        )));
    }
    // A request rcgen cannot read (an extension other than names, key usages and basic
    // constraints, a signature algorithm it lacks) is refused, not retried forever.
    let csr = CertificateSigningRequestParams::from_pem(&text)
        .map_err(|e| CertificateError::Refused(format!("unable to parse csr: {e}")))?;
    signer_check(request, &csr).map_err(CertificateError::Refused)?;
    let ttl = request["spec"]["expirationSeconds"]
        .as_i64()
        .map_or(YEAR, |s| s.clamp(600, YEAR));
    let backdate = 5 * 60;
    let start = now.timestamp() - backdate;
    let end = if ttl < 8 * 3600 {
        now.timestamp() + ttl
    } else {
        now.timestamp() + ttl - backdate
    };
    let time =
        |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map_err(CertificateError::Time);
    let mut params = CertificateParams::default();
    params.distinguished_name = csr.params.distinguished_name.clone();
    params.subject_alt_names = csr.params.subject_alt_names.clone();
    params.is_ca = IsCa::ExplicitNoCa;
    params.not_before = time(start)?;
    params.not_after = time(end)?;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(CertificateError::Random)?;
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    for usage in usage_set(request) {
        match usage {
            "signing" | "digital signature" => {
                params.key_usages.push(KeyUsagePurpose::DigitalSignature);
            }
            "content commitment" => params.key_usages.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => params.key_usages.push(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => params.key_usages.push(KeyUsagePurpose::DataEncipherment),
            "cert sign" => params.key_usages.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => params.key_usages.push(KeyUsagePurpose::CrlSign),
            "encipher only" => params.key_usages.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => params.key_usages.push(KeyUsagePurpose::DecipherOnly),
            "any" => params.insert_extended_key_usage(ExtendedKeyUsagePurpose::Any),
            "server auth" => params.insert_extended_key_usage(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => params.insert_extended_key_usage(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::CodeSigning);
            }
            "email protection" | "s/mime" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::EmailProtection);
            }
            "timestamping" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::TimeStamping);
            }
            "ocsp signing" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::OcspSigning);
            }
            "ipsec end system" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::Other(vec![
                    1, 3, 6, 1, 5, 5, 7, 3, 5,
                ]))
            }
            "ipsec tunnel" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::Other(vec![
                    1, 3, 6, 1, 5, 5, 7, 3, 6,
                ]))
            }
            "ipsec user" => params.insert_extended_key_usage(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 7,
            ])),
            "microsoft sgc" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::Other(vec![
                    1, 3, 6, 1, 4, 1, 311, 10, 3, 3,
                ]))
            }
            "netscape sgc" => {
                params.insert_extended_key_usage(ExtendedKeyUsagePurpose::Other(vec![
                    2, 16, 840, 1, 113_730, 4, 1,
                ]))
            }
            other => {
                return Err(CertificateError::Refused(format!(
                    "unrecognized usage values: {other:?}"
                )));
            }
        }
    }
    authority
        .sign(&params, &csr.public_key)
        .map_err(CertificateError::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyPair;

    fn request(common_name: &str, organizations: &[&str], signer: &str, usages: &[&str]) -> Value {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for o in organizations {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        let key = KeyPair::generate().expect("key");
        let pem = params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        json!({"metadata": {"name": "r"}, "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "usages": usages}})
    }

    fn causes(object: &Value, old: Option<&Value>, change: Change) -> Vec<String> {
        let mut errs = Vec::new();
        validate(object, old, change, &mut errs);
        errs.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_request_is_validated_as_kubernetes_validates_it() {
        let good = request("jane", &["dev"], KUBE_APISERVER_CLIENT, &["client auth"]);
        assert!(causes(&good, None, Change::Object).is_empty());
        let mut bad = good.clone();
        bad["spec"]["request"] = json!(base64::engine::general_purpose::STANDARD.encode("-\n"));
        bad["spec"]["usages"] = json!(["client auth", "client auth", "flying"]);
        bad["spec"]["signerName"] = json!("example/x");
        bad["spec"]["expirationSeconds"] = json!(60);
        assert_eq!(
            causes(&bad, None, Change::Object),
            [
                "spec.request: Invalid value: []byte{0x2d, 0xa}: PEM block type must be CERTIFICATE REQUEST",
                &format!(
                    "spec.usages[2]: Unsupported value: \"flying\": supported values: {}",
                    USAGES
                        .iter()
                        .map(|u| format!("{u:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "spec.usages[1]: Duplicate value: \"client auth\"",
                "spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots",
                "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
            ]
        );
    }

    #[test]
    fn approval_goes_through_its_subresource_and_the_certificate_through_status() {
        let old = request("jane", &[], KUBE_APISERVER_CLIENT, &["client auth"]);
        let mut approved = old.clone();
        approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        // Through the object or /status an approval is refused; through /approval it is not.
        assert_eq!(
            causes(&approved, Some(&old), Change::Status),
            ["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]
        );
        assert!(causes(&approved, Some(&old), Change::Approval).is_empty());
        let mut both = approved.clone();
        both["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(json!({"type": "Denied", "status": "True"}));
        assert_eq!(
            causes(&both, Some(&approved), Change::Approval),
            [
                "status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
            ]
        );
        // The approval strategy keeps the certificate; /status keeps the approval.
        let mut sneaky = approved.clone();
        sneaky["status"]["certificate"] = json!("Zm9v");
        prepare_update(
            &approved,
            &mut sneaky,
            Change::Approval,
            "2026-01-01T00:00:00Z",
        );
        assert!(sneaky["status"].get("certificate").is_none());
        let mut dropped = approved.clone();
        dropped["status"]["conditions"] = json!([]);
        assert_eq!(
            causes(&dropped, Some(&approved), Change::Status),
            [
                "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""
            ]
        );
    }

    /// A request for `CN=mallory, O=system:masters` with the organization's OID in a
    /// non-canonical encoding, signed with its own P-256 key.
    const NON_CANONICAL_MASTERS: &str = "-----BEGIN CERTIFICATE REQUEST-----\nMIHmMIGOAgEAMCwxEDAOBgNVBAMMB21hbGxvcnkxGDAWBgRVBIAKDA5zeXN0ZW06bWFzdGVyczBZ\nMBMGByqGSM49AgEGCCqGSM49AwEHA0IABL7sojRAa657635/CKEOyJkoDeUuJ14/i55nZMdvhPZc\nl6TJBHpRWJT8izddBD/Fm4nE5Z5B50jBOjLt92VXopmgADAKBggqhkjOPQQDAgNHADBEAiBZnYy9\nFN9MQ1hOnjOoaGZ1sixSmAkpJNv4sqppQijXtAIgUnK4J0izQPuFhfI18qex+JeEV8ZhEb9691BK\nPGvzR2k=\n-----END CERTIFICATE REQUEST-----\n";

    #[test]
    fn the_signers_check_what_they_sign() {
        let authority = Authority::generate().expect("authority");
        let now = chrono::Utc::now();
        let client = request(
            "jane",
            &["dev"],
            KUBE_APISERVER_CLIENT,
            &["client auth", "digital signature"],
        );
        let pem = issue(&authority, &client, now).expect("issued");
        let der = pem::parse(&pem).expect("pem").into_contents();
        let crate::client_certificates::CertificateUser { user, .. } =
            crate::client_certificates::user(&der).expect("a user");
        assert_eq!(user.username.as_deref(), Some("jane"));
        let server = request("jane", &[], KUBE_APISERVER_CLIENT, &["server auth"]);
        assert_eq!(
            issue(&authority, &server, now).unwrap_err().to_string(),
            "invalid usage for client certificate: server auth"
        );
        let kubelet = request(
            "system:node:a",
            &["system:nodes"],
            KUBELET_CLIENT,
            &["client auth"],
        );
        assert_eq!(
            issue(&authority, &kubelet, now).unwrap_err().to_string(),
            "usages did not match [client auth digital signature key encipherment]"
        );
        let masters = request(
            "root",
            &["system:masters"],
            KUBE_APISERVER_CLIENT,
            &["client auth"],
        );
        assert!(matches!(
            restrict_subject(&masters),
            Err(CertificateError::Masters)
        ));
        // The issue happens on what is signed too (defence in depth under admission).
        assert_eq!(
            issue(&authority, &masters, now).unwrap_err().to_string(),
            "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
        );
        // An organization whose OID is written in a longer, non-canonical form (2.5.4.10 as
        // 55 04 80 0A, which OpenSSL and Go refuse and rcgen decodes to an organization) is
        // still seen as system:masters.
        let mut sneaky = masters.clone();
        sneaky["spec"]["request"] =
            json!(base64::engine::general_purpose::STANDARD.encode(NON_CANONICAL_MASTERS));
        assert!(matches!(
            restrict_subject(&sneaky),
            Err(CertificateError::Masters)
        ));
        assert!(issue(&authority, &sneaky, now).is_err());
    }
}
