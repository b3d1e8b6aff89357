//! Handler calls with real status channels: order, capacity, closing, fan-out to two plugins.
#![allow(clippy::unwrap_used)]

use crate::support::{deployment_json, guest};
use capstan::contract::ObjectRef;
use capstan::plugin::{HandlerEvent, Runtime};
use capstan::status::{Delivery, EventStatus, Message};

fn deployment(name: &str, statuses: usize) -> (ObjectRef, String) {
    let mut v: serde_json::Value = serde_json::from_str(&deployment_json(name)).unwrap();
    v["metadata"]["labels"]["statuses"] = statuses.to_string().into();
    (ObjectRef::from_json(&v).unwrap(), v.to_string())
}

async fn load(name: &str) -> capstan::plugin::Plugin {
    Runtime::new(crate::support::runtime_config())
        .unwrap()
        .load(&guest(name))
        .await
        .unwrap()
}

#[tokio::test]
async fn deployment_handler_reports_through_its_channel() {
    let plugin = load("deployment-handler").await;
    let (oref, obj) = deployment("web", 0);
    let out = plugin
        .handle(&oref, HandlerEvent::Added(obj.clone()))
        .await
        .unwrap();
    assert_eq!(out.status, EventStatus::Completed);
    assert_eq!(out.statuses.len(), 2);
    assert_eq!(out.statuses[0].0.status, EventStatus::Processing);
    assert_eq!(
        out.statuses[0].0.messages,
        vec![Message::new("deployment", "web")]
    );
    assert_eq!(
        out.statuses[1].0.messages,
        vec![Message::new("replicas", "3")]
    );
    assert_eq!(out.statuses[1].1, Delivery::SendClose);
    assert_eq!(out.on_status_calls, 2);
    assert!(!out.left_open && out.on_status_errors.is_empty());

    let same = plugin
        .handle(
            &oref,
            HandlerEvent::Updated {
                new: obj.clone(),
                old: obj.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(same.status, EventStatus::Skip);
    assert_eq!(same.statuses[0].1, Delivery::SkipClose);
    assert_eq!(same.on_status_calls, 0, "skip-close never calls on-status");

    let gone = plugin
        .handle(&oref, HandlerEvent::Deleted(obj))
        .await
        .unwrap();
    assert_eq!(gone.status, EventStatus::Completed);
    assert_eq!(gone.statuses[0].0.messages[0].value, "web");
}

#[tokio::test]
async fn many_statuses_pass_a_channel_of_five_in_order() {
    let plugin = load("echo-handler").await;
    let (oref, obj) = deployment("flood", 40);
    let out = plugin
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap();
    assert_eq!(
        out.status,
        EventStatus::Completed,
        "no send failed while the channel was full"
    );
    let seqs: Vec<usize> = out
        .statuses
        .iter()
        .map(|(s, _)| s.messages[0].value.parse().unwrap())
        .collect();
    assert_eq!(seqs, (0..=40).collect::<Vec<_>>());
    assert_eq!(out.on_status_calls, 41);
    assert_eq!(
        out.statuses[40].0.error.as_deref(),
        Some("last"),
        "errors reach on-status intact"
    );
}

#[tokio::test]
async fn skip_close_does_not_reach_on_status() {
    let plugin = load("echo-handler").await;
    let (oref, obj) = deployment("skip", 1);
    let out = plugin
        .handle(
            &oref,
            HandlerEvent::Updated {
                new: obj.clone(),
                old: obj,
            },
        )
        .await
        .unwrap();
    assert_eq!(out.statuses.len(), 1);
    assert_eq!(out.on_status_calls, 0);
    assert!(
        out.on_status_errors.is_empty(),
        "echo-handler's on-status panics on skip statuses"
    );
}

#[tokio::test]
async fn an_open_channel_is_closed_by_the_host() {
    let plugin = load("forgetful-handler").await;
    let (oref, obj) = deployment("open", 0);
    let out = plugin
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap();
    assert!(out.left_open);
    assert_eq!(out.statuses.len(), 1);
    assert_eq!(out.status, EventStatus::Completed);
}

#[tokio::test]
async fn a_second_close_is_a_typed_error_in_the_guest() {
    let plugin = load("forgetful-handler").await;
    let (oref, obj) = deployment("twice", 0);
    let out = plugin
        .handle(&oref, HandlerEvent::Deleted(obj))
        .await
        .unwrap();
    assert_eq!(
        out.status,
        EventStatus::Completed,
        "the guest saw Err(Closed) on its second close"
    );
    assert_eq!(out.statuses.len(), 1);
}

#[tokio::test]
async fn retry_and_max_retry_reach_the_host() {
    let plugin = load("retry-handler").await;
    let (oref, obj) = deployment("again", 0);
    let out = plugin
        .handle(&oref, HandlerEvent::Added(obj))
        .await
        .unwrap();
    assert_eq!(out.status, EventStatus::Retry);
    let (status, _) = &out.statuses[0];
    assert!(status.retry);
    assert_eq!(status.max_retry, 3);
    assert_eq!(status.error.as_deref(), Some("backend unavailable"));
}

#[tokio::test]
async fn two_handlers_on_one_kind_run_concurrently() {
    let (a, b) = (load("deployment-handler").await, load("echo-handler").await);
    let (oref, obj) = deployment("fan", 3);
    let (ra, rb) = tokio::join!(
        a.handle(&oref, HandlerEvent::Added(obj.clone())),
        b.handle(&oref, HandlerEvent::Added(obj))
    );
    assert_eq!(ra.unwrap().statuses.len(), 2);
    assert_eq!(rb.unwrap().statuses.len(), 4);
}

#[tokio::test]
async fn undecodable_objects_fail_the_event_not_the_host() {
    let plugin = load("deployment-handler").await;
    let (oref, _) = deployment("bad", 0);
    let out = plugin
        .handle(&oref, HandlerEvent::Added("{not json".into()))
        .await
        .unwrap();
    assert_eq!(out.status, EventStatus::Failure);
    // The plugin still works afterwards.
    let (oref, obj) = deployment("good", 0);
    assert_eq!(
        plugin
            .handle(&oref, HandlerEvent::Added(obj))
            .await
            .unwrap()
            .status,
        EventStatus::Completed
    );
}
