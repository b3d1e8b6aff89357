//! What checking a plan reads of the cluster: whether a kind is namespaced, and an object as it is
//! now. A controller reads its informers and the API server ([`Shared`]); `capstan render` reads
//! the objects it was given ([`crate::render`]). The checks themselves ([`super::plan`]) are the
//! same code for both.

use super::Shared;
use super::apply::{api, category_of, resource_for};
use crate::contract::{CategorizedError, Gvk, ObjectRef};
use futures::future::BoxFuture;
use kube::api::DynamicObject;

/// The cluster as a plan checker sees it.
pub trait World: Send + Sync {
    /// The field manager the plugin's applies carry (`capstan-<plugin>`): the plan checks tell
    /// what the plugin created by it.
    fn field_manager(&self) -> &str;

    /// Whether objects of `gvk` live in namespaces; an error when the kind cannot be resolved.
    fn namespaced<'a>(&'a self, gvk: &'a Gvk) -> BoxFuture<'a, Result<bool, CategorizedError>>;

    /// The object `target` as it is now, or `None` when it does not exist; with `managed`, with
    /// its `metadata.managedFields` (which informer caches drop).
    fn existing<'a>(
        &'a self,
        target: &'a ObjectRef,
        managed: bool,
    ) -> BoxFuture<'a, Result<Option<DynamicObject>, CategorizedError>>;
}

impl World for Shared {
    fn field_manager(&self) -> &str {
        &self.field_manager
    }

    fn namespaced<'a>(&'a self, gvk: &'a Gvk) -> BoxFuture<'a, Result<bool, CategorizedError>> {
        Box::pin(async move {
            resource_for(self, gvk)
                .await
                .map(|(_, namespaced)| namespaced)
        })
    }

    /// From the informer cache when it holds the object and `managed` is not needed; otherwise
    /// read live, so an object the cache has not seen yet is never taken for absent.
    fn existing<'a>(
        &'a self,
        target: &'a ObjectRef,
        managed: bool,
    ) -> BoxFuture<'a, Result<Option<DynamicObject>, CategorizedError>> {
        Box::pin(async move {
            if !managed
                && let Some(cached) =
                    self.cached(&target.gvk, target.namespace.as_deref(), &target.name)
            {
                return Ok(Some((*cached).clone()));
            }
            let (ar, _) = resource_for(self, &target.gvk).await?;
            api(self, &ar, target.namespace.as_deref())
                .get_opt(&target.name)
                .await
                .map_err(|e| CategorizedError {
                    category: category_of(&e),
                    message: format!("cannot read {target}: {e}"),
                })
        })
    }
}
