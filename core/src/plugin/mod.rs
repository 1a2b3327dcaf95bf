//! Runtime plugin packs: a pack is a shared library that adds methods, models,
//! generators or samplers to a running host.
//!
//! The contract, in order of what the host checks:
//! 1. **One shared lumen-core and candle.** Host and packs link the `lumen-dylib`
//!    crate (a Rust `dylib`), so the process holds one tensor-id counter and one
//!    inventory. A pack that carries its own copy (a plain `cdylib`) would mint tensor
//!    ids that collide with the host's and silently corrupt gradients; the host
//!    detects it by comparing the address of [`ANCHOR`] as both sides see it.
//! 2. **Two C entry points per pack crate**, named after the crate so several packs
//!    can also be linked statically into one binary:
//!    `lumen_plugin_info_<crate>` returns a [`PackInfo`] (ABI version first, then
//!    fingerprint, name, version, anchor) and is safe to call on any pack;
//!    `lumen_plugin_register_<crate>` checks the host's fingerprint from the pack's
//!    side and consents to registration. [`declare_pack!`](crate::declare_pack) writes
//!    both. Both are `extern "C-unwind"`, so a panic that escapes a hand-written entry
//!    point unwinds into the host's guard instead of aborting the process.
//! 3. **The fingerprint** ([`FINGERPRINT`]) names the lumen-core version, candle version
//!    and features, rustc's version and commit, the target, the panic strategy, the
//!    profile and a hash of lumen-core's source (`layout`, see `build.rs`), so that a
//!    pack built from an edited lumen-core with the same version is refused too. A
//!    pack whose fingerprint differs is refused before any Rust call.
//! 4. **Items belong to a library, not to a name.** A library's inventory items enter
//!    the process-wide lists when `dlopen` runs its constructors, before any check.
//!    The linked set ([`PackItems::linked`](crate::entry::PackItems::linked)) is
//!    fixed before the first `dlopen`. The loader snapshots the lists' item addresses before `dlopen` and attributes
//!    every new address to that library; the host registers those items itself, and
//!    only after the library passed every check, under the pack name the checks
//!    accepted. Items of a refused library are never registered, and
//!    [`Registry::from_inventory`](crate::Registry::from_inventory) never lists them as
//!    linked. (The alternative, a per-pack C entry point that returns the items, would
//!    need every pack to list its items by hand; the address diff needs nothing from the
//!    pack and cannot be lied to by a `pack` field.)
//! 5. **Panics** are caught at every crossing: the entry points, method builds and
//!    calls, and the accessors (`name`, `params`, `info`, ...) in
//!    [`registry`](crate::registry). An abort or a segfault inside a pack still ends
//!    the process: `lumen plugins --check DIR` tries each pack in a child first.
//! 6. **Libraries are never unloaded**: method objects and custom ops point into them.

mod loader;

pub use loader::{
    default_search_path, is_pack_file_name, items_of, load_into, load_library, pack_files, LoadOptions,
    LoadReport, PackReport, PackStatus, SearchDir, SearchKind,
};

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Version of the [`PackInfo`] layout, of the entry-point signatures and of the item
/// API. 2: the entry points are `extern "C-unwind"`, and registration is done by the
/// host. 3: one generic registry table (composites are registry items), and the
/// LRP/DeepLIFT/guided rules left core for their packs.
pub const ABI_VERSION: u32 = 3;

/// The fingerprint of this build of lumen-core (computed by `build.rs`). A `const`, so
/// a pack embeds the value it was compiled against.
pub const FINGERPRINT: &str = env!("LUMEN_FINGERPRINT");

/// [`FINGERPRINT`] with a trailing NUL, for the C info record.
pub const FINGERPRINT_C: &str = concat!(env!("LUMEN_FINGERPRINT"), "\0");

/// Symbol prefixes of the two entry points; the suffix is the pack's crate name.
pub const INFO_PREFIX: &str = "lumen_plugin_info_";
pub const REGISTER_PREFIX: &str = "lumen_plugin_register_";

/// A byte whose address identifies this copy of lumen-core in the process.
pub static ANCHOR: u8 = 0x4c;

