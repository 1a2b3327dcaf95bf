//! The generic registry table (issue 16 §5): composites and metrics are items like
//! methods, `lumen plugins` lists every kind a pack adds, and the linked set does not
//! depend on what was loaded before.

use crate::plugins::{example_lib, loaded_registry};
use crate::util::lumen;
use lumen_core::Registry;
use std::collections::BTreeSet;

/// Every item of a registry as `pack: kind name`.
fn item_set(reg: &Registry) -> BTreeSet<String> {
    reg.packs().keys().flat_map(|p| reg.items_of(p).into_iter().map(move |i| format!("{p}: {i}"))).collect()
}

/// Built before and after a pack library was opened, the registry of the linked
/// packs is the same set, and the one with the pack loaded is that set plus the
/// pack's items only.
#[test]
fn linked_registry_does_not_depend_on_loading_order() {
    lumen_std_relevance::link();
    lumen_std_propagation::link();
    let before = item_set(&Registry::from_inventory().unwrap());
    let loaded = item_set(&loaded_registry(&[example_lib()]));
    let after = item_set(&Registry::from_inventory().unwrap());
    assert_eq!(before, after);
    assert!(!after.iter().any(|i| i.starts_with("lumen-example:")), "{after:?}");
    let added: Vec<&String> = loaded.difference(&after).collect();
    assert_eq!(added, ["lumen-example: method abs_input_x_gradient", "lumen-example: model example-class-means"]);
    assert!(after.is_subset(&loaded));
    // composites are registry items of the packs that own them
    for i in ["lumen-std-relevance: composite lrp_epsilon", "lumen-std-relevance: composite deeplift_rescale", "lumen-std-propagation: composite deconvnet"] {
        assert!(after.contains(i), "{i} not in {after:?}");
    }
}

/// `lumen plugins --json` names every kind a linked pack adds.
#[test]
fn plugins_lists_every_kind_per_pack() {
    let out = lumen(&["plugins", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = |pack: &str| -> Vec<String> {
        let p = v["packs"].as_array().unwrap().iter().find(|p| p["name"] == pack).unwrap_or_else(|| panic!("{pack}: {v}"));
        p["items"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect()
    };
    for (pack, item) in [
        ("lumen-std-relevance", "composite lrp_composite_epsilon_gamma_box"),
        ("lumen-std-relevance", "method lrp"),
        ("lumen-std-propagation", "composite guided_backprop"),
        ("lumen-std-metrics", "metric deletion"),
        ("lumen-std-generators", "generator mnist-vae"),
        ("lumen-std-perturbation", "sampler marginal"),
    ] {
        assert!(items(pack).contains(&item.to_string()), "{item} not in {pack}: {:?}", items(pack));
    }
    // kinds in listing order: methods before composites
    let rel = items("lumen-std-relevance");
    let first_composite = rel.iter().position(|i| i.starts_with("composite ")).unwrap();
    assert!(rel[..first_composite].iter().any(|i| i.starts_with("method ")) && !rel[first_composite..].iter().any(|i| i.starts_with("method ")), "{rel:?}");
}
