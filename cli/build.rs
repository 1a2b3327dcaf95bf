//! Lets the `lumen` binary (and this package's tests and examples) find the shared
//! libraries it links dynamically — lumen-dylib and Rust's std (the workspace builds
//! with `-C prefer-dynamic`, see .cargo/config.toml) — when run directly rather than
//! through cargo, which sets the library path itself.
//!
//! Search order: next to the binary (`$ORIGIN`, the install layout), `$ORIGIN/deps`
//! (cargo's target/<profile>/deps), `$ORIGIN/../deps` (for examples), `$ORIGIN/../lib`
//! and `$ORIGIN/../lib/lumen/plugins` (the relocatable `dist` layout, see
//! tools/dist.sh), then the toolchain's std. Set at link time, so packaging needs no
//! patchelf.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let std_dir = format!("{sysroot}/lib/rustlib/{target}/lib");
    match os.as_str() {
        "linux" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "illumos" | "solaris" => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN:$ORIGIN/deps:$ORIGIN/../deps:$ORIGIN/../lib:$ORIGIN/../lib/lumen/plugins:{std_dir}");
        }
        "macos" | "ios" => {
            for p in [
                "@executable_path",
                "@executable_path/deps",
                "@executable_path/../deps",
                "@executable_path/../lib",
                "@executable_path/../lib/lumen/plugins",
                &std_dir,
            ] {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{p}");
            }
        }
        _ => {} // Windows finds DLLs next to the executable and on PATH.
    }
}
