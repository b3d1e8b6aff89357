//! Loading, validation, the precompiled cache and every reconciler export, with real guests.
#![allow(clippy::unwrap_used)]

use crate::support::{guest, plugins_dir, tempdir};
use capstan::contract::{CategorizedError, ErrorCategory, Gvk, HealthState, ObjectRef, World};
use capstan::plugin::{
    CacheReader, Grants, Origin, Planned, Plugin, Reconciliation, RejectReason, Runtime,
    RuntimeConfig, WorldError,
};
use std::sync::Arc;

fn runtime() -> Runtime {
    Runtime::new(crate::support::runtime_config()).unwrap()
}

async fn reject(bytes_or_guest: Result<Vec<u8>, &str>) -> RejectReason {
    let dir = tempdir();
    let path = dir.path().join("x.wasm");
    match bytes_or_guest {
        Ok(bytes) => std::fs::write(&path, bytes).unwrap(),
        Err(name) => {
            std::fs::copy(guest(name), &path).unwrap();
        }
    }
    let err = runtime().load(&path).await.unwrap_err();
    assert_eq!(err.path, path, "the error names the file");
    assert!(err.one_line().starts_with(&path.display().to_string()));
    err.reason
}

#[tokio::test]
async fn example_guests_load_with_their_world_and_manifest() {
    let rt = runtime();
    let handler = rt.load(&guest("deployment-handler")).await.unwrap();
    assert_eq!(handler.info().world, World::HandlerPlugin);
    assert_eq!(handler.info().contract.to_string(), "0.2.0");
    assert_eq!(
        handler.manifest().watches,
        vec![Gvk::new("apps", "v1", "Deployment")]
    );
    let webapp = rt.load(&guest("webapp")).await.unwrap();
    assert_eq!(webapp.info().world, World::ReconcilerPlugin);
    assert_eq!(webapp.name(), "webapp");
    assert_eq!(
        webapp.manifest().owns,
        vec![
            Gvk::new("apps", "v1", "Deployment"),
            Gvk::new("", "v1", "Service")
        ]
    );
    assert_eq!(webapp.info().hash.len(), 64);
}

#[tokio::test]
async fn not_wasm_is_rejected() {
    assert!(matches!(
        reject(Ok(b"#!/bin/sh\necho hi\n".to_vec())).await,
        RejectReason::NotWasm
    ));
    assert!(matches!(
        reject(Ok(Vec::new())).await,
        RejectReason::NotWasm
    ));
}

#[tokio::test]
async fn core_module_is_rejected() {
    // The smallest valid core module: magic and version 1.
    assert!(matches!(
        reject(Ok(b"\0asm\x01\0\0\0".to_vec())).await,
        RejectReason::CoreModule
    ));
}

#[tokio::test]
async fn truncated_component_is_rejected() {
    let bytes = std::fs::read(guest("deployment-handler")).unwrap();
    let reason = reject(Ok(bytes[..bytes.len() / 2].to_vec())).await;
    assert!(matches!(reason, RejectReason::Compile(_)), "{reason}");
}

#[tokio::test]
async fn wrong_world_is_rejected() {
    let reason = reject(Err("wrong-world")).await;
    assert!(
        matches!(reason, RejectReason::World(WorldError::NotAPlugin(ref e)) if e.contains("run")),
        "{reason}"
    );
    let reason = reject(Err("no-exports")).await;
    assert!(
        matches!(reason, RejectReason::World(WorldError::NotAPlugin(_))),
        "{reason}"
    );
}

#[tokio::test]
async fn incompatible_contract_is_rejected() {
    let reason = reject(Err("future-contract")).await;
    assert!(
        matches!(
            reason,
            RejectReason::World(WorldError::IncompatibleContract { .. })
        ),
        "{reason}"
    );
    assert!(reason.to_string().contains("0.9.0"), "{reason}");
}

#[tokio::test]
async fn trap_in_describe_is_rejected() {
    let reason = reject(Err("trap-describe")).await;
    assert!(matches!(reason, RejectReason::Describe(_)), "{reason}");
    let chain = std::error::Error::source(&reason).unwrap().to_string();
    assert!(
        chain.contains("describe") && chain.contains("trapped"),
        "{chain}"
    );
}

#[tokio::test]
async fn invalid_manifest_is_rejected() {
    let reason = reject(Err("bad-manifest")).await;
    assert!(
        matches!(reason, RejectReason::InvalidManifest(ref m) if m.contains("Bad_Name")),
        "{reason}"
    );
}

