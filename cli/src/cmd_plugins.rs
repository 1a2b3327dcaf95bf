//! `lumen plugins`: where packs are searched, and each pack with its origin, version,
//! fingerprint status and items.

use crate::host;
use clap::Args;
use lumen_core::candle::Device;
use lumen_core::plugin::{self, LoadOptions, PackStatus};
use serde_json::json;

#[derive(Args)]
pub struct PluginsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

struct Row {
    name: String,
    version: String,
    origin: String,
    fingerprint: &'static str,
    status: &'static str,
    message: String,
    items: Vec<String>,
}

pub fn run(a: PluginsArgs, _device: &Device) -> anyhow::Result<()> {
    let opts = LoadOptions::default();
    let (reg, report) = host::registry_with_report(&opts)?;
    let mut rows = vec![];
    for (pack, source) in reg.packs() {
        if source == "static" {
            rows.push(Row {
                name: pack.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                origin: "static (linked into the host)".into(),
                fingerprint: "same build",
                status: "loaded",
                message: String::new(),
                items: plugin::items_of(&reg, pack),
            });
        }
    }
    for p in &report.packs {
        let fp_ok = p.fingerprint.as_deref() == Some(opts.expected_fingerprint.as_str());
        let (status, message, items) = match &p.status {
            PackStatus::Loaded { items } => ("loaded", String::new(), items.clone()),
            PackStatus::AlreadyLoaded { by } => ("duplicate file", format!("already registered from {by}"), vec![]),
            PackStatus::Refused(e) => ("refused", e.to_string(), vec![]),
            PackStatus::Failed(e) => ("failed", e.to_string(), vec![]),
        };
        rows.push(Row {
            name: p.display_name().to_string(),
            version: p.version.clone().unwrap_or_else(|| "?".into()),
            origin: format!("{} (found via {})", p.path.display(), p.found_in),
            fingerprint: match (&p.fingerprint, fp_ok) {
                (None, _) => "unread",
                (Some(_), true) => "ok",
                (Some(_), false) => "MISMATCH",
            },
            status,
            message,
            items,
        });
    }
    if a.json {
        let v = json!({
            "host_fingerprint": opts.expected_fingerprint,
            "search_path": opts.search.iter().map(|d| json!({"path": d.path.display().to_string(), "kind": d.kind.to_string(), "exists": d.path.exists()})).collect::<Vec<_>>(),
            "packs": rows.iter().map(|r| json!({
                "name": r.name, "version": r.version, "origin": r.origin, "fingerprint": r.fingerprint,
                "status": r.status, "message": r.message, "items": r.items,
            })).collect::<Vec<_>>(),
            "warnings": report.warnings,
            "notes": report.notes,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("host fingerprint: {}", opts.expected_fingerprint);
    println!("search path (in order):");
    for d in &opts.search {
        let missing = if d.path.exists() { "" } else { "  [missing]" };
        println!("  {}  ({}){missing}", d.path.display(), d.kind);
    }
    println!("packs:");
    for r in &rows {
        println!("  {} {}  [{}]  fingerprint {}  {}", r.name, r.version, r.origin, r.fingerprint, r.status);
        if !r.message.is_empty() {
            println!("      {}", r.message);
        }
        for i in &r.items {
            println!("      {i}");
        }
    }
    if !report.warnings.is_empty() {
        println!("warnings:");
        for w in &report.warnings {
            println!("  {w}");
        }
    }
    if !report.notes.is_empty() {
        println!("notes (cargo target directory):");
        for w in &report.notes {
            println!("  {w}");
        }
    }
    Ok(())
}
