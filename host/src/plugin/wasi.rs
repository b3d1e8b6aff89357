//! WASI grants: what configuration lends a plugin beyond nothing (read-only directories, environment).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A host directory visible to the plugin, opened through cap-std so the guest cannot leave it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DirGrant {
    /// Directory on the host.
    pub host: PathBuf,
    /// Path the guest sees, e.g. `/config`.
    pub guest: String,
    /// Whether the guest may write. Default: read-only.
    #[serde(default)]
    pub writable: bool,
}

/// Everything WASI lends a plugin. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WasiGrants {
    /// Preopened directories.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Environment variables.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

/// A grant that cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum WasiError {
    /// A granted directory cannot be opened.
    #[error("cannot open granted directory {path}: {reason}")]
    Dir {
        /// The host directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl WasiGrants {
    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.env.is_empty()
    }

    /// Check every directory can be opened (at configuration time, so a typo fails early).
    pub fn check(&self) -> Result<(), WasiError> {
        for d in &self.dirs {
            if !d.host.is_dir() {
                return Err(WasiError::Dir {
                    path: d.host.clone(),
                    reason: "not a directory".into(),
                });
            }
        }
        Ok(())
    }

    /// Add the grants to a WASI context being built.
    pub(crate) fn apply(&self, builder: &mut WasiCtxBuilder) -> Result<(), WasiError> {
        for d in &self.dirs {
            let perms = if d.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder
                .preopened_dir(&d.host, &d.guest, perms)
                .map_err(|e| WasiError::Dir {
                    path: d.host.clone(),
                    reason: format!("{e:#}"),
                })?;
        }
        for (k, v) in &self.env {
            builder.env(k, v);
        }
        Ok(())
    }
}
