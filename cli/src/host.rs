//! Building the host's registry: the statically linked standard packs, then the plugin
//! packs found at run time (see `lumen plugins` and `lumen_core::plugin`).

// Links the shared runtime (one lumen-core, one candle) that plugin packs also link.
// Without it the host would carry a private copy and refuse every pack.
extern crate lumen_dylib;

use lumen_core::plugin::{self, LoadOptions, LoadReport};
use lumen_core::Registry;
use std::sync::Once;

/// The registry with every linked pack and every compatible plugin pack. Plugin
/// problems are printed once per process as warnings; they never stop the host.
pub fn registry() -> anyhow::Result<Registry> {
    let (reg, report) = registry_with_report(&LoadOptions::default())?;
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        for w in report.problems() {
            eprintln!("warning: {w}");
        }
    });
    let _ = LOADED.set(
        report
            .packs
            .iter()
            .filter(|r| matches!(r.status, plugin::PackStatus::Loaded { .. }))
            .map(|r| LoadedPack {
                name: r.display_name().to_string(),
                crate_name: r.crate_name.clone(),
                version: r.version.clone().unwrap_or_else(|| "unknown".into()),
                fingerprint: r.fingerprint.clone().unwrap_or_else(|| "unknown".into()),
            })
            .collect(),
    );
    Ok(reg)
}

/// A plugin pack that `registry` registered (for the run key of `lumen eval`).
pub struct LoadedPack {
    pub name: String,
    pub crate_name: String,
    pub version: String,
    pub fingerprint: String,
}

static LOADED: std::sync::OnceLock<Vec<LoadedPack>> = std::sync::OnceLock::new();

/// The plugin packs of the first `registry` call (linked packs are not listed).
pub fn loaded_packs() -> &'static [LoadedPack] {
    LOADED.get().map(|v| v.as_slice()).unwrap_or(&[])
}

/// The registry and what plugin discovery found. Static packs come first, so a plugin
/// cannot take their names.
pub fn registry_with_report(opts: &LoadOptions) -> anyhow::Result<(Registry, LoadReport)> {
    let mut reg = static_registry()?;
    let report = plugin::load_into(&mut reg, opts);
    Ok((reg, report))
}

/// The registry of the packs linked into the binary.
pub fn static_registry() -> anyhow::Result<Registry> {
    // Referencing each std pack keeps the linker from dropping its registrations.
    lumen_std_gradients::link();
    lumen_std_relevance::link();
    lumen_std_generators::link();
    lumen_cdeepex::link();
    lumen_std_perturbation::link();
    lumen_std_propagation::link();
    lumen_clear::link();
    lumen_std_metrics::link();
    lumen_std_shapley::link();
    lumen_std_cam::link();
    lumen_std_layer::link();
    let _ = lumen_models::models_dirs;
    Ok(Registry::from_inventory()?)
}
