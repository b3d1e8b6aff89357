//! A component that exports nothing.

/// Never called.
pub fn nothing() -> u32 {
    0
}
