//! What this controller last applied to each child, so an apply whose result cannot differ is
//! skipped: the same body (same fields, same owner, same force) as the last apply of this
//! controller's field manager, to a child whose cached resourceVersion is still the one that apply
//! returned. Any other writer's change moves the resourceVersion, so drift is applied over as
//! before; an object the cache has not seen since the apply, or no longer holds, is applied again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use serde_json::Value;

use super::ObjectKey;
use crate::contract::ObjectRef;

/// A body's fingerprint: the hash of its JSON and whether the apply forces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint(u64);

impl Fingerprint {
    /// The fingerprint of applying `body` (with `force`).
    pub(super) fn of(body: &Value, force: bool) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.to_string().hash(&mut hasher);
        force.hash(&mut hasher);
        Self(hasher.finish())
    }
}

/// The last apply to each child of one owner: its fingerprint and the resourceVersion it returned.
type Children = HashMap<ObjectRef, (Fingerprint, String)>;

/// The last apply of each child, by owner (forgotten with the owner).
#[derive(Debug, Default)]
pub(super) struct Applied {
    by_owner: Mutex<HashMap<ObjectKey, Children>>,
}

impl Applied {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Children>> {
        self.by_owner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether applying `fingerprint` to `child` of `owner` can be skipped: it is what was last
    /// applied, and the child's cached resourceVersion (`cached`) is what that apply returned.
    pub(super) fn unchanged(
        &self,
        owner: &ObjectKey,
        child: &ObjectRef,
        fingerprint: Fingerprint,
        cached: Option<&str>,
    ) -> bool {
        let Some(cached) = cached else {
            return false;
        };
        self.lock()
            .get(owner)
            .and_then(|children| children.get(child))
            .is_some_and(|(last, rv)| *last == fingerprint && rv == cached)
    }

    /// `child` of `owner` was applied with `fingerprint` and is now at `rv`.
    pub(super) fn record(
        &self,
        owner: &ObjectKey,
        child: &ObjectRef,
        fingerprint: Fingerprint,
        rv: String,
    ) {
        self.lock()
            .entry(owner.clone())
            .or_default()
            .insert(child.clone(), (fingerprint, rv));
    }

    /// Forget the last apply of `child` (it failed, or the child was deleted).
    pub(super) fn forget_child(&self, owner: &ObjectKey, child: &ObjectRef) {
        if let Some(children) = self.lock().get_mut(owner) {
            children.remove(child);
        }
    }

    /// Forget everything applied for `owner` (it is gone).
    pub(super) fn forget_owner(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Gvk;
    use serde_json::json;

    fn key() -> ObjectKey {
        ObjectKey {
            gvk: Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp"),
            namespace: Some("default".into()),
            name: "shop".into(),
        }
    }

    fn child() -> ObjectRef {
        ObjectRef {
            gvk: Gvk::new("apps", "v1", "Deployment"),
            namespace: Some("default".into()),
            name: "shop".into(),
            uid: None,
        }
    }

    #[test]
    fn only_the_same_body_on_the_same_version_is_skipped() {
        let applied = Applied::default();
        let body = json!({"spec": {"replicas": 2}});
        let fp = Fingerprint::of(&body, false);
        assert!(!applied.unchanged(&key(), &child(), fp, Some("7")));
        applied.record(&key(), &child(), fp, "7".into());
        assert!(applied.unchanged(&key(), &child(), fp, Some("7")));
        // Another writer moved it, the cache lost it, the body or the force changed: apply.
        assert!(!applied.unchanged(&key(), &child(), fp, Some("8")));
        assert!(!applied.unchanged(&key(), &child(), fp, None));
        let other = Fingerprint::of(&json!({"spec": {"replicas": 3}}), false);
        assert!(!applied.unchanged(&key(), &child(), other, Some("7")));
        assert!(!applied.unchanged(&key(), &child(), Fingerprint::of(&body, true), Some("7")));
        applied.forget_child(&key(), &child());
        assert!(!applied.unchanged(&key(), &child(), fp, Some("7")));
        applied.record(&key(), &child(), fp, "7".into());
        applied.forget_owner(&key());
        assert!(!applied.unchanged(&key(), &child(), fp, Some("7")));
    }
}
