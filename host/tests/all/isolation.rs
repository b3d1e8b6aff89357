//! One instance per unit of work: nothing a guest keeps in memory (here a `static` counter) crosses
//! from one object's reconcile, or one event, to another's.
#![allow(clippy::unwrap_used)]

use crate::support::{deployment_json, guest};
use capstan::contract::ObjectRef;
use capstan::plugin::{Grants, HandlerEvent, Planned, Plugin, Runtime};

async fn load(name: &str) -> Plugin {
    Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&guest(name))
        .await
        .unwrap()
}

fn webapp(name: &str) -> (ObjectRef, String) {
    let obj = serde_json::json!({
        "apiVersion": "examples.capstan.dev/v1alpha1", "kind": "WebApp",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"image": "nginx", "port": 80, "replicas": 1}
    });
    (ObjectRef::from_json(&obj).unwrap(), obj.to_string())
}

/// One whole reconcile of `name`: what the guest's counter read when `health` and `status` ran.
async fn reconcile(plugin: &Plugin, name: &str) -> (String, serde_json::Value) {
    let (oref, obj) = webapp(name);
    let mut r = plugin.reconcile(&oref, &obj).await.unwrap().unwrap();
    r.fetch(Grants::default()).await.unwrap().unwrap();
    let health = r.health().await.unwrap();
    let planned: Vec<Planned> = r.plan().await.unwrap().unwrap();
    assert!(planned.is_empty());
    let status = r.status(&serde_json::json!({})).await.unwrap();
    (health[0].message.clone(), status.fields["calls"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reconcile_sees_what_another_left_in_memory() {
    let plugin = load("stateful-reconciler").await;
    // One after another: a reused instance would count 4, 8, 12, ...
    for name in ["a", "b", "c", "a"] {
        let (health, calls) = reconcile(&plugin, name).await;
        assert_eq!(health, "calls=2", "fetch, then health, on {name}");
        assert_eq!(calls, 4, "fetch, health, plan, status on {name}");
    }
    // At once: each reconcile still has an instance of its own.
    let runs = (0..8).map(|i| {
        let plugin = plugin.clone();
        tokio::spawn(async move { reconcile(&plugin, &format!("p{i}")).await })
    });
    for run in runs {
        let (health, calls) = run.await.unwrap();
        assert_eq!((health.as_str(), calls), ("calls=2", serde_json::json!(4)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_sees_what_another_left_in_memory() {
    let plugin = load("stateful-handler").await;
    for (i, name) in ["web", "api", "web", "db"].iter().enumerate() {
        let json = deployment_json(name);
        let oref = ObjectRef::from_json(&serde_json::from_str(&json).unwrap()).unwrap();
        let event = if i == 2 {
            HandlerEvent::Updated {
                new: json.clone(),
                old: json,
            }
        } else {
            HandlerEvent::Added(json)
        };
        let out = plugin.handle(&oref, event).await.unwrap();
        let calls = &out.statuses[0].0.messages;
        assert_eq!(calls.len(), 1);
        assert_eq!(
            (calls[0].key.as_str(), calls[0].value.as_str()),
            ("calls", "1"),
            "event {i} on {name}: a reused instance would count {}",
            i + 1
        );
        assert_eq!(out.on_status_calls, 1);
        assert!(out.on_status_errors.is_empty());
    }
}
