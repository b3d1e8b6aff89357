//! Reads `/config/greeting`, tries to write `/config/out` and reads `$GREETING`, reporting each
//! result as a status message: shows what WASI grants a plugin (nothing, unless configured).

use capstan_sdk::k8s_openapi::api::apps::v1::Deployment;
use capstan_sdk::{EventProcessStatus, EventStatus, Handler, Manifest, Plugin, StatusChannel};

struct Fs;

impl Plugin for Fs {
    fn manifest() -> Manifest {
        Manifest::new("fs-handler", "0.1.0").watches::<Deployment>()
    }
}

fn outcome<T>(r: std::io::Result<T>, ok: impl FnOnce(T) -> String) -> String {
    r.map_or_else(|e| format!("error: {e}"), ok)
}

impl Handler for Fs {
    type Object = Deployment;

    fn added(_: Deployment, ch: &StatusChannel<'_>) -> EventStatus {
        let read = outcome(std::fs::read_to_string("/config/greeting"), |s| s);
        let write = outcome(std::fs::write("/config/out", "x"), |()| "written".into());
        let env = std::env::var("GREETING").unwrap_or_else(|_| "unset".into());
        let _ = EventProcessStatus::new()
            .with_message("read", read)
            .with_message("write", write)
            .with_message("env", env)
            .send_close(ch);
        EventStatus::Completed
    }

    fn updated(_: Deployment, _: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }

    fn deleted(_: Deployment, _: &StatusChannel<'_>) -> EventStatus {
        EventStatus::Skip
    }
}

capstan_sdk::export!(Fs: Handler);
