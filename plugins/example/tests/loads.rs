//! The pack as a host sees it: its built library is found, passes the fingerprint
//! and shared-runtime checks, and registers exactly its items. Keep this test in your
//! own pack.

// Share the runtime with the pack, as a host does.
extern crate lumen_dylib;

use lumen_core::plugin::{load_library, LoadOptions, PackStatus, FINGERPRINT};
use lumen_core::{Params, Registry, Target};
use std::path::PathBuf;

/// The cdylib cargo built for this test run (next to this test binary, in deps/).
fn pack_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let name = format!("{}lumen_example.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    let p = exe.parent().unwrap().join(name);
    assert!(p.exists(), "{} not built", p.display());
    p
}

#[test]
fn the_built_library_loads_and_registers_its_items() {
    let mut reg = Registry::new();
    let rep = load_library(&mut reg, &pack_library(), &LoadOptions::only(&[]));
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert_eq!(rep.packs.len(), 1);
    let p = &rep.packs[0];
    assert_eq!(p.name.as_deref(), Some("lumen-example"));
    assert_eq!(p.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(p.fingerprint.as_deref(), Some(FINGERPRINT));
    match &p.status {
        PackStatus::Loaded { items } => {
            assert_eq!(items, &["method abs_input_x_gradient".to_string(), "model example-class-means".to_string()])
        }
        s => panic!("{s:?}"),
    }
    // and it runs: the pack's method on the pack's model
    let dev = lumen_core::candle::Device::Cpu;
    let model = reg.load_model("example-class-means", &dev).unwrap();
    let (x, _) = lumen_core::data::load_input("mnist:test:3", &dev).map(|i| (i.tensor, i.label)).unwrap();
    let m = reg.build_method("abs_input_x_gradient", &Params::new().with("percentile", 90.0)).unwrap();
    let a = m.attribute(model.as_ref(), &x.unsqueeze(0).unwrap(), &Target::Predicted).unwrap();
    let v = a.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(v.len(), 784);
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    assert!(v.iter().filter(|x| **x == 1.0).count() >= 784 / 10);
}
