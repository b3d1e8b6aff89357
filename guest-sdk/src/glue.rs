//! Glue between each plugin's generated exports and the SDK's traits: the code `export!` expands
//! to is a thin trait impl per export that calls one of these generic functions.
#![doc(hidden)]

use crate::status::StatusChannel;
use crate::wit::capstan::controller::status_channel::StatusSender;
use crate::{
    Cache, CleanupOutcome, ComponentHealth, Error, EventProcessStatus, EventStatus, Gvk, Handler,
    Manifest, ObjectRef, PlanEntry, Plugin, Reconciler, StatusUpdate,
};
use serde::de::DeserializeOwned;
use std::cell::RefCell;

/// `describe`: the plugin's manifest, with the kind its `Object` type decodes.
pub fn describe<T: Plugin>(object_kind: Option<Gvk>) -> Manifest {
    Manifest {
        object_kind,
        ..T::manifest()
    }
}

/// Holds when `Self` and `T` are one type.
#[diagnostic::on_unimplemented(
    message = "a plugin that is both a handler and a reconciler decodes one object type, but `Handler::Object` is `{Self}` and `Reconciler::Object` is `{T}`",
    label = "exported here"
)]
pub trait SameObject<T> {}

impl<T> SameObject<T> for T {}

/// Compiles only for a plugin whose `Handler::Object` and `Reconciler::Object` are one type:
/// objects of a watched kind reach both, and the manifest has one `object-kind`.
/// `export!(T: Handler + Reconciler)` calls it.
///
/// ```compile_fail,E0277
/// use capstan_sdk::k8s_openapi::api::core::v1::{ConfigMap, Secret};
/// use capstan_sdk::*;
///
/// struct Both;
/// impl Plugin for Both {
///     fn manifest() -> Manifest {
///         Manifest::new("both", "0.1.0").watches::<ConfigMap>()
///     }
/// }
/// impl Handler for Both {
///     type Object = ConfigMap;
///     fn added(_: ConfigMap, _: &StatusChannel<'_>) -> EventStatus { EventStatus::Completed }
///     fn updated(_: ConfigMap, _: ConfigMap, _: &StatusChannel<'_>) -> EventStatus { EventStatus::Skip }
///     fn deleted(_: ConfigMap, _: &StatusChannel<'_>) -> EventStatus { EventStatus::Skip }
/// }
/// impl Reconciler for Both {
///     type Object = Secret; // not the handler's ConfigMap
///     type Observation = ();
///     fn fetch(_: &Secret, _: &Cache) -> Result<(), Error> { Ok(()) }
///     fn plan(_: &Secret, _: &()) -> Result<Plan, Error> { Ok(Plan::new()) }
///     fn health(_: &Secret, _: &()) -> Vec<ComponentHealth> { Vec::new() }
/// }
/// capstan_sdk::glue::same_object::<Both>();
/// ```
pub fn same_object<T>()
where
    T: Handler + Reconciler,
    <T as Handler>::Object: SameObject<<T as Reconciler>::Object>,
{
}

/// Decode the object the host sent; the error names the kind received and the type expected.
fn decode<O: DeserializeOwned>(json: &str) -> Result<O, Error> {
    serde_json::from_str(json).map_err(|e| {
        let kind = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("kind")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "an object without a kind".to_owned());
        Error::invalid_spec(format!(
            "cannot decode {kind} as {}: {e}",
            std::any::type_name::<O>()
        ))
    })
}

/// Decode an event's object; a failure is logged and fails the event.
fn event_object<O: DeserializeOwned>(json: &str) -> Option<O> {
    decode(json)
        .inspect_err(|e| {
            crate::log::error("cannot decode the event's object", &[("error", &e.message)])
        })
        .ok()
}

/// `added`.
pub fn added<T: Handler>(obj: &str, status: &StatusSender) -> EventStatus {
    let ch = StatusChannel::from_host(status);
    event_object(obj).map_or(EventStatus::Failure, |o| T::added(o, &ch))
}

/// `updated`.
pub fn updated<T: Handler>(new_obj: &str, old_obj: &str, status: &StatusSender) -> EventStatus {
    let ch = StatusChannel::from_host(status);
    match (event_object(new_obj), event_object(old_obj)) {
        (Some(new), Some(old)) => T::updated(new, old, &ch),
        _ => EventStatus::Failure,
    }
}