#[tokio::test]
async fn a_handler_typed_for_another_kind_than_it_watches_is_rejected_at_load() {
    // Typed for Deployments, watching ConfigMaps: every event would fail to decode.
    let reason = reject(Err("mistyped-handler")).await;
    assert!(
        matches!(&reason, RejectReason::InvalidManifest(m)
            if m.contains("decodes objects as apps/v1/Deployment but watches v1/ConfigMap")),
        "{reason}"
    );
}

#[tokio::test]
async fn a_directory_loads_the_good_and_reports_the_bad() {
    let dir = plugins_dir(&[
        "deployment-handler",
        "webapp",
        "trap-describe",
        "wrong-world",
    ]);
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    std::fs::write(dir.path().join("broken.wasm"), "not wasm").unwrap();
    let report = runtime().load_dir(dir.path()).await.unwrap();
    let mut names: Vec<_> = report.plugins.iter().map(|p| p.name().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["deployment-handler", "webapp"]);
    let mut rejected: Vec<_> = report
        .rejected
        .iter()
        .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    rejected.sort();
    assert_eq!(
        rejected,
        ["broken.wasm", "trap-describe.wasm", "wrong-world.wasm"]
    );
}

#[tokio::test]
async fn duplicate_names_are_rejected() {
    let dir = plugins_dir(&["webapp"]);
    std::fs::copy(guest("webapp"), dir.path().join("webapp-copy.wasm")).unwrap();
    let report = runtime().load_dir(dir.path()).await.unwrap();
    assert_eq!(report.plugins.len(), 1);
    assert_eq!(
        report.plugins[0].info().path,
        dir.path().join("webapp-copy.wasm")
    );
    let line = report.rejected[0].one_line();
    assert!(
        line.contains("webapp.wasm")
            && line.contains("a plugin named webapp is also declared by")
            && line.contains("webapp-copy.wasm, which keeps the name (its file name sorts first)"),
        "{line}"
    );
}

#[tokio::test]
async fn precompiled_cache_skips_compilation_on_restart() {
    let cache = tempdir();
    let config = || RuntimeConfig::default().cache_dir(cache.path());
    let rt = Runtime::new(config()).unwrap();
    let first = rt.load(&guest("webapp")).await.unwrap();
    assert_eq!(first.info().origin, Origin::Compiled);
    // Written off the loading path.
    rt.flush_cache();
    assert_eq!(artifacts(cache.path()).len(), 1);
    // A new runtime (a restart) deserializes.
    let second = Runtime::new(config())
        .unwrap()
        .load(&guest("webapp"))
        .await
        .unwrap();
    assert_eq!(second.info().origin, Origin::Cached);
    // A corrupt artifact is recompiled, not trusted.
    for path in artifacts(cache.path()) {
        std::fs::write(path, b"garbage").unwrap();
    }
    let third = Runtime::new(config())
        .unwrap()
        .load(&guest("webapp"))
        .await
        .unwrap();
    assert_eq!(third.info().origin, Origin::Compiled);
}

/// The precompiled artifacts in a cache directory.
fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    v.sort();
    v
}

/// The artifact of the plugin whose content hash is `hash`.
fn artifact_of(dir: &std::path::Path, hash: &str) -> std::path::PathBuf {
    artifacts(dir)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(hash))
        .unwrap()
}

#[tokio::test]
async fn a_planted_or_altered_artifact_is_never_loaded() {
    let cache = tempdir();
    let config = || RuntimeConfig::default().cache_dir(cache.path());
    // A restart's load, its artifact written before it returns.
    let load_webapp = async || {
        let rt = Runtime::new(config()).unwrap();
        let plugin = rt.load(&guest("webapp")).await.unwrap();
        rt.flush_cache();
        plugin
    };
    let rt = Runtime::new(config()).unwrap();
    let echo = rt.load(&guest("echo-handler")).await.unwrap();
    let webapp = rt.load(&guest("webapp")).await.unwrap();
    rt.flush_cache();
    let target = artifact_of(cache.path(), &webapp.info().hash);

    // An artifact this host wrote, for another plugin, renamed to webapp's: refused.
    std::fs::copy(artifact_of(cache.path(), &echo.info().hash), &target).unwrap();
    let again = load_webapp().await;
    assert_eq!(again.name(), "webapp", "not echo-handler's code");
    assert_eq!(
        again.info().origin,
        Origin::Compiled,
        "the planted artifact was refused"
    );
    let next = load_webapp().await;
    assert_eq!(
        next.info().origin,
        Origin::Cached,
        "compiled fresh and stored again"
    );

    // Native code altered, its tag kept: refused.
    let mut bytes = std::fs::read(&target).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&target, &bytes).unwrap();
    let altered = load_webapp().await;
    assert_eq!(altered.info().origin, Origin::Compiled);

    // A valid artifact of this very engine, planted without this host's key: refused.
    let planted = rt
        .engine()
        .precompile_component(&std::fs::read(guest("webapp")).unwrap())
        .unwrap();
    std::fs::write(&target, &planted).unwrap();
    let foreign = load_webapp().await;
    assert_eq!(foreign.info().origin, Origin::Compiled);
    assert_eq!(foreign.name(), "webapp");
}

