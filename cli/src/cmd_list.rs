//! `lumen list`: everything the registry knows, with parameters and defaults.

use crate::host;
use clap::Args;
use lumen_core::candle::Device;
use lumen_core::ParamSpec;

#[derive(Args)]
pub struct ListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn params_json(ps: &[ParamSpec]) -> serde_json::Value {
    ps.iter()
        .map(|p| serde_json::json!({"name": p.name, "type": p.kind.to_string(), "max": p.max, "default": p.default, "doc": p.doc}))
        .collect()
}

pub fn run(a: ListArgs, _device: &Device) -> anyhow::Result<()> {
    let reg = host::registry()?;
    if a.json {
        let v = serde_json::json!({
            "methods": reg.methods().map(|(e, o)| serde_json::json!({"name": e.name, "origin": o.to_string(), "summary": e.summary, "params": params_json(e.params())})).collect::<Vec<_>>(),
            "models": reg.models().map(|(e, o)| serde_json::json!({"name": e.name, "origin": o.to_string(), "summary": e.summary})).collect::<Vec<_>>(),
            "generators": reg.generators().map(|(e, o)| serde_json::json!({"name": e.name, "origin": o.to_string(), "summary": e.summary})).collect::<Vec<_>>(),
            "samplers": reg.samplers().map(|(e, o)| serde_json::json!({"name": e.name, "origin": o.to_string(), "summary": e.summary, "params": params_json(e.params)})).collect::<Vec<_>>(),
            "metrics": reg.metrics().map(|(e, o)| serde_json::json!({"name": e.name, "origin": o.to_string(), "summary": e.summary, "higher_is_better": e.higher_is_better, "params": params_json(e.params)})).collect::<Vec<_>>(),
            "composites": reg.composites().map(|(e, o)| serde_json::json!({"name": e.name, "origin": o.to_string(), "summary": e.summary})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let show_params = |ps: &[ParamSpec]| {
        for p in ps {
            let d = if p.default.is_empty() { "none".to_string() } else { p.default.to_string() };
            println!("      {:<14} {:<22} default {:<12} {}", p.name, p.kind_text(), d, p.doc);
        }
    };
    println!("methods:");
    for (e, o) in reg.methods() {
        println!("  {:<24} {}  [{}]", e.name, e.summary, o);
        show_params(e.params());
    }
    println!("models:");
    for (e, o) in reg.models() {
        println!("  {:<24} {}  [{}]", e.name, e.summary, o);
    }
    println!("generators:");
    for (e, o) in reg.generators() {
        println!("  {:<24} {}  [{}]", e.name, e.summary, o);
    }
    println!("samplers:");
    for (e, o) in reg.samplers() {
        println!("  {:<24} {}  [{}]", e.name, e.summary, o);
        show_params(e.params);
    }
    println!("metrics:");
    for (e, o) in reg.metrics() {
        let better = if e.higher_is_better { "higher is better" } else { "lower is better" };
        // Most summaries already say which way is better; say it once.
        let said = e.summary.to_lowercase().contains(better);
        let dir = if said { String::new() } else { format!(" ({better})") };
        println!("  {:<24} {}{dir}  [{}]", e.name, e.summary, o);
        show_params(e.params);
    }
    println!("composites:");
    for (e, o) in reg.composites() {
        println!("  {:<24} {}  [{}]", e.name, e.summary, o);
    }
    Ok(())
}
