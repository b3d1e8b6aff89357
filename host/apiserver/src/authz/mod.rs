//! Authorization: what an authenticated request may do. Off by default (`always-allow`: every
//! authenticated request is allowed, as before); with `rbac` the server authorizes as
//! kube-apiserver's RBAC authorizer does, members of `system:masters` excepted.

pub mod aggregation;
pub mod attributes;
pub mod bootstrap;
pub mod escalation;
pub mod impersonation;
pub mod rbac;

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{NonResourceRule, ResourceRule};

use crate::cluster::{Cluster, Inner};
use crate::error::ApiError;
use crate::user;
use attributes::Attributes;

/// An authorization mode that is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown authorization mode {0:?}: expected always-allow or rbac")]
pub struct UnknownMode(String);

/// How requests are authorized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every authenticated request is allowed (kube-apiserver's `AlwaysAllow`).
    #[default]
    AlwaysAllow,
    /// Roles and bindings decide (kube-apiserver's `RBAC`); the bootstrap policy is kept.
    Rbac,
}

impl FromStr for Mode {
    type Err = UnknownMode;

    /// `always-allow` (or `AlwaysAllow`) and `rbac` (or `RBAC`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always-allow" | "AlwaysAllow" => Ok(Self::AlwaysAllow),
            "rbac" | "RBAC" => Ok(Self::Rbac),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AlwaysAllow => "always-allow",
            Self::Rbac => "rbac",
        })
    }
}

/// An authorizer's answer, with its reason (empty when it gives none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request is allowed.
    Allow(String),
    /// No rule allows it (RBAC never denies outright).
    NoOpinion(String),
}

impl Decision {
    /// Whether the request is allowed.
    #[must_use]
    pub fn allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The reason.
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Allow(r) | Self::NoOpinion(r) => r,
        }
    }
}

/// The rules a user holds in a namespace (what `SelfSubjectRulesReview` answers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Rules on resources.
    pub resource: Vec<ResourceRule>,
    /// Rules on non-resource paths.
    pub non_resource: Vec<NonResourceRule>,
    /// Why the list may be incomplete (roles that could not be resolved), empty when it is not.
    pub evaluation_error: String,
}

impl Rules {
    fn everything() -> Self {
        let all = || vec!["*".to_owned()];
        Self {
            resource: vec![ResourceRule {
                verbs: all(),
                api_groups: Some(all()),
                resources: Some(all()),
                resource_names: None,
            }],
            non_resource: vec![NonResourceRule {
                verbs: all(),
                non_resource_urls: Some(all()),
            }],
            evaluation_error: String::new(),
        }
    }
}

/// Decides requests by its [`Mode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Authorizer {
    mode: Mode,
}

impl Authorizer {
    /// An authorizer in `mode`.
    #[must_use]
    pub fn new(mode: Mode) -> Self {
        Self { mode }
    }

    /// Its mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The decision on `attributes`, reading roles and bindings from `inner` (the caller holds the
    /// lock): members of `system:masters` are always allowed (kube-apiserver's privileged-group
    /// authorizer), then the mode decides.
    #[must_use]
    pub fn decide(&self, inner: &Inner, attributes: &Attributes) -> Decision {
        if user::in_group(&attributes.user, user::SYSTEM_MASTERS) {
            return Decision::Allow(String::new());
        }
        match self.mode {
            Mode::AlwaysAllow => Decision::Allow(String::new()),
            Mode::Rbac => rbac::authorize(inner, attributes),
        }
    }

    /// [`Authorizer::decide`], taking the lock only when the mode reads the state.
    #[must_use]
    pub fn decide_on(&self, cluster: &Cluster, attributes: &Attributes) -> Decision {
        if self.mode == Mode::AlwaysAllow || user::in_group(&attributes.user, user::SYSTEM_MASTERS)
        {
            return Decision::Allow(String::new());
        }
        self.decide(&cluster.lock(), attributes)
    }

    /// Allows `attributes` or refuses them with kube-apiserver's 403.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] when the request is not allowed.
    pub fn authorize(&self, cluster: &Cluster, attributes: &Attributes) -> Result<(), ApiError> {
        match self.decide_on(cluster, attributes) {
            Decision::Allow(_) => Ok(()),
            Decision::NoOpinion(reason) => Err(attributes.forbidden(&reason)),
        }
    }

    /// The rules `user` holds in `namespace` (everything for `system:masters` or always-allow).
    #[must_use]
    pub fn rules(&self, cluster: &Cluster, user: &UserInfo, namespace: &str) -> Rules {
        if self.mode == Mode::AlwaysAllow || user::in_group(user, user::SYSTEM_MASTERS) {
            return Rules::everything();
        }
        let inner = cluster.lock();
        let (rules, errors) = rbac::rules_for(&inner, user, namespace);
        let mut out = Rules {
            evaluation_error: if errors.is_empty() {
                String::new()
            } else {
                rbac::aggregate(&errors)
            },
            ..Rules::default()
        };
        for (_, rule) in rules {
            if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                out.resource.push(ResourceRule {
                    verbs: rule.verbs.clone(),
                    api_groups: rule.api_groups.clone(),
                    resources: rule.resources.clone(),
                    resource_names: rule.resource_names.clone(),
                });
            }
            if rule
                .non_resource_urls
                .as_ref()
                .is_some_and(|u| !u.is_empty())
            {
                out.non_resource.push(NonResourceRule {
                    verbs: rule.verbs,
                    non_resource_urls: rule.non_resource_urls,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("rbac".parse::<Mode>().unwrap(), Mode::Rbac);
        assert_eq!("RBAC".parse::<Mode>().unwrap(), Mode::Rbac);
        assert_eq!("always-allow".parse::<Mode>().unwrap(), Mode::AlwaysAllow);
        assert!("Rbac ".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::AlwaysAllow);
        assert_eq!(Mode::Rbac.to_string(), "rbac");
    }
}
