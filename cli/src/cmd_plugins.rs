//! `lumen plugins`: where packs are searched, and each pack with its origin, version,
//! fingerprint status and items. `lumen plugins --check DIR` tries each pack file of
//! DIR in a child process first, so that a pack that aborts or segfaults while it
//! loads is reported instead of ending the host.

use crate::host;
use anyhow::Context;
use clap::Args;
use lumen_core::candle::Device;
use lumen_core::plugin::{self, LoadOptions, PackStatus};
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct PluginsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Load each pack file of DIR (or the file DIR) in a child process and report ok,
    /// refused or crashed, without loading anything into this process.
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
    /// With --check: seconds a child may take before it counts as hung.
    #[arg(long, default_value_t = 120, requires = "check")]
    timeout: u64,
}

/// `lumen __check-pack FILE` (hidden): the child of `lumen plugins --check`.
#[derive(Args)]
pub struct CheckPackArgs {
    file: PathBuf,
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
    if let Some(dir) = &a.check {
        return check(dir, a.json, Duration::from_secs(a.timeout));
    }
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
    println!("(a pack that aborts or segfaults ends the process: try new packs with `lumen plugins --check DIR`)");
    Ok(())
}

/// The child: loads one file next to the linked packs and prints what happened as JSON.
pub fn check_pack(a: CheckPackArgs) -> anyhow::Result<()> {
    let mut reg = host::static_registry()?;
    let opts = LoadOptions::only(std::slice::from_ref(&a.file));
    let report = plugin::load_library(&mut reg, &a.file, &opts);
    let packs: Vec<_> = report
        .packs
        .iter()
        .map(|p| {
            let (status, message, items) = match &p.status {
                PackStatus::Loaded { items } => ("ok", String::new(), items.clone()),
                PackStatus::AlreadyLoaded { by } => ("ok", format!("already registered from {by}"), vec![]),
                PackStatus::Refused(e) => ("refused", e.to_string(), vec![]),
                PackStatus::Failed(e) => ("failed", e.to_string(), vec![]),
            };
            json!({"name": p.display_name(), "version": p.version, "status": status, "message": message, "items": items})
        })
        .collect();
    println!("{}", json!({"packs": packs, "warnings": report.warnings}));
    Ok(())
}

/// One file's verdict.
struct Verdict {
    file: PathBuf,
    /// ok, refused, failed, skipped, crashed or hung.
    status: &'static str,
    message: String,
    items: Vec<String>,
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    format!("{name} (signal {sig})")
}

fn last_line(s: &str) -> Option<String> {
    s.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(|l| l.chars().take(300).collect())
}

/// Runs `lumen __check-pack FILE` and turns its output or its death into verdicts.
fn check_file(exe: &Path, file: &Path, timeout: Duration) -> anyhow::Result<Vec<Verdict>> {
    let mut child = Command::new(exe)
        .arg("__check-pack")
        .arg(file)
        .env_remove("LUMEN_PLUGIN_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    // Drain the pipes on threads, so a chatty child cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let one = |status, message: String| Ok(vec![Verdict { file: file.to_path_buf(), status, message, items: vec![] }]);
    let Some(status) = status else {
        return one("hung", format!("no answer after {} s; killed", timeout.as_secs()));
    };
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
        let mut m = format!("the child process died of {}", signal_name(sig));
        if let Some(l) = last_line(&stderr) {
            m.push_str(&format!(": {l}"));
        }
        return one("crashed", m);
    }
    if !status.success() {
        let code = status.code().map_or("?".into(), |c| c.to_string());
        let mut m = format!("the child process exited with code {code}");
        if let Some(l) = last_line(&stderr) {
            m.push_str(&format!(": {l}"));
        }
        return one("crashed", m);
    }
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("unreadable answer from the child checking {}", file.display()))?;
    let mut verdicts = vec![];
    for w in v["warnings"].as_array().into_iter().flatten() {
        verdicts.push(Verdict { file: file.to_path_buf(), status: "skipped", message: w.as_str().unwrap_or("").into(), items: vec![] });
    }
    for p in v["packs"].as_array().into_iter().flatten() {
        let status = match p["status"].as_str() {
            Some("ok") => "ok",
            Some("refused") => "refused",
            _ => "failed",
        };
        let name = p["name"].as_str().unwrap_or("?");
        let version = p["version"].as_str().unwrap_or("?");
        let msg = p["message"].as_str().unwrap_or("");
        let message = if msg.is_empty() { format!("{name} {version}") } else { format!("{name} {version}: {msg}") };
        let items = p["items"].as_array().into_iter().flatten().filter_map(|i| i.as_str().map(str::to_string)).collect();
        verdicts.push(Verdict { file: file.to_path_buf(), status, message, items });
    }
    if verdicts.is_empty() {
        return one("skipped", "no pack in the file".into());
    }
    Ok(verdicts)
}

fn check(dir: &Path, as_json: bool, timeout: Duration) -> anyhow::Result<()> {
    let files = plugin::pack_files(dir).map_err(|e| anyhow::anyhow!("cannot check plugins: {e}"))?;
    let exe = std::env::current_exe().context("cannot find the lumen binary to run the checks")?;
    let mut verdicts = vec![];
    for f in &files {
        verdicts.extend(check_file(&exe, f, timeout)?);
    }
    let bad = verdicts.iter().filter(|v| v.status != "ok").count();
    if as_json {
        let v: Vec<_> = verdicts
            .iter()
            .map(|v| json!({"file": v.file.display().to_string(), "status": v.status, "message": v.message, "items": v.items}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{} pack file(s) in {}, each loaded in a child process:", files.len(), dir.display());
        for v in &verdicts {
            let items = if v.items.is_empty() { String::new() } else { format!(" ({} items: {})", v.items.len(), v.items.join(", ")) };
            println!("  {}: {}: {}{items}", v.file.display(), v.status, v.message);
        }
    }
    anyhow::ensure!(bad == 0, "{bad} of {} pack(s) in {} did not pass the check", verdicts.len(), dir.display());
    Ok(())
}
