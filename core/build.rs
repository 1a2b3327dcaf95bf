//! Computes the plugin ABI fingerprint (see `src/plugin/mod.rs`).
//!
//! A pack and the host can share Rust types only if they were compiled against the
//! same lumen-core, the same candle with the same features, by the same rustc for the
//! same target, panic strategy and profile. The fingerprint spells all of that out so
//! a mismatch can be refused with a readable message before any Rust call is made.

use std::process::Command;

include!("layout_hash.rs");

/// candle is pinned exactly (`=0.11.1` in the workspace manifest), so its version is a
/// constant here rather than a parse of Cargo.lock, which would rebuild lumen-core on
/// every lock change. A unit test (`plugin::fingerprint`) checks it against Cargo.lock.
const CANDLE_VERSION: &str = "0.11.1";

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let vv = Command::new(&rustc)
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    let field = |k: &str| {
        vv.lines().find_map(|l| l.strip_prefix(k)).map(|s| s.trim().to_string()).unwrap_or_else(|| "unknown".into())
    };
    let rustc_id = format!("{} ({})", field("release:"), field("commit-hash:"));

    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unknown".into());
    let mut features = vec![];
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        features.push("cuda");
    }
    let features = if features.is_empty() { "none".to_string() } else { features.join("+") };

    let candle = CANDLE_VERSION;

    // A pack built from an edited lumen-core with the same version must be refused.
    let src = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("src");
    let layout = source_files(&src).map(|f| layout_hash(&f)).unwrap_or_else(|_| "unknown".into());

    let fp = format!(
        "lumen-core {}; candle {}; features {}; rustc {}; target {}; panic {}; profile {}; layout {}",
        env("CARGO_PKG_VERSION"),
        candle,
        features,
        rustc_id,
        env("TARGET"),
        env("CARGO_CFG_PANIC"),
        env("PROFILE"),
        layout,
    );
    println!("cargo:rustc-env=LUMEN_FINGERPRINT={fp}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=layout_hash.rs");
    // A directory: cargo reruns when any file below it changes.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-env-changed=RUSTC");
}

