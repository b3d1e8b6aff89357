//! echo-handler at version 0.2.0: the same code under a new version, for hot-reload tests.

const VERSION: &str = "0.2.0";

include!("../../echo-handler/src/echo.rs");