/// What a pack's info entry point returns. Only C types: the host reads it before it
/// knows whether the pack's Rust types match its own. `abi` stays the first field in
/// every future layout.
#[repr(C)]
pub struct PackInfo {
    pub abi: u32,
    /// NUL-terminated [`FINGERPRINT`] the pack was built against.
    pub fingerprint: *const c_char,
    /// NUL-terminated package name; the `pack` field of the pack's items.
    pub name: *const c_char,
    /// NUL-terminated package version.
    pub version: *const c_char,
    /// The address of [`ANCHOR`] as the pack sees it.
    pub anchor: *const u8,
}

// The pointers are to immutable statics.
unsafe impl Sync for PackInfo {}

/// `lumen_plugin_info_<crate>`.
pub type InfoFn = unsafe extern "C-unwind" fn() -> *const PackInfo;

/// `lumen_plugin_register_<crate>(host_fingerprint, err, err_len)`: the pack's consent,
/// called after the host's checks. Returns 0 when the host may register the pack's
/// items; otherwise writes a message into `err` (the host reads at most `err_len`
/// bytes, NUL or not).
pub type RegisterFn = unsafe extern "C-unwind" fn(*const c_char, *mut c_char, usize) -> i32;

/// Writes `msg` NUL-terminated into a C buffer, truncating on a char boundary.
fn write_c(msg: &str, buf: *mut c_char, len: usize) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = msg.len().min(len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the caller provides `len` writable bytes at `buf`.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

/// The body of every pack's register entry point (see [`declare_pack!`](crate::declare_pack)):
/// the pack's own check of the host's fingerprint. Panics are caught here too, so
/// even a host that called it through plain `extern "C"` would not abort.
///
/// # Safety
/// `host_fp` is a NUL-terminated string and `err` has `err_len` writable bytes.
#[doc(hidden)]
pub unsafe fn __register(pack_fp: &str, host_fp: *const c_char, err: *mut c_char, err_len: usize) -> i32 {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        if host_fp.is_null() {
            return Err("null argument".into());
        }
        // SAFETY: guaranteed by the caller.
        let host_fp = unsafe { CStr::from_ptr(host_fp) }.to_string_lossy();
        if host_fp != pack_fp {
            return Err(format!("host fingerprint '{host_fp}' differs from the pack's '{pack_fp}'"));
        }
        Ok(())
    }));
    match r {
        Ok(Ok(())) => 0,
        Ok(Err(m)) => {
            write_c(&m, err, err_len);
            1
        }
        Err(p) => {
            write_c(&format!("panicked while registering: {}", crate::guard::panic_message(&*p)), err, err_len);
            2
        }
    }
}

