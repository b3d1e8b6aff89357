//! Structured logging into the host's tracing, tagged with the plugin's name.

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Unexpected but handled.
    Warn,
    /// An error.
    Error,
}

/// Whether logs go to the host (inside a plugin) or are captured per thread (native builds).
macro_rules! in_plugin {
    ($($item:tt)*) => {
        #[cfg(all(target_arch = "wasm32", any(feature = "handler", feature = "reconciler")))]
        $($item)*
    };
}

/// Log a message with key/value fields. In native builds (unit tests) records are kept per thread,
/// for [`captured`].
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    in_plugin! { return crate::glue::log(level, message, fields); }
    #[allow(unreachable_code)]
    native::record(level, message, fields);
}

/// Log records of this thread so far (native builds only; empty inside a plugin), and clear them.
pub fn captured() -> Vec<(Level, String)> {
    native::take()
}

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
