//! Sends as many statuses as the object's `statuses` label says, then closes; a second handler on
//! Deployments for fan-out tests. Its on-status panics on a skip-closed status, which must never reach it.

const VERSION: &str = "0.1.0";

include!("echo.rs");
