//! Test fixture: a compatible pack whose hand-written register entry point misbehaves
//! as `LUMEN_FIXTURE_REGISTER` says: `nonul` fills the whole error buffer without a
//! NUL and fails, `panic` panics out of the entry point (it is `extern "C-unwind"`),
//! `abort` aborts and `segv` dereferences null. Unset, it registers normally.

use lumen_core::params::ParamSpec;
use lumen_core::plugin::{PackInfo, ABI_VERSION, ANCHOR, FINGERPRINT_C};
use lumen_core::registry::MethodEntry;
use lumen_core::{Error, MethodProps};
use std::ffi::c_char;

// Links the shared runtime, as a real pack would.
#[allow(unused_imports)]
use lumen_dylib as _;

static INFO: PackInfo = PackInfo {
    abi: ABI_VERSION,
    fingerprint: FINGERPRINT_C.as_ptr() as *const c_char,
    name: c"fixture-misbehave".as_ptr(),
    version: c"0.1.0".as_ptr(),
    anchor: &ANCHOR,
};

#[export_name = "lumen_plugin_info_fixture_misbehave"]
extern "C-unwind" fn info() -> *const PackInfo {
    &INFO
}

#[export_name = "lumen_plugin_register_fixture_misbehave"]
unsafe extern "C-unwind" fn register(_: *const c_char, err: *mut c_char, err_len: usize) -> i32 {
    match std::env::var("LUMEN_FIXTURE_REGISTER").as_deref() {
        Ok("nonul") => {
            // SAFETY: the host provides err_len writable bytes.
            unsafe { std::ptr::write_bytes(err as *mut u8, b'A', err_len) };
            1
        }
        Ok("panic") => panic!("deliberate panic in the register entry point"),
        Ok("abort") => std::process::abort(),
        Ok("segv") => {
            // SAFETY: none; this is the crash the fixture exists for.
            unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
            0
        }
        _ => 0,
    }
}

static NO_PARAMS: &[ParamSpec] = &[];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_misbehave_method",
        pack: "fixture-misbehave",
        summary: "registered only when the register entry point succeeds",
        schema: || NO_PARAMS,
        props: || MethodProps::NONE,
        build: |_, _| Err(Error::msg("fixture")),
    }
}