#[tokio::test]
async fn the_cache_directory_and_its_files_are_private() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let base = tempdir();
    let dir = base.path().join("capstan").join("precompiled");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    let rt = Runtime::new(RuntimeConfig::default().cache_dir(&dir)).unwrap();
    rt.load(&guest("echo-handler")).await.unwrap();
    rt.flush_cache();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("key")), 0o600);
    assert!(!artifacts(&dir).is_empty());
    for a in artifacts(&dir) {
        assert_eq!(mode(&a) & 0o077, 0, "{}", a.display());
    }
    // Opened up by someone: closed again at the next start.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    Runtime::new(RuntimeConfig::default().cache_dir(&dir)).unwrap();
    assert_eq!(mode(&dir), 0o700);
    // Owned by another user (who could plant code in it): refused. Only root can set this up.
    if std::fs::metadata(base.path()).unwrap().uid() == 0 {
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let Err(e) = Runtime::new(RuntimeConfig::default().cache_dir(&dir)) else {
            panic!("a cache directory of another user is refused")
        };
        let line = capstan::error_chain(&e);
        assert!(line.contains("belongs to uid 65534"), "{line}");
    }
}

/// A cache of objects held in memory, standing in for the informers' store.
struct Objects(Vec<serde_json::Value>);

impl CacheReader for Objects {
    fn get(
        &self,
        gvk: &Gvk,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, CategorizedError> {
        Ok(self
            .0
            .iter()
            .find(|o| {
                let r = ObjectRef::from_json(o).unwrap();
                r.gvk == *gvk && r.namespace.as_deref() == namespace && r.name == name
            })
            .map(ToString::to_string))
    }

    fn list(
        &self,
        gvk: &Gvk,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<Vec<String>, CategorizedError> {
        Ok(self
            .0
            .iter()
            .filter(|o| ObjectRef::from_json(o).unwrap().gvk == *gvk)
            .map(ToString::to_string)
            .collect())
    }
}

fn webapp_json(port: i32) -> (ObjectRef, String) {
    let obj = serde_json::json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": "shop", "namespace": "default", "uid": "u-1"},
        "spec": {"image": "nginx:1.27", "replicas": 2, "port": port}
    });
    (ObjectRef::from_json(&obj).unwrap(), obj.to_string())
}

/// A reconciliation of `obj` that has fetched with `grants`.
async fn fetched(plugin: &Plugin, oref: &ObjectRef, obj: &str, grants: Grants) -> Reconciliation {
    let mut r = plugin.reconcile(oref, obj).await.unwrap().unwrap();
    r.fetch(grants).await.unwrap().unwrap();
    r
}

/// The category of the first error of the Deployment component's health: what the fetch phase's
/// lookup of the Deployment came to.
async fn deployment_lookup(r: &mut Reconciliation) -> Option<ErrorCategory> {
    let health = r.health().await.unwrap();
    assert_eq!(health[0].component, "Deployment");
    health[0].errors.first().map(|e| e.category)
}

