//! Structured logging into the host's tracing, tagged with the plugin's name.

/// Severity of a log record (the contract's own type).
pub use crate::wit::capstan::controller::log::Level;

/// Log a message with key/value fields: into the host's tracing inside a plugin; in native builds
/// (unit tests) records are kept per thread, for [`captured`].
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    host::log(level, message, fields);
    #[cfg(not(target_arch = "wasm32"))]
    native::record(level, message, fields);
}

/// Log records of this thread so far (native builds only; empty inside a plugin), and clear them.
pub fn captured() -> Vec<(Level, String)> {
    #[cfg(target_arch = "wasm32")]
    return Vec::new();
    #[cfg(not(target_arch = "wasm32"))]
    native::take()
}

#[cfg(target_arch = "wasm32")]
mod host {
    use super::Level;

    pub(super) fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        crate::wit::capstan::controller::log::log(level, message, &fields);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::Level;
    use std::cell::RefCell;

    /// Records kept per thread at most; older ones are discarded.
    const KEEP: usize = 1000;

    thread_local! {
        static RECORDS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn record(level: Level, message: &str, fields: &[(&str, &str)]) {
        RECORDS.with(|r| {
            let mut r = r.borrow_mut();
            if r.len() >= KEEP {
                r.remove(0);
            }
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            r.push((
                level,
                format!("{message} {}", fields.join(" "))
                    .trim_end()
                    .to_owned(),
            ));
        });
    }

    pub(super) fn take() -> Vec<(Level, String)> {
        RECORDS.with(|r| std::mem::take(&mut *r.borrow_mut()))
    }
}

/// Log at info level.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields);
}

/// Log at warn level.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields);
}

/// Log at error level.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    log(Level::Error, message, fields);
}

/// Log at debug level.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(Level::Debug, message, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_logs_are_captured() {
        info("hello", &[("k", "v")]);
        assert_eq!(captured(), vec![(Level::Info, "hello k=v".to_owned())]);
        assert!(captured().is_empty());
    }
}
