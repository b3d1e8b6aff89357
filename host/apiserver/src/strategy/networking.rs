//! What Kubernetes' registry strategies do to the `networking.k8s.io/v1` kinds: the defaults of
//! `pkg/apis/networking/v1/defaults.go` and the rules of `pkg/apis/networking/validation` for
//! Ingresses, IngressClasses and NetworkPolicies, with apimachinery's field paths and messages.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::validate::Change;
use crate::cluster::Inner;
use crate::error::FieldCause;
use crate::validation;

/// `supportedPathTypes`, sorted as `sets.String.List()` lists them.
const PATH_TYPES: [&str; 3] = ["Exact", "ImplementationSpecific", "Prefix"];
/// `invalidPathSequences`: what an `Exact` or `Prefix` path may not contain.
const INVALID_PATH_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
/// `invalidPathSuffixes`: what an `Exact` or `Prefix` path may not end with.
const INVALID_PATH_SUFFIXES: [&str; 2] = ["/..", "/."];
/// `maxLenIngressClassController`.
const MAX_CONTROLLER_LENGTH: usize = 250;
/// `annotationIngressClass`: the class an Ingress named before `ingressClassName` existed.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// `wildcardDNS1123SubdomainErrMsg` with its example and pattern, as `RegexError` writes them.
const WILDCARD_MESSAGE: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// IngressClasses' storage key.
const INGRESS_CLASSES: &str = "ingressclasses.networking.k8s.io";
/// The annotation that makes an IngressClass the default one.
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// The `DefaultIngressClass` admission plugin, on an Ingress being created that names no class
/// (neither `ingressClassName` nor the old annotation): it gets the default IngressClass, the
/// newest when several are marked (ties to the first name).
pub(super) fn default_class(inner: &Inner, object: &mut Value) {
    let spec = &object["spec"];
    let annotated = !object["metadata"]["annotations"][CLASS_ANNOTATION].is_null();
    if !spec["ingressClassName"].is_null() || annotated {
        return;
    }
    let newest = inner
        .store
        .list(INGRESS_CLASSES, None, None)
        .map(|(_, class)| class)
        .filter(|class| class["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true")
        .filter_map(|class| {
            let created = class["metadata"]["creationTimestamp"].as_str()?;
            let at = crate::cluster::parse_timestamp(created)?;
            Some((at, class["metadata"]["name"].as_str()?))
        })
        .max_by(|(a, an), (b, bn)| a.cmp(b).then(bn.cmp(an)));
    if let (Some((_, name)), Some(spec)) = (newest, object["spec"].as_object_mut()) {
        spec.insert("ingressClassName".into(), json!(name));
    }
}

/// `SetDefaults_NetworkPolicy`, `SetDefaults_NetworkPolicyPort` and `SetDefaults_IngressClass`.
pub(super) fn defaults(kind: &str, map: &mut Map<String, Value>) {
    let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match kind {
        "NetworkPolicy" => {
            for rules in ["ingress", "egress"] {
                for rule in super::defaults::items(spec, rules) {
                    for port in super::defaults::items(rule, "ports") {
                        if port.get("protocol").is_none_or(Value::is_null) {
                            port.insert("protocol".into(), json!("TCP"));
                        }
                    }
                }
            }
            let types_unset = spec
                .get("policyTypes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if types_unset {
                let egress = spec
                    .get("egress")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty());
                let types = if egress {
                    json!(["Ingress", "Egress"])
                } else {
                    json!(["Ingress"])
                };
                spec.insert("policyTypes".into(), types);
            }
        }
        "IngressClass" => {
            if let Some(parameters) = spec.get_mut("parameters").and_then(Value::as_object_mut)
                && parameters.get("scope").is_none_or(Value::is_null)
            {
                parameters.insert("scope".into(), json!("Cluster"));
            }
        }
        _ => {}
    }
}

