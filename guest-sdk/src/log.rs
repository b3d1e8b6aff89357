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

/// Log a message with key/value fields. Natively (in unit tests) it prints to stderr.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(all(
        target_arch = "wasm32",
        any(feature = "handler", feature = "reconciler")
    ))]
    crate::glue::log(level, message, fields);
    #[cfg(not(all(
        target_arch = "wasm32",
        any(feature = "handler", feature = "reconciler")
    )))]
    eprintln!("[{level:?}] {message} {fields:?}");
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
