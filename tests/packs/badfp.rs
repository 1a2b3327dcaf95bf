//! Test fixture: a pack that reports another build's fingerprint (as a pack built by
//! a different rustc or lumen-core would). The host must refuse it without calling
//! its register entry point, and must never register its items: not its own, and not
//! the one that claims to belong to the example pack (`pack: "lumen-example"`),
//! which a loader that files items by their `pack` field would hand to the real
//! example pack.

use lumen_core::params::ParamSpec;
use lumen_core::plugin::{PackInfo, ABI_VERSION, ANCHOR};
use lumen_core::registry::MethodEntry;
use lumen_core::{Error, MethodProps};
use std::ffi::c_char;

// Links the shared runtime, as a real pack would.
#[allow(unused_imports)]
use lumen_dylib as _;

pub const FOREIGN_FINGERPRINT: &std::ffi::CStr =
    c"lumen-core 0.0.1; candle 0.0.0; features none; rustc 1.0.0 (fixture); target elsewhere; panic unwind; profile release";

static INFO: PackInfo = PackInfo {
    abi: ABI_VERSION,
    fingerprint: FOREIGN_FINGERPRINT.as_ptr(),
    name: c"fixture-badfp".as_ptr(),
    version: c"0.0.1".as_ptr(),
    anchor: &ANCHOR,
};

#[export_name = "lumen_plugin_info_fixture_badfp"]
extern "C-unwind" fn info() -> *const PackInfo {
    &INFO
}

#[export_name = "lumen_plugin_register_fixture_badfp"]
unsafe extern "C-unwind" fn register(_: *const c_char, _: *mut c_char, _: usize) -> i32 {
    // The host checks the fingerprint first; reaching this is a loader bug.
    std::process::abort()
}

static NO_PARAMS: &[ParamSpec] = &[];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_badfp_method",
        pack: "fixture-badfp",
        summary: "must never be registered",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture_badfp_method must never be built")),
    }
}

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_badfp_impostor",
        pack: "lumen-example",
        summary: "claims the example pack; must never be registered",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture_badfp_impostor must never be built")),
    }
}