/// The field errors of `object` of `kind` (`old` for an update).
pub(super) fn check(
    kind: &str,
    old: Option<&Value>,
    object: &Value,
    change: Change,
    errs: &mut Vec<FieldCause>,
) {
    match (kind, change) {
        ("Ingress", Change::Object) => {
            ingress_spec(&object["spec"], old, errs);
            // `ValidateIngressCreate`: the old annotation and the field agree.
            if old.is_none()
                && let (Some(annotated), Some(named)) = (
                    object["metadata"]["annotations"][CLASS_ANNOTATION].as_str(),
                    object["spec"]["ingressClassName"].as_str(),
                )
                && annotated != named
            {
                errs.push(FieldCause::invalid(
                    &format!("annotations.{CLASS_ANNOTATION}"),
                    annotated,
                    "must match `ingressClassName` when both are specified",
                ));
            }
        }
        ("Ingress", Change::Status) => load_balancer_status(object, old, errs),
        ("IngressClass", Change::Object) => ingress_class(object, old, errs),
        ("NetworkPolicy", Change::Object) => network_policy_spec(&object["spec"], errs),
        _ => {}
    }
}

/// `IsWildcardDNS1123Subdomain`'s and `IsDNS1123Subdomain`'s verdict on a host, by whether it has
/// a `*`.
fn host_errors(host: &str) -> Vec<String> {
    if host.contains('*') {
        let mut errs = Vec::new();
        if host.len() > validation::DNS1123_SUBDOMAIN_MAX_LENGTH {
            errs.push(format!(
                "must be no more than {} characters",
                validation::DNS1123_SUBDOMAIN_MAX_LENGTH
            ));
        }
        let valid = host
            .strip_prefix("*.")
            .is_some_and(|rest| validation::dns1123_subdomain(rest).is_ok());
        if !valid {
            errs.push(WILDCARD_MESSAGE.to_owned());
        }
        errs
    } else {
        subdomain_errors(host)
    }
}

/// `IsDNS1123Subdomain`'s messages (length and pattern are checked apart, as Go does).
fn subdomain_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > validation::DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(format!(
            "must be no more than {} characters",
            validation::DNS1123_SUBDOMAIN_MAX_LENGTH
        ));
    }
    // The pattern alone: labels of lower-case alphanumerics and `-`, alphanumeric at both ends.
    let label = |l: &str| {
        let b = l.as_bytes();
        b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.last()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    if !name.split('.').all(label) {
        errs.push(validation::InvalidIdentifier::NotDns1123Subdomain.to_string());
    }
    errs
}

/// `IsValidPortName`'s messages.
fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

/// `IsValidPortNum`.
fn port_number_ok(port: &Value) -> bool {
    port.as_i64().is_some_and(|n| (1..=65535).contains(&n))
}