/// `deleted`.
pub fn deleted<T: Handler>(obj: &str, status: &StatusSender) -> EventStatus {
    let ch = StatusChannel::from_host(status);
    event_object(obj).map_or(EventStatus::Failure, |o| T::deleted(o, &ch))
}

/// `on-status`.
pub fn on_status<T: Handler>(obj: &ObjectRef, status: EventProcessStatus) {
    T::on_status(obj, status);
}

/// One reconcile of one object: the `reconciliation` resource. The object is decoded once, in
/// [`Reconciliation::open`]; what `fetch` observed is kept for the later phases.
pub struct Reconciliation<T: Reconciler> {
    object: T::Object,
    observed: RefCell<Option<T::Observation>>,
}

/// The error of a phase the host called before `fetch`: a host bug, retried.
fn not_fetched(phase: &str) -> Error {
    Error::infrastructure(format!("{phase} was called before fetch"))
}

impl<T: Reconciler> Reconciliation<T> {
    /// `open`: decode the object; a decode error is an invalid-spec error naming the kind.
    pub fn open(obj: &str) -> Result<Self, Error> {
        Ok(Self {
            object: decode(obj)?,
            observed: RefCell::new(None),
        })
    }

    /// `fetch`: observe through the host's cache and keep the observation.
    pub fn fetch(&self) -> Result<(), Error> {
        let observed = T::fetch(&self.object, &Cache::host())?;
        *self.observed.borrow_mut() = Some(observed);
        Ok(())
    }

    /// `plan-resources`: an error before `fetch`.
    pub fn plan_resources(&self) -> Result<Vec<PlanEntry>, Error> {
        let observed = self.observed.borrow();
        let observed = observed
            .as_ref()
            .ok_or_else(|| not_fetched("plan-resources"))?;
        Ok(T::plan(&self.object, observed)?.into_entries())
    }

    /// `get-component-health`: before `fetch`, one failed `Plugin` component saying so.
    pub fn get_component_health(&self) -> Vec<ComponentHealth> {
        match self.observed.borrow().as_ref() {
            Some(observed) => T::health(&self.object, observed),
            None => {
                let error = not_fetched("get-component-health");
                vec![
                    ComponentHealth::failed("Plugin", "NotFetched", error.message.clone())
                        .with_error(error),
                ]
            }
        }
    }

    /// `status`: before `fetch`, or with a computed status that is not JSON, no field and no
    /// condition (and an error log).
    pub fn status(&self, computed: &str) -> StatusUpdate {
        let observed = self.observed.borrow();
        let Some(observed) = observed.as_ref() else {
            crate::log::error(&not_fetched("status").message, &[]);
            return StatusUpdate::new();
        };
        match serde_json::from_str(computed) {
            Ok(computed) => T::status(&self.object, observed, &computed),
            Err(e) => {
                let e = e.to_string();
                crate::log::error("the computed status is not JSON", &[("error", &e)]);
                StatusUpdate::new()
            }
        }
    }

