//! Test fixture: a host that links no pack at all, only the shared runtime. Every
//! method, model and sampler it knows comes from the plugin files in the directory
//! given as the first argument, so it proves the standard packs are ordinary packs.
//!
//! `bare_host DIR` prints one line per pack (`pack NAME STATUS`), then the registry's
//! item names, then the sum of |saliency| and of integrated gradients for
//! `mnist-cnn` on test digit 0, which the integration test compares with the host.

// The shared runtime, as every host must link it; nothing else of lumen is linked.
extern crate lumen_dylib;

use lumen_core::candle::Device;
use lumen_core::plugin::{load_into, LoadOptions, PackStatus};
use lumen_core::{Params, Registry, Target};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: bare_host DIR"))?);
    let mut reg = Registry::from_inventory()?;
    anyhow::ensure!(reg.methods().count() == 0, "the bare host links a pack statically");
    let report = load_into(&mut reg, &LoadOptions::only(&[dir]));
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for p in &report.packs {
        let status = match &p.status {
            PackStatus::Loaded { items } => format!("loaded {}", items.len()),
            PackStatus::AlreadyLoaded { .. } => "already".into(),
            PackStatus::Refused(e) => format!("refused {e}"),
            PackStatus::Failed(e) => format!("failed {e}"),
        };
        println!("pack {} {status}", p.display_name());
    }
    let names = |v: Vec<&str>| v.join(",");
    println!("methods {}", names(reg.methods().map(|(e, _)| e.name).collect()));
    println!("models {}", names(reg.models().map(|(e, _)| e.name).collect()));
    println!("generators {}", names(reg.generators().map(|(e, _)| e.name).collect()));
    println!("samplers {}", names(reg.samplers().map(|(e, _)| e.name).collect()));
    println!("metrics {}", names(reg.metrics().map(|(e, _)| e.name).collect()));

    let model = reg.load_model("mnist-cnn", &Device::Cpu)?;
    let x = lumen_core::data::load_input("mnist:test:0", &Device::Cpu)?.tensor.unsqueeze(0)?;
    for (method, params) in [("saliency", Params::new()), ("integrated_gradients", Params::new().with("steps", 16i64))] {
        let m = reg.build_method(method, &params)?;
        let e = m.attribute(model.as_ref(), &x, &Target::Class(7))?;
        let a = e.attribution();
        println!("{method} {:.9} {:.9}", a.abs()?.sum_all()?.to_scalar::<f32>()?, a.sum_all()?.to_scalar::<f32>()?);
    }
    Ok(())
}
