//! Cache reads for the fetch phase, served from the informers of the plugin's kinds.

use crate::contract::{CategorizedError, ErrorCategory, Gvk};
use crate::informer::InformerHandle;
use crate::plugin::CacheReader;
use std::collections::HashMap;

/// The informer caches a plugin may read (the host checks the manifest before each read).
pub(crate) struct InformerCache {
    /// The informers, by kind.
    pub(crate) handles: HashMap<Gvk, InformerHandle>,
}

impl InformerCache {
    /// The informer of `gvk`, or an infrastructure error when none runs.
    pub(super) fn handle(&self, gvk: &Gvk) -> Result<&InformerHandle, CategorizedError> {
        self.handles.get(gvk).ok_or_else(|| CategorizedError {
            category: ErrorCategory::Infrastructure,
            message: format!("no informer for {gvk}"),
        })
    }
}

impl CacheReader for InformerCache {
    fn get(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, CategorizedError> {
        Ok(self
            .handle(gvk)?
            .get(namespace, name)
            .and_then(|o| serde_json::to_string(&*o).ok()))
    }

    fn list(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<String>, CategorizedError> {
        let objects = self
            .handle(gvk)?
            .list(namespace, label_selector)
            .map_err(|e| CategorizedError {
                category: ErrorCategory::InvalidSpec,
                message: e.to_string(),
            })?;
        Ok(objects
            .iter()
            .filter_map(|o| serde_json::to_string(&**o).ok())
            .collect())
    }
}
