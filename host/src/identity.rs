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

/// A client acting for one plugin cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the client impersonating {user}")]
pub struct ImpersonationError {
    /// The user that was to be impersonated.
    pub user: String,
    /// Why kube-client refused the configuration.
    #[source]
    pub source: kube::Error,
}

/// Acting for plugins: from the host's own client configuration, one client per plugin that
/// impersonates the plugin's ServiceAccount (`Impersonate-User`), so the API server authorizes
/// every request on the plugin's behalf against the plugin's RBAC, not the host's.
#[derive(Clone)]
pub struct Impersonation {
    base: kube::Config,
    identities: Identities,
}

impl std::fmt::Debug for Impersonation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds credentials: show only where it points.
        f.debug_struct("Impersonation")
            .field("cluster_url", &self.base.cluster_url.to_string())
            .field("identities", &self.identities)
            .finish()
    }
}

impl Impersonation {
    /// Impersonate the plugins' ServiceAccounts of `identities`, authenticating as `base` does.
    #[must_use]
    pub fn new(base: kube::Config, identities: Identities) -> Self {
        Self { base, identities }
    }

    /// Where the plugins' ServiceAccounts live.
    #[must_use]
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// A client whose every request impersonates plugin `plugin`'s ServiceAccount (and no group
    /// beyond those the API server gives every ServiceAccount).
    ///
    /// # Errors
    /// [`ImpersonationError`] when kube-client cannot build a client from the configuration.
    pub fn client_for(&self, plugin: &str) -> Result<kube::Client, ImpersonationError> {
        let user = self.identities.plugin_user(plugin);
        let mut config = self.base.clone();
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups = None;
        config.auth_info.impersonate_uid = None;
        config.auth_info.impersonate_user_extra = None;
        kube::Client::try_from(config).map_err(|source| ImpersonationError { user, source })
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