/// `ValidateIngressSpec`.
fn ingress_spec(spec: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let rules = spec["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if rules.is_empty() && spec["defaultBackend"].is_null() {
        errs.push(FieldCause::other(
            "spec",
            "Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
        ));
    }
    if !spec["defaultBackend"].is_null() {
        backend(&spec["defaultBackend"], "spec.defaultBackend", errs);
    }
    // `allowInvalidWildcardHostRule`: a stored wildcard rule that was already invalid stays.
    let lenient_wildcards = old.is_some_and(|old| {
        old["spec"]["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| {
                let mut found = Vec::new();
                r["host"].as_str().is_some_and(|h| h.contains('*')) && {
                    rule_value(r, "", &mut found);
                    !found.is_empty()
                }
            })
    });
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        let host = rule["host"].as_str().unwrap_or_default();
        let mut wildcard = false;
        if !host.is_empty() {
            if host.parse::<IpAddr>().is_ok() {
                errs.push(FieldCause::invalid(
                    &format!("{path}.host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            wildcard = host.contains('*');
            for message in host_errors(host) {
                errs.push(FieldCause::invalid(&format!("{path}.host"), host, message));
            }
        }
        if !wildcard || !lenient_wildcards {
            rule_value(rule, &path, errs);
        }
    }
    // `allowInvalidSecretName`: a stored TLS entry whose secret name was already invalid.
    let lenient_secrets = old.is_some_and(|old| {
        old["spec"]["tls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["secretName"].as_str())
            .any(|s| !s.is_empty() && !subdomain_errors(s).is_empty())
    });
    for (i, tls) in spec["tls"].as_array().into_iter().flatten().enumerate() {
        for (j, host) in tls["hosts"].as_array().into_iter().flatten().enumerate() {
            let host = host.as_str().unwrap_or_default();
            for message in host_errors(host) {
                errs.push(FieldCause::invalid(
                    &format!("spec.tls[{i}].hosts[{j}]"),
                    host,
                    message,
                ));
            }
        }
        // `validateTLSSecretName`, unless a stored TLS entry already broke it.
        let secret = tls["secretName"].as_str().unwrap_or_default();
        if !secret.is_empty() && !lenient_secrets {
            for message in subdomain_errors(secret) {
                errs.push(FieldCause::invalid(
                    &format!("spec.tls[{i}].secretName"),
                    secret,
                    message,
                ));
            }
        }
    }
    if let Some(class) = spec["ingressClassName"].as_str() {
        for message in subdomain_errors(class) {
            errs.push(FieldCause::invalid("spec.ingressClassName", class, message));
        }
    }
}

/// `validateIngressRuleValue` and `validateHTTPIngressRuleValue` of the rule at `path`.
fn rule_value(rule: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let http = &rule["http"];
    if http.is_null() {
        return;
    }
    let paths = http["paths"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if paths.is_empty() {
        errs.push(FieldCause::required(&format!("{path}.http.paths"), ""));
    }
    for (i, p) in paths.iter().enumerate() {
        http_path(p, &format!("{path}.http.paths[{i}]"), errs);
    }
}

/// `validateHTTPIngressPath`.
fn http_path(p: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let Some(path_type) = p["pathType"].as_str() else {
        errs.push(FieldCause::required(
            &format!("{path}.pathType"),
            "pathType must be specified",
        ));
        return;
    };
    let text = p["path"].as_str().unwrap_or_default();
    let field = format!("{path}.path");
    match path_type {
        "Exact" | "Prefix" => {
            if !text.starts_with('/') {
                errs.push(FieldCause::invalid(
                    &field,
                    text,
                    "must be an absolute path",
                ));
            }
            if !text.is_empty() {
                for sequence in INVALID_PATH_SEQUENCES {
                    if text.contains(sequence) {
                        errs.push(FieldCause::invalid(
                            &field,
                            text,
                            format!("must not contain '{sequence}'"),
                        ));
                    }
                }
                for suffix in INVALID_PATH_SUFFIXES {
                    if text.ends_with(suffix) {
                        errs.push(FieldCause::invalid(
                            &field,
                            text,
                            format!("cannot end with '{suffix}'"),
                        ));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !text.is_empty() && !text.starts_with('/') {
                errs.push(FieldCause::invalid(
                    &field,
                    text,
                    "must be an absolute path",
                ));
            }
        }
        _ => errs.push(FieldCause::not_supported(
            &format!("{path}.pathType"),
            &p["pathType"],
            &PATH_TYPES,
        )),
    }
    backend(&p["backend"], &format!("{path}.backend"), errs);
}

/// `validateIngressBackend`: a Service (by a DNS-1035 name, and a port by name or number) or a
/// typed reference to a resource, exactly one.
fn backend(backend: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let (service, resource) = (&backend["service"], &backend["resource"]);
    match (!service.is_null(), !resource.is_null()) {
        (true, true) => errs.push(FieldCause::invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (false, true) => typed_reference(resource, &format!("{path}.resource"), errs),
        (true, false) => {
            let name = service["name"].as_str().unwrap_or_default();
            if name.is_empty() {
                errs.push(FieldCause::required(&format!("{path}.service.name"), ""));
            } else if let Err(e) = validation::dns1035_label(name) {
                errs.push(FieldCause::invalid(
                    &format!("{path}.service.name"),
                    name,
                    e,
                ));
            }
            let port = &service["port"];
            let port_name = port["name"].as_str().unwrap_or_default();
            let number = port["number"].as_i64().unwrap_or(0);
            match (!port_name.is_empty(), number != 0) {
                (true, true) => errs.push(FieldCause::invalid(
                    path,
                    "",
                    "cannot set both port name & port number",
                )),
                (true, false) => {
                    for message in port_name_errors(port_name) {
                        errs.push(FieldCause::invalid(
                            &format!("{path}.service.port.name"),
                            port_name,
                            message,
                        ));
                    }
                }
                (false, true) => {
                    if !port_number_ok(&port["number"]) {
                        errs.push(FieldCause::invalid_value(
                            &format!("{path}.service.port.number"),
                            &port["number"],
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
                (false, false) => {
                    errs.push(FieldCause::required(
                        path,
                        "port name or number is required",
                    ));
                }
            }
        }
        (false, false) => errs.push(FieldCause::invalid(
            path,
            "",
            "resource or service backend is required",
        )),
    }
}

/// `validateIngressTypedLocalObjectReference`.
fn typed_reference(reference: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    if let Some(group) = reference["apiGroup"].as_str() {
        for message in subdomain_errors(group) {
            errs.push(FieldCause::invalid(
                &format!("{path}.apiGroup"),
                group,
                message,
            ));
        }
    }
    for key in ["kind", "name"] {
        let value = reference[key].as_str().unwrap_or_default();
        if value.is_empty() {
            errs.push(FieldCause::required(&format!("{path}.{key}"), ""));
        } else if let Err(e) = validation::path_segment(value) {
            errs.push(FieldCause::invalid(&format!("{path}.{key}"), value, e));
        }
    }
}

/// `ValidateIngressLoadBalancerStatus`: each address an IP or a DNS name that is not an IP.
fn load_balancer_status(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let stored: Vec<&str> = old
        .map(|o| &o["status"]["loadBalancer"]["ingress"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str())
        .collect();
    let ingress = object["status"]["loadBalancer"]["ingress"].as_array();
    for (i, entry) in ingress.into_iter().flatten().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        if let Some(ip) = entry["ip"].as_str().filter(|ip| !ip.is_empty())
            && ip.parse::<IpAddr>().is_err()
            && !stored.contains(&ip)
        {
            errs.push(FieldCause::invalid(
                &format!("{path}.ip"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        if let Some(hostname) = entry["hostname"].as_str().filter(|h| !h.is_empty()) {
            for message in subdomain_errors(hostname) {
                errs.push(FieldCause::invalid(
                    &format!("{path}.hostname"),
                    hostname,
                    message,
                ));
            }
            if hostname.parse::<IpAddr>().is_ok() {
                errs.push(FieldCause::invalid(
                    &format!("{path}.hostname"),
                    hostname,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
}

/// `ValidateIngressClass` and `ValidateIngressClassUpdate`.
fn ingress_class(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldCause>) {
    let spec = &object["spec"];
    let controller = spec["controller"].as_str().unwrap_or_default();
    if let Some(old) = old
        && old["spec"]["controller"] != spec["controller"]
    {
        errs.push(FieldCause::invalid(
            "spec.controller",
            controller,
            "field is immutable",
        ));
    }
    if controller.is_empty() {
        errs.push(FieldCause::required("spec.controller", ""));
    } else {
        if controller.len() > MAX_CONTROLLER_LENGTH {
            errs.push(FieldCause::too_long(
                "spec.controller",
                MAX_CONTROLLER_LENGTH,
            ));
        }
        domain_prefixed_path(controller, "spec.controller", errs);
    }
    let parameters = &spec["parameters"];
    if parameters.is_null() {
        return;
    }
    // `validateIngressClassParametersReference`: a typed reference, and its scope.
    let path = "spec.parameters";
    typed_reference(parameters, path, errs);
    let namespace = &parameters["namespace"];
    match parameters["scope"].as_str() {
        None => errs.push(FieldCause::required(&format!("{path}.scope"), "")),
        Some("Namespace") => match namespace.as_str() {
            None => errs.push(FieldCause::required(
                &format!("{path}.namespace"),
                "`parameters.scope` is set to 'Namespace'",
            )),
            Some(ns) => {
                if let Err(e) = validation::dns1123_label(ns) {
                    errs.push(FieldCause::invalid(&format!("{path}.namespace"), ns, e));
                }
            }
        },
        Some("Cluster") => {
            if !namespace.is_null() {
                errs.push(FieldCause::forbidden(
                    &format!("{path}.namespace"),
                    "`parameters.scope` is set to 'Cluster'",
                ));
            }
        }
        Some(_) => errs.push(FieldCause::not_supported(
            &format!("{path}.scope"),
            &parameters["scope"],
            &["Cluster", "Namespace"],
        )),
    }
}

/// `IsDomainPrefixedPath`: `acme.io/foo`, a DNS subdomain, then an HTTP path.
fn domain_prefixed_path(text: &str, path: &str, errs: &mut Vec<FieldCause>) {
    let Some((host, rest)) = text
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        errs.push(FieldCause::invalid(
            path,
            text,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    for message in subdomain_errors(host) {
        errs.push(FieldCause::invalid(path, host, message));
    }
    let http_path = rest
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&c));
    if !http_path {
        errs.push(FieldCause::invalid(
            path,
            rest,
            "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        ));
    }
}

/// `ValidateNetworkPolicySpec`: the Pod selector, ports, peers and policy types.
fn network_policy_spec(spec: &Value, errs: &mut Vec<FieldCause>) {
    super::validate::label_selector(&spec["podSelector"], "spec.podSelector", errs);
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in spec[rules].as_array().into_iter().flatten().enumerate() {
            let path = format!("spec.{rules}[{i}]");
            for (j, port) in rule["ports"].as_array().into_iter().flatten().enumerate() {
                policy_port(port, &format!("{path}.ports[{j}]"), errs);
            }
            for (j, peer) in rule[peers].as_array().into_iter().flatten().enumerate() {
                policy_peer(peer, &format!("{path}.{peers}[{j}]"), errs);
            }
        }
    }
    let types = spec["policyTypes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if types.len() > 2 {
        errs.push(FieldCause::invalid_value(
            "spec.policyTypes",
            &spec["policyTypes"],
            "may not specify more than two policyTypes",
        ));
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            errs.push(FieldCause::not_supported(
                &format!("spec.policyTypes[{i}]"),
                t,
                &["Ingress", "Egress"],
            ));
        }
    }
}

/// `ValidateNetworkPolicyPort`.
fn policy_port(port: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let protocol = &port["protocol"];
    if !protocol.is_null() && !["TCP", "UDP", "SCTP"].iter().any(|p| protocol == p) {
        errs.push(FieldCause::not_supported(
            &format!("{path}.protocol"),
            protocol,
            &["TCP", "UDP", "SCTP"],
        ));
    }
    let end = &port["endPort"];
    match &port["port"] {
        Value::Null => {
            if !end.is_null() {
                errs.push(FieldCause::invalid_value(
                    &format!("{path}.endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
        Value::String(name) => {
            if !end.is_null() {
                errs.push(FieldCause::invalid_value(
                    &format!("{path}.endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for message in port_name_errors(name) {
                errs.push(FieldCause::invalid(&format!("{path}.port"), name, message));
            }
        }
        number => {
            if !port_number_ok(number) {
                errs.push(FieldCause::invalid_value(
                    &format!("{path}.port"),
                    number,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if !end.is_null() {
                if end.as_i64() < number.as_i64() {
                    errs.push(FieldCause::invalid_value(
                        &format!("{path}.endPort"),
                        end,
                        "must be greater than or equal to `port`",
                    ));
                }
                if !port_number_ok(end) {
                    errs.push(FieldCause::invalid_value(
                        &format!("{path}.endPort"),
                        end,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
}

/// `ValidateNetworkPolicyPeer`: one peer, an `ipBlock` alone.
fn policy_peer(peer: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    for key in ["podSelector", "namespaceSelector"] {
        if peer[key].is_object() {
            super::validate::label_selector(&peer[key], &format!("{path}.{key}"), errs);
        }
    }
    let set = |key: &str| !peer[key].is_null();
    let block = set("ipBlock");
    let count = usize::from(set("podSelector"))
        + usize::from(set("namespaceSelector"))
        + usize::from(block);
    if count == 0 {
        errs.push(FieldCause::required(path, "must specify a peer"));
    } else if count > 1 && block {
        errs.push(FieldCause::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
    if block {
        ip_block(&peer["ipBlock"], &format!("{path}.ipBlock"), errs);
    }
}

/// A CIDR as `netutils.ParseCIDRSloppy` reads it: the address and the prefix length.
fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, bits) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((address, bits))
}

/// Whether `inner` lies inside `outer` with a longer prefix.
fn strict_subset((outer, outer_bits): (IpAddr, u8), (inner, inner_bits): (IpAddr, u8)) -> bool {
    let masked = |ip: IpAddr, bits: u8| -> u128 {
        let (value, width) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let shift = u32::from(width - bits.min(width));
        if shift >= 128 { 0 } else { value >> shift }
    };
    outer.is_ipv4() == inner.is_ipv4()
        && inner_bits > outer_bits
        && masked(inner, outer_bits) == masked(outer, outer_bits)
}

/// `ValidateIPBlock`: a CIDR, and exceptions strictly inside it.
fn ip_block(block: &Value, path: &str, errs: &mut Vec<FieldCause>) {
    let cidr = block["cidr"].as_str().unwrap_or_default();
    if cidr.is_empty() {
        errs.push(FieldCause::required(&format!("{path}.cidr"), ""));
        return;
    }
    let Some(outer) = parse_cidr(cidr) else {
        errs.push(FieldCause::invalid(
            &format!("{path}.cidr"),
            cidr,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
        return;
    };
    for (i, except) in block["except"].as_array().into_iter().flatten().enumerate() {
        let text = except.as_str().unwrap_or_default();
        let field = format!("{path}.except[{i}]");
        match parse_cidr(text) {
            None => errs.push(FieldCause::invalid(
                &field,
                text,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )),
            Some(inner) if !strict_subset(outer, inner) => {
                errs.push(FieldCause::invalid(
                    &field,
                    text,
                    "must be a strict subset of `cidr`",
                ));
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(kind: &str, object: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        check(kind, None, object, Change::Object, &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_ingress_needs_rules_or_a_default_backend_and_well_formed_paths() {
        assert_eq!(
            errors("Ingress", &json!({"spec": {}})),
            [
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
            ]
        );
        let ingress = json!({"spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
            {"path": "/a", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "a//b", "pathType": "Exact", "backend": {"service": {"name": "Web", "port": {"name": "http", "number": 80}}}},
            {"path": "/x", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/y", "pathType": "Regex", "backend": {}}
        ]}}, {"host": "10.0.0.1"}]}});
        assert_eq!(
            errors("Ingress", &ingress),
            [
                "spec.rules[0].http.paths[1].path: Invalid value: \"a//b\": must be an absolute path",
                "spec.rules[0].http.paths[1].path: Invalid value: \"a//b\": must not contain '//'",
                "spec.rules[0].http.paths[1].backend.service.name: Invalid value: \"Web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                "spec.rules[0].http.paths[1].backend: Invalid value: \"\": cannot set both port name & port number",
                "spec.rules[0].http.paths[2].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[3].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[3].backend: Invalid value: \"\": resource or service backend is required",
                "spec.rules[1].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            ]
        );
        assert_eq!(
            errors(
                "Ingress",
                &json!({"spec": {"rules": [{"host": "a.*.com"}]}})
            ),
            [format!(
                "spec.rules[0].host: Invalid value: \"a.*.com\": {WILDCARD_MESSAGE}"
            )]
        );
    }

    #[test]
    fn network_policies_default_their_types_and_protocols_and_check_peers() {
        let mut policy =
            json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        defaults("NetworkPolicy", policy.as_object_mut().unwrap());
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(policy["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let bad = json!({"spec": {"ingress": [{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "11.0.0.0/16", "10.0.0.0/8"]}, "podSelector": {}}],
            "ports": [{"port": "http", "endPort": 90}, {"port": 80, "endPort": 70}]}], "policyTypes": ["Ingress", "Sideways"]}});
        assert_eq!(
            errors("NetworkPolicy", &bad),
            [
                "spec.ingress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
                "spec.ingress[0].ports[1].endPort: Invalid value: 70: must be greater than or equal to `port`",
                "spec.ingress[0].from[0]: Required value: must specify a peer",
                "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
                "spec.ingress[0].from[1].ipBlock.except[1]: Invalid value: \"11.0.0.0/16\": must be a strict subset of `cidr`",
                "spec.ingress[0].from[1].ipBlock.except[2]: Invalid value: \"10.0.0.0/8\": must be a strict subset of `cidr`",
                "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\"",
            ]
        );
    }

    #[test]
    fn an_ingress_class_names_its_controller_by_a_domain_prefixed_path() {
        let mut class = json!({"spec": {"controller": "example.com/ingress",
            "parameters": {"kind": "Params", "name": "p"}}});
        defaults("IngressClass", class.as_object_mut().unwrap());
        assert_eq!(class["spec"]["parameters"]["scope"], "Cluster");
        assert!(errors("IngressClass", &class).is_empty());
        assert_eq!(
            errors("IngressClass", &json!({"spec": {"controller": "nginx"}})),
            [
                "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"
            ]
        );
        let mut errs = Vec::new();
        let changed = json!({"spec": {"controller": "example.com/other"}});
        check(
            "IngressClass",
            Some(&class),
            &changed,
            Change::Object,
            &mut errs,
        );
        assert_eq!(
            errs[0].to_string(),
            "spec.controller: Invalid value: \"example.com/other\": field is immutable"
        );
    }
}
