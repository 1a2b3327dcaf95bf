//! Test fixture: a pack built, as far as the host can tell, from an edited lumen-core
//! with the same version: its fingerprint equals the host's except for the layout
//! hash. The host must refuse it before calling its register entry point.

use lumen_core::params::ParamSpec;
use lumen_core::plugin::{PackInfo, ABI_VERSION, ANCHOR, FINGERPRINT};
use lumen_core::registry::MethodEntry;
use lumen_core::{Error, MethodProps};
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

#[allow(unused_imports)]
use lumen_dylib as _;

/// The layout hash an edited lumen-core would have.
pub const EDITED_LAYOUT: &str = "0123456789abcdef";

#[export_name = "lumen_plugin_info_fixture_layout"]
extern "C-unwind" fn info() -> *const PackInfo {
    static INFO: OnceLock<usize> = OnceLock::new();
    *INFO.get_or_init(|| {
        let (same, _) = FINGERPRINT.rsplit_once("; layout ").expect("a layout field");
        let fp = CString::new(format!("{same}; layout {EDITED_LAYOUT}")).expect("no NUL");
        let info = PackInfo {
            abi: ABI_VERSION,
            fingerprint: fp.into_raw(),
            name: c"fixture-layout".as_ptr(),
            version: c"0.1.0".as_ptr(),
            anchor: &ANCHOR,
        };
        Box::leak(Box::new(info)) as *const PackInfo as usize
    }) as *const PackInfo
}

#[export_name = "lumen_plugin_register_fixture_layout"]
unsafe extern "C-unwind" fn register(_: *const c_char, _: *mut c_char, _: usize) -> i32 {
    // The host checks the fingerprint first; reaching this is a loader bug.
    std::process::abort()
}

static NO_PARAMS: &[ParamSpec] = &[];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_layout_method",
        pack: "fixture-layout",
        summary: "must never be registered",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture")),
    }
}
