//! The Kubernetes identities Capstan acts as: the host's own ServiceAccount, and one ServiceAccount
//! per plugin, which the host impersonates for every request it makes on that plugin's behalf (so
//! that the cluster's RBAC enforces the plugin's grant a second time).

/// Namespace of the host's and the plugins' ServiceAccounts when none is given and the host is not
/// in a pod.
pub const DEFAULT_NAMESPACE: &str = "capstan-system";

/// Name of the host's own ServiceAccount.
pub const HOST_SERVICE_ACCOUNT: &str = "capstan";

/// Prefix of a plugin's ServiceAccount name; the plugin's manifest name (a DNS label) follows.
pub const PLUGIN_SERVICE_ACCOUNT_PREFIX: &str = "capstan-plugin-";

/// Where the ServiceAccounts live: the namespace shared by the host and its plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    namespace: String,
}

impl Default for Identities {
    fn default() -> Self {
        Self::new(DEFAULT_NAMESPACE)
    }
}

impl Identities {
    /// Identities whose ServiceAccounts live in `namespace`.
    #[must_use]
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    /// The namespace of the ServiceAccounts.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The ServiceAccount name of plugin `plugin` (`capstan-plugin-<name>`).
    #[must_use]
    pub fn plugin_service_account(&self, plugin: &str) -> String {
        format!("{PLUGIN_SERVICE_ACCOUNT_PREFIX}{plugin}")
    }

    /// The user name the API server gives plugin `plugin`'s ServiceAccount
    /// (`system:serviceaccount:<namespace>:capstan-plugin-<name>`): what the host impersonates.
    #[must_use]
    pub fn plugin_user(&self, plugin: &str) -> String {
        service_account_user(&self.namespace, &self.plugin_service_account(plugin))
    }

    /// The user name of the host's own ServiceAccount.
    #[must_use]
    pub fn host_user(&self) -> String {
        service_account_user(&self.namespace, HOST_SERVICE_ACCOUNT)
    }
}

/// The user name Kubernetes authenticates ServiceAccount `name` in `namespace` as.
#[must_use]
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_users_are_service_account_users() {
        let ids = Identities::new("ops");
        assert_eq!(
            ids.plugin_service_account("webapp"),
            "capstan-plugin-webapp"
        );
        assert_eq!(
            ids.plugin_user("webapp"),
            "system:serviceaccount:ops:capstan-plugin-webapp"
        );
        assert_eq!(ids.host_user(), "system:serviceaccount:ops:capstan");
        assert_eq!(Identities::default().namespace(), "capstan-system");
    }
}
