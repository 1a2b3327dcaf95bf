//! The template lumen plugin pack. Copy this crate to start your own (see README.md).
//!
//! It shows each kind of item a pack can provide:
//! - a method, [`abs_ixg`]: |input × gradient|, optionally averaged over noisy copies,
//!   capped at a percentile of each map;
//! - a model, [`class_means`]: a linear MNIST classifier made from the class means of
//!   the bundled training split.
//!
//! Items register themselves with `submit_method!`/`submit_model!`; the single
//! `declare_pack!()` below exports the entry points the host looks for.

pub mod abs_ixg;
pub mod class_means;

lumen_dylib::declare_pack!();

/// Keeps this pack's registrations when a host links it statically.
pub fn link() {}
