//! Test fixture: another crate that calls itself `lumen-example`. Its items must not be
//! merged into the real example pack: the second pack of one name is refused.

use lumen_core::params::ParamSpec;
use lumen_core::registry::MethodEntry;
use lumen_core::{Error, MethodProps};

lumen_dylib::declare_pack!("lumen-example");

static NO_PARAMS: &[ParamSpec] = &[];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_samename_extra",
        pack: "lumen-example",
        summary: "would be merged into the example pack",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture")),
    }
}