/// Declares the calling crate a plugin pack: writes its two C entry points. Put it once
/// at the root of the pack's `lib.rs`. Packs normally call it through
/// `lumen_dylib::declare_pack!()`, which also makes the pack link the shared
/// `lumen-dylib` instead of its own copy of lumen-core.
///
/// The pack's name is its package name, the same one `submit_method!` and
/// `submit_model!` put on its items.
///
/// `declare_pack!("name")` gives the pack another name; its items must then carry the
/// same name in their `pack` field.
#[macro_export]
macro_rules! declare_pack {
    () => {
        $crate::declare_pack!(@impl concat!(env!("CARGO_PKG_NAME"), "\0"), env!("CARGO_PKG_NAME"));
    };
    ($name:literal) => {
        $crate::declare_pack!(@impl concat!($name, "\0"), $name);
    };
    (@impl $name_c:expr, $name:expr) => {
        const _: () = {
            static INFO: $crate::plugin::PackInfo = $crate::plugin::PackInfo {
                abi: $crate::plugin::ABI_VERSION,
                fingerprint: $crate::plugin::FINGERPRINT_C.as_ptr() as *const ::std::ffi::c_char,
                name: $name_c.as_ptr() as *const ::std::ffi::c_char,
                version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const ::std::ffi::c_char,
                anchor: &$crate::plugin::ANCHOR as *const u8,
            };

            #[export_name = concat!("lumen_plugin_info_", env!("CARGO_CRATE_NAME"))]
            extern "C-unwind" fn lumen_plugin_info() -> *const $crate::plugin::PackInfo {
                &INFO
            }

            #[export_name = concat!("lumen_plugin_register_", env!("CARGO_CRATE_NAME"))]
            unsafe extern "C-unwind" fn lumen_plugin_register(
                host_fp: *const ::std::ffi::c_char,
                err: *mut ::std::ffi::c_char,
                err_len: usize,
            ) -> i32 {
                // SAFETY: the host upholds the entry point's contract.
                unsafe { $crate::plugin::__register($crate::plugin::FINGERPRINT, host_fp, err, err_len) }
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_names_every_component() {
        for part in ["lumen-core ", "candle ", "features ", "rustc ", "target ", "panic ", "profile ", "layout "] {
            assert!(FINGERPRINT.contains(part), "{part} missing in {FINGERPRINT}");
        }
        assert!(FINGERPRINT.contains(env!("CARGO_PKG_VERSION")));
        // build.rs writes "unknown" for anything it could not find out
        assert!(!FINGERPRINT.split("; ").any(|f| f.ends_with(" unknown") || f.contains("unknown (")), "{FINGERPRINT}");
        assert_eq!(FINGERPRINT_C.strip_suffix('\0'), Some(FINGERPRINT));
    }

    /// build.rs states candle's version as a constant; it must be what Cargo.lock resolves.
    #[test]
    fn fingerprint_candle_version_matches_lock() {
        let lock_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
        let lock = std::fs::read_to_string(lock_path).expect("workspace Cargo.lock");
        let mut lines = lock.lines();
        let mut versions = vec![];
        while let Some(l) = lines.next() {
            if l.trim() == "name = \"candle-core\"" {
                let v = lines.next().and_then(|l| l.trim().strip_prefix("version = ")).expect("version line");
                versions.push(v.trim_matches('"').to_string());
            }
        }
        assert_eq!(versions.len(), 1, "{versions:?}");
        assert!(FINGERPRINT.contains(&format!("candle {};", versions[0])), "{FINGERPRINT} vs {versions:?}");
    }

    #[test]
    fn register_checks_the_host_fingerprint() {
        let mut err = [0 as c_char; 512];
        let other = c"another host";
        // SAFETY: valid strings and a 512-byte buffer.
        let code = unsafe { __register(FINGERPRINT, other.as_ptr(), err.as_mut_ptr(), 512) };
        assert_eq!(code, 1);
        let m = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        assert!(m.contains("another host") && m.contains(FINGERPRINT), "{m}");
        let fp = std::ffi::CString::new(FINGERPRINT).unwrap();
        let code = unsafe { __register(FINGERPRINT, fp.as_ptr(), err.as_mut_ptr(), 512) };
        assert_eq!(code, 0);
        assert_eq!(unsafe { __register(FINGERPRINT, std::ptr::null(), err.as_mut_ptr(), 512) }, 1);
    }

    mod layout {
        include!("../../layout_hash.rs");

        /// The fingerprint's layout hash is that of the source as it is now, and it
        /// moves with any change to code, not with comments or indentation.
        #[test]
        fn layout_hash_follows_the_source() {
            let files = source_files(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))).unwrap();
            assert!(files.iter().any(|(p, _)| p == "plugin/mod.rs"), "{:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>());
            let h = layout_hash(&files);
            let fp = crate::plugin::FINGERPRINT;
            assert!(fp.ends_with(&format!("; layout {h}")), "{fp} vs {h}");
            let edit = |f: &dyn Fn(&str) -> String| {
                let mut v = files.clone();
                let i = v.iter().position(|(p, _)| p == "registry.rs").unwrap();
                v[i].1 = f(&v[i].1);
                layout_hash(&v)
            };
            let field = edit(&|t| t.replacen("pub struct ModelEntry {", "pub struct ModelEntry {\n    pub extra: u8,", 1));
            assert_ne!(field, h);
            let comment = edit(&|t| t.replacen("pub struct ModelEntry {", "// a comment\n  pub struct ModelEntry {  ", 1));
            assert_eq!(comment, h);
            let mut renamed = files.clone();
            renamed[0].0.push_str(".moved");
            assert_ne!(layout_hash(&renamed), h);
        }
    }

    #[test]
    fn c_buffer_is_truncated_on_char_boundary() {
        let mut buf = [1 as c_char; 6];
        write_c("ab€cd", buf.as_mut_ptr(), buf.len());
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(s, "ab€");
        let mut small = [1 as c_char; 3];
        write_c("ab€", small.as_mut_ptr(), small.len());
        assert_eq!(unsafe { CStr::from_ptr(small.as_ptr()) }.to_str().unwrap(), "ab");
    }
}
