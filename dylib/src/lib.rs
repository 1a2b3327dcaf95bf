//! lumen-dylib: the shared runtime of lumen plugin packs (the bevy_dylib pattern).
//!
//! Candle numbers tensors from a process-global counter and backprop keys gradients by
//! that id; lumen-core keeps its registry items in process-global lists. Both must
//! exist once per process, so the host and every pack link this one Rust `dylib`,
//! which contains lumen-core and candle, instead of each carrying a static copy.
//!
//! A pack depends on `lumen-core` (for its API) and on `lumen-dylib`, and calls
//! [`declare_pack!`] once. See `plugins/example/README.md`.

pub use lumen_core;
pub use lumen_core::candle;
pub use lumen_core::candle_nn;

/// Declares the calling crate a lumen plugin pack: exports its two C entry points
/// (see `lumen_core::plugin`) and makes the crate link this shared runtime rather than
/// a private copy of lumen-core.
#[macro_export]
macro_rules! declare_pack {
    ($($name:literal)?) => {
        // Naming this crate is what makes rustc link the shared dylib.
        #[allow(unused_imports)]
        use $crate as _;
        $crate::lumen_core::declare_pack!($($name)?);
    };
}

/// The fingerprint of the lumen-core inside this runtime.
pub fn fingerprint() -> &'static str {
    lumen_core::plugin::FINGERPRINT
}
