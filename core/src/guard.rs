//! Containing panics from pack code: every call into a pack runs under [`guard`].

use crate::{Error, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into [`Error::PluginPanicked`].
pub fn guard<T>(pack: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    guard_with(|message| Error::PluginPanicked { plugin: pack.to_string(), message }, f)
}

/// Runs `f`, turning a panic into the error `blame` makes of its (one-line) message.
pub fn guard_with<T>(blame: impl FnOnce(String) -> Error, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(blame(panic_message(&*payload))),
    }
}

/// The text of a panic payload, on one line.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