    /// `cleanup`: needs no `fetch`.
    pub fn cleanup(&self) -> Result<CleanupOutcome, Error> {
        T::cleanup(&self.object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCategory, HealthState, Plan};
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::cell::Cell;

    thread_local! {
        static FETCHES: Cell<u32> = const { Cell::new(0) };
    }

    /// Counts fetches; plans one copy of its ConfigMap; cleans up after 5 seconds.
    struct Copier;

    impl Plugin for Copier {
        fn manifest() -> Manifest {
            Manifest::new("copier", "0.1.0").watches::<ConfigMap>()
        }
    }

    impl Reconciler for Copier {
        type Object = ConfigMap;
        /// Not `Serialize`: the observation stays in the guest.
        type Observation = Cell<u32>;

        fn fetch(_: &ConfigMap, _: &Cache) -> Result<Cell<u32>, Error> {
            FETCHES.with(|f| f.set(f.get() + 1));
            Ok(Cell::new(FETCHES.with(Cell::get)))
        }

        fn plan(obj: &ConfigMap, _: &Cell<u32>) -> Result<Plan, Error> {
            let mut plan = Plan::new();
            plan.apply(obj)?;
            Ok(plan)
        }

        fn health(_: &ConfigMap, observed: &Cell<u32>) -> Vec<ComponentHealth> {
            vec![ComponentHealth::ready(
                "Copy",
                "Fetched",
                observed.get().to_string(),
            )]
        }

        fn status(
            _: &ConfigMap,
            observed: &Cell<u32>,
            computed: &serde_json::Value,
        ) -> StatusUpdate {
            StatusUpdate::new().with_fields(&serde_json::json!({
                "fetches": observed.get(),
                "computed": computed,
            }))
        }

        fn cleanup(_: &ConfigMap) -> Result<CleanupOutcome, Error> {
            Ok(CleanupOutcome::RequeueAfter(5))
        }
    }

    const CONFIG_MAP: &str =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}}"#;

    #[test]
    fn describe_fills_the_object_kind() {
        let m = describe::<Copier>(crate::__object_kind!(ConfigMap));
        assert_eq!(m.name, "copier");
        assert_eq!(m.object_kind, Some(Gvk::of::<ConfigMap>()));
    }

    #[test]
    fn an_object_that_does_not_decode_is_invalid_spec_naming_the_kind() {
        let Err(err) = Reconciliation::<Copier>::open(
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":7}}"#,
        ) else {
            panic!("opened");
        };
        assert_eq!(err.category, ErrorCategory::InvalidSpec);
        assert!(err.message.contains("cannot decode Secret as"), "{err}");
        assert!(err.message.contains("ConfigMap"), "{err}");
        assert!(err.message.contains("expected ConfigMap"), "{err}");
        let Err(err) = Reconciliation::<Copier>::open("not json") else {
            panic!("opened");
        };
        assert!(err.message.contains("an object without a kind"), "{err}");
    }

    #[test]
    fn phases_before_fetch_are_errors_not_panics() {
        let r = Reconciliation::<Copier>::open(CONFIG_MAP).unwrap();
        let err = r.plan_resources().unwrap_err();
        assert!(err.message.contains("before fetch"), "{err}");
        let health = r.get_component_health();
        assert_eq!(health[0].state, HealthState::Failed);
        assert_eq!(health[0].reason, "NotFetched");
        assert_eq!(r.status("{}"), StatusUpdate::new());
        assert_eq!(r.cleanup().unwrap(), CleanupOutcome::RequeueAfter(5));
    }

    #[test]
    fn one_fetch_serves_every_later_phase() {
        let r = Reconciliation::<Copier>::open(CONFIG_MAP).unwrap();
        r.fetch().unwrap();
        let fetched = FETCHES.with(Cell::get);
        let plan = r.plan_resources().unwrap();
        assert!(matches!(&plan[0], PlanEntry::Apply(json) if json.contains("\"name\":\"a\"")));
        assert_eq!(r.get_component_health()[0].message, fetched.to_string());
        let status = r.status(r#"{"phase":"Ready"}"#).fields_json();
        assert_eq!(status["fetches"], fetched);
        assert_eq!(status["computed"]["phase"], "Ready");
        assert_eq!(
            FETCHES.with(Cell::get),
            fetched,
            "a later phase fetched again"
        );
        assert_eq!(r.status("not json"), StatusUpdate::new());
    }

    /// `same_object` is a compile-time check; here it only needs to compile for one type.
    #[test]
    fn same_object_holds_for_one_type() {
        struct Both;
        impl Plugin for Both {
            fn manifest() -> Manifest {
                Manifest::new("both", "0.1.0")
            }
        }
        impl Handler for Both {
            type Object = ConfigMap;
            fn added(_: ConfigMap, _: &StatusChannel<'_>) -> EventStatus {
                EventStatus::Completed
            }
            fn updated(_: ConfigMap, _: ConfigMap, _: &StatusChannel<'_>) -> EventStatus {
                EventStatus::Completed
            }
            fn deleted(_: ConfigMap, _: &StatusChannel<'_>) -> EventStatus {
                EventStatus::Completed
            }
        }
        impl Reconciler for Both {
            type Object = ConfigMap;
            type Observation = ();
            fn fetch(_: &ConfigMap, _: &Cache) -> Result<(), Error> {
                Ok(())
            }
            fn plan(_: &ConfigMap, (): &()) -> Result<Plan, Error> {
                Ok(Plan::new())
            }
            fn health(_: &ConfigMap, (): &()) -> Vec<ComponentHealth> {
                Vec::new()
            }
        }
        same_object::<Both>();
    }
}
