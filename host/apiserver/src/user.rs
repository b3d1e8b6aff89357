//! The identity a request acts as (`authentication.k8s.io/v1` `UserInfo`, as kube-apiserver's
//! `user.Info`): its well-known names and groups, and the user names of ServiceAccounts.

use k8s_openapi::api::authentication::v1::UserInfo;

use crate::validation;

/// The group whose members every authorizer allows everything (kube-apiserver's privileged group).
pub const SYSTEM_MASTERS: &str = "system:masters";
/// The group of every authenticated user.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// The group of requests without credentials.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user name of requests without credentials.
pub const ANONYMOUS: &str = "system:anonymous";
/// The user the server's own bearer token authenticates as (with [`SYSTEM_MASTERS`]).
pub const ADMIN: &str = "capstan-admin";
/// The prefix of a ServiceAccount's user name: `system:serviceaccount:NAMESPACE:NAME`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// The group of every ServiceAccount.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// A user with a name, groups and no uid or extra.
#[must_use]
pub fn named(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: Some(name.to_owned()),
        groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        ..UserInfo::default()
    }
}

/// The user of the server's own token: [`ADMIN`] in [`SYSTEM_MASTERS`] and [`ALL_AUTHENTICATED`].
#[must_use]
pub fn admin() -> UserInfo {
    named(ADMIN, &[SYSTEM_MASTERS, ALL_AUTHENTICATED])
}

/// The user of a request that needs no credentials (the health probes).
#[must_use]
pub fn anonymous() -> UserInfo {
    named(ANONYMOUS, &[ALL_UNAUTHENTICATED])
}

/// The user's name ("" when unset).
#[must_use]
pub fn name(user: &UserInfo) -> &str {
    user.username.as_deref().unwrap_or_default()
}

/// The user's groups.
#[must_use]
pub fn groups(user: &UserInfo) -> &[String] {
    user.groups.as_deref().unwrap_or_default()
}

/// Whether the user is in `group`.
#[must_use]
pub fn in_group(user: &UserInfo, group: &str) -> bool {
    groups(user).iter().any(|g| g == group)
}

/// Adds [`ALL_AUTHENTICATED`] to the groups of an authenticated user unless it is anonymous or
/// already in it or in [`ALL_UNAUTHENTICATED`] (kube-apiserver's `AuthenticatedGroupAdder`).
#[must_use]
pub fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    if name(&user) == ANONYMOUS
        || in_group(&user, ALL_AUTHENTICATED)
        || in_group(&user, ALL_UNAUTHENTICATED)
    {
        return user;
    }
    user.groups
        .get_or_insert_with(Vec::new)
        .push(ALL_AUTHENTICATED.to_owned());
    user
}

/// `system:serviceaccount:NAMESPACE:NAME`.
#[must_use]
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// The namespace and name of a ServiceAccount user name, when it is one: exactly two parts after
/// the prefix, a namespace that is a DNS-1123 label and a name that is a DNS-1123 subdomain (as
/// apiserver's `serviceaccount.SplitUsername`).
#[must_use]
pub fn split_service_account_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    if name.contains(':') {
        return None;
    }
    validation::dns1123_label(namespace).ok()?;
    validation::dns1123_subdomain(name).ok()?;
    Some((namespace, name))
}

/// The groups of every ServiceAccount in `namespace`: `system:serviceaccounts` and
/// `system:serviceaccounts:NAMESPACE`.
#[must_use]
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        ALL_SERVICE_ACCOUNTS.to_owned(),
        format!("{ALL_SERVICE_ACCOUNTS}:{namespace}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_user_names_split_only_when_valid() {
        assert_eq!(
            split_service_account_username("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        assert_eq!(
            service_account_username("ns", "sa"),
            "system:serviceaccount:ns:sa"
        );
        for bad in [
            "system:serviceaccount:ns",
            "system:serviceaccount:ns:sa:x",
            "system:serviceaccount::sa",
            "system:serviceaccount:ns:",
            "system:serviceaccount:NS:sa",
            "system:serviceaccount:ns:a/b",
            "system:serviceaccounts:ns:sa",
            "alice",
        ] {
            assert_eq!(split_service_account_username(bad), None, "{bad}");
        }
    }

    #[test]
    fn authenticated_group_is_added_once() {
        let user = with_authenticated_group(named("bob", &["dev"]));
        assert_eq!(groups(&user), ["dev", ALL_AUTHENTICATED]);
        let again = with_authenticated_group(user.clone());
        assert_eq!(again, user);
        assert_eq!(with_authenticated_group(anonymous()), anonymous());
        assert!(in_group(&admin(), SYSTEM_MASTERS));
    }
}
