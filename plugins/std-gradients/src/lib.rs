//! Standard gradient methods. Every item registers itself with `inventory`; the
//! host reaches it through the registry like any other pack.

pub mod saliency;

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}
