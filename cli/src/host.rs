//! Building the host's registry from the linked standard packs (and, later, plugins).

use lumen_core::Registry;

/// The registry with every linked pack.
pub fn registry() -> anyhow::Result<Registry> {
    // Referencing each std pack keeps the linker from dropping its registrations.
    lumen_std_gradients::link();
    lumen_std_relevance::link();
    lumen_std_generators::link();
    lumen_cdeepex::link();
    lumen_std_perturbation::link();
    lumen_std_propagation::link();
    let _ = lumen_models::models_dirs;
    Ok(Registry::from_inventory()?)
}