#[tokio::test]
async fn every_reconciler_export_answers() {
    let plugin = runtime().load(&guest("webapp")).await.unwrap();
    let (oref, obj) = webapp_json(8080);
    let deployment: serde_json::Value =
        serde_json::from_str(&crate::support::deployment_json("shop")).unwrap();
    let grants = Grants {
        cache: Some(Arc::new(Objects(vec![deployment]))),
        pod_logs: None,
    };

    // One reconciliation carries every phase: the object crossed once, the observation stays in
    // the guest.
    let mut r = fetched(&plugin, &oref, &obj, grants).await;
    let plan = r.plan().await.unwrap().unwrap();
    let kinds: Vec<_> = plan
        .iter()
        .map(|e| match e {
            Planned::Apply(v) => v["kind"].as_str().unwrap().to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["Deployment", "Service"]);

    let health = r.health().await.unwrap();
    assert_eq!(health[0].component, "Deployment");
    assert_eq!(
        health[0].state,
        HealthState::Ready,
        "3/3 replicas available in the deployment read from the cache"
    );
    assert_eq!(
        health[1].state,
        HealthState::Progressing,
        "no service in the cache"
    );
    assert_eq!(
        health[1].errors[0].category,
        ErrorCategory::MissingDownstreamDependency
    );

    let update = r
        .status(&serde_json::json!({"status": "Ready"}))
        .await
        .unwrap();
    assert!(update.conditions.is_empty());
    // Cleanup comes alone, on a reconciliation of its own.
    let mut gone = plugin.reconcile(&oref, &obj).await.unwrap().unwrap();
    assert_eq!(
        gone.cleanup().await.unwrap().unwrap(),
        capstan::contract::CleanupOutcome::Done
    );
}

#[tokio::test]
async fn plan_errors_keep_their_category() {
    let plugin = runtime().load(&guest("webapp")).await.unwrap();
    let (oref, obj) = webapp_json(0);
    let mut r = fetched(&plugin, &oref, &obj, Grants::default()).await;
    let err = r.plan().await.unwrap().unwrap_err();
    assert_eq!(err.category, ErrorCategory::InvalidSpec);
}

#[tokio::test]
async fn a_phase_before_fetch_is_an_error_not_a_trap() {
    let plugin = runtime().load(&guest("webapp")).await.unwrap();
    let (oref, obj) = webapp_json(8080);
    let mut r = plugin.reconcile(&oref, &obj).await.unwrap().unwrap();
    let err = r.plan().await.unwrap().unwrap_err();
    assert!(err.message.contains("fetch"), "{err:?}");
    assert_eq!(plugin.state(), capstan::plugin::PluginState::Running);
}

#[tokio::test]
async fn an_object_the_plugin_cannot_decode_is_refused_at_open() {
    let plugin = runtime().load(&guest("webapp")).await.unwrap();
    let (oref, _) = webapp_json(8080);
    let err = plugin
        .reconcile(
            &oref,
            r#"{"apiVersion":"examples.capstan.dev/v1alpha1","kind":"WebApp","spec":"not a spec"}"#,
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::InvalidSpec, "{err:?}");
}

#[tokio::test]
async fn cache_reads_are_refused_without_a_grant() {
    let plugin = runtime().load(&guest("webapp")).await.unwrap();
    let (oref, obj) = webapp_json(8080);
    // No grant (as in the plan phase): every read is an Auth error, surfaced in the health of the
    // component the read was for.
    let mut r = fetched(&plugin, &oref, &obj, Grants::default()).await;
    assert_eq!(deployment_lookup(&mut r).await, Some(ErrorCategory::Auth));
}

#[tokio::test]
async fn an_owned_kind_left_out_of_the_allow_list_cannot_be_read() {
    use capstan::contract::{AccessRule, Verb};
    use capstan::plugin::{PluginSettings, WATCH_VERBS};
    let plugin = runtime().load(&guest("webapp")).await.unwrap();
    let (oref, obj) = webapp_json(8080);
    let deployment: serde_json::Value =
        serde_json::from_str(&crate::support::deployment_json("shop")).unwrap();
    let grants = || Grants {
        cache: Some(Arc::new(Objects(vec![deployment.clone()]))),
        pod_logs: None,
    };
    let webapps = Gvk::new("examples.capstan.dev", "v1alpha1", "WebApp");
    // Only the WebApp kind is allowed: Deployments are owned as declared, but not granted.
    let narrowed = plugin.configure(
        &PluginSettings {
            allow: Some(vec![AccessRule::new(webapps.clone(), WATCH_VERBS.to_vec())]),
            ..PluginSettings::default()
        },
        None,
    );
    assert_eq!(narrowed.manifest().watches, std::slice::from_ref(&webapps));
    assert!(narrowed.manifest().owns.is_empty());
    let mut r = fetched(&narrowed, &oref, &obj, grants()).await;
    assert_eq!(deployment_lookup(&mut r).await, Some(ErrorCategory::Auth));
    // Allowed to read Deployments only: readable, no longer owned.
    let reads = plugin.configure(
        &PluginSettings {
            allow: Some(vec![
                AccessRule::new(webapps, WATCH_VERBS.to_vec()),
                AccessRule::new(
                    Gvk::new("apps", "v1", "Deployment"),
                    vec![Verb::Get, Verb::List],
                ),
            ]),
            ..PluginSettings::default()
        },
        None,
    );
    assert!(reads.manifest().owns.is_empty());
    let mut r = fetched(&reads, &oref, &obj, grants()).await;
    assert_eq!(deployment_lookup(&mut r).await, None, "found and ready");
}

#[tokio::test]
async fn handler_only_plugins_refuse_reconciler_calls() {
    let plugin = runtime().load(&guest("deployment-handler")).await.unwrap();
    let (oref, obj) = webapp_json(8080);
    let err = plugin.reconcile(&oref, &obj).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("does not export reconciliation.open"),
        "{err}"
    );
}
