//! Test fixture: a pack that does NOT link the shared runtime. It calls lumen-core's
//! `declare_pack!` directly and never names `lumen_dylib`, so the cdylib carries its
//! own copy of lumen-core and candle — the set-up that corrupts gradients (two
//! tensor-id counters). Its fingerprint matches; the host must still refuse it.

use lumen_core::params::ParamSpec;
use lumen_core::registry::MethodEntry;
use lumen_core::{Error, MethodProps};

lumen_core::declare_pack!("fixture-private");

static NO_PARAMS: &[ParamSpec] = &[];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_private_method",
        pack: "fixture-private",
        summary: "lives in a private lumen-core",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture")),
    }
}
