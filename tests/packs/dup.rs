//! Test fixture: a different pack that claims the example pack's method name. Loading
//! it after the example pack is an error naming both packs, and none of its items
//! (not even `fixture_dup_only`) is registered.

use lumen_core::params::ParamSpec;
use lumen_core::registry::MethodEntry;
use lumen_core::{Error, MethodProps};

lumen_dylib::declare_pack!("fixture-dup");

static NO_PARAMS: &[ParamSpec] = &[];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "abs_input_x_gradient",
        pack: "fixture-dup",
        summary: "clashes with the example pack",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture clash")),
    }
}

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_dup_only",
        pack: "fixture-dup",
        summary: "registered only if the whole pack is",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture")),
    }
}
