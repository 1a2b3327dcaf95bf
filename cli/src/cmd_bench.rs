//! `lumen bench`: times methods on a batch of test digits (`lumen_eval::bench`).
//! Each method runs in a child process of this binary (`lumen bench --child`), so
//! its peak resident memory is its own and not a high-water mark of the rows before.

use crate::cmd_explain::ModelArgs;
use crate::host;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::Device;
use lumen_eval::bench::{self, Measurement};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Digits per call (bundled MNIST test digits, spread over the classes).
    #[arg(long)]
    pub batch: usize,
    /// Comma-separated methods; `forward` times the forward pass alone
    /// [default: forward and the methods of bench/captum].
    #[arg(long)]
    pub methods: Option<String>,
    /// Timed calls per method, after one warm-up call.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Write the results as a JSON array, one object per method.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Method parameter METHOD.KEY=VALUE (repeatable; nested: smoothgrad.inner.KEY=VALUE).
    #[arg(long = "param", value_name = "METHOD.KEY=VALUE")]
    pub params: Vec<String>,
    /// Threads for candle's CPU kernels (sets RAYON_NUM_THREADS for the runs)
    /// [default: RAYON_NUM_THREADS, else every core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run the one method of --methods in this process and answer in JSON lines
    /// (the child process of `lumen bench`).
    #[arg(long, hide = true)]
    pub child: bool,
}

pub fn run(a: BenchArgs, device_spec: &str, weights_dirs: &[PathBuf], device: &Device) -> anyhow::Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if a.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let methods = match &a.methods {
        Some(list) => bench::parse_methods(list)?,
        None => bench::DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
    };
    let params = bench::split_params(&a.params, &methods)?;
    let reg = host::registry()?;
    if a.child {
        return child(&a, &methods, &params, &reg, device);
    }
    let resolved = bench::check_methods(&reg, &methods, &params)?;
    let model = a.model.load(&reg, device)?;
    bench::check_model(model.as_ref())?;
    let exe = std::env::current_exe().context("cannot find the lumen binary to run the benchmark")?;

    let threads = a.threads.unwrap_or_else(lumen_core::candle::utils::get_num_threads);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("lumen {} ({profile} build), {threads} threads, device {device_spec}", env!("CARGO_PKG_VERSION"));
    println!(
        "model {}, batch {}, {} timed call(s) after 1 warm-up; each method in its own process (peak RSS: its VmHWM)",
        model.info().name,
        a.batch,
        a.reps
    );
    println!("{:<22} {:>12} {:>12} {:>14}  params", "method", "median ms", "min ms", "peak RSS MiB");

    let pb = ProgressBar::new((methods.len() * a.reps) as u64);
    if let Ok(s) = ProgressStyle::with_template("{spinner} bench [{bar:30}] {pos}/{len} calls {msg} ({elapsed})") {
        pb.set_style(s);
    }
    let mut rows = vec![];
    for m in &methods {
        pb.set_message(m.clone());
        let row = match run_child(&exe, &a, m, params.get(m), device_spec, weights_dirs, &pb) {
            Ok(r) => r,
            Err(e) => {
                pb.finish_and_clear();
                bail!("bench {m}: {e}");
            }
        };
        pb.suspend(|| println!("{}", format_row(&row, &resolved)));
        rows.push(row);
    }
    pb.finish_and_clear();
    if let Some(path) = &a.json {
        bench::write_json(path, &rows)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn format_row(m: &Measurement, resolved: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    let params = resolved.get(&m.method).unwrap_or(&m.params);
    let params = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    let rss = m.peak_rss_mb.map_or("n/a".to_string(), |r| format!("{r:.1}"));
    format!("{:<22} {:>12.2} {:>12.2} {:>14}  {params}", m.method, m.median_ms, m.min_ms, rss)
}

/// The child: times one method and writes `{"rep": i}` after each timed call, then
/// `{"result": {..}}`, one JSON object per line on stdout.
fn child(
    a: &BenchArgs,
    methods: &[String],
    params: &BTreeMap<String, Vec<String>>,
    reg: &lumen_core::Registry,
    device: &Device,
) -> anyhow::Result<()> {
    let [m] = methods else { bail!("--child takes exactly one method, got {}", methods.len()) };
    let model = a.model.load(reg, device)?;
    let pairs = params.get(m).map(Vec::as_slice).unwrap_or(&[]);
    let mut out = std::io::stdout().lock();
    let mut on_rep = |i: usize| {
        let _ = writeln!(out, "{}", serde_json::json!({ "rep": i }));
        let _ = out.flush();
    };
    let r = bench::measure(reg, model.as_ref(), m, pairs, a.batch, a.reps, &mut on_rep)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::json!({ "result": r.to_json() }))?;
    Ok(())
}

/// Runs `lumen bench --child` for one method and reads its answer.
fn run_child(
    exe: &std::path::Path,
    a: &BenchArgs,
    method: &str,
    pairs: Option<&Vec<String>>,
    device_spec: &str,
    weights_dirs: &[PathBuf],
    pb: &ProgressBar,
) -> anyhow::Result<Measurement> {
    let mut cmd = Command::new(exe);
    cmd.arg("--device").arg(device_spec);
    for d in weights_dirs {
        cmd.arg("--weights-dir").arg(d);
    }
    cmd.arg("bench").arg("--child").arg("--batch").arg(a.batch.to_string()).arg("--reps").arg(a.reps.to_string());
    cmd.arg("--methods").arg(method);
    match &a.model.model_card {
        Some(card) => cmd.arg("--model-card").arg(card),
        None => cmd.arg("--model").arg(&a.model.model),
    };
    for p in pairs.into_iter().flatten() {
        cmd.arg("--param").arg(format!("{method}.{p}"));
    }
    if let Some(t) = a.threads {
        cmd.env("RAYON_NUM_THREADS", t.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    // Drained on a thread, so a chatty child cannot block on a full pipe.
    let mut err_pipe = child.stderr.take();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err_pipe.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut result = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let v: serde_json::Value = match serde_json::from_str(&line?) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v.get("rep").is_some() {
                pb.inc(1);
            } else if let Some(r) = v.get("result") {
                result = Some(Measurement::from_json(r)?);
            }
        }
    }
    let status = child.wait()?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(anyhow!(child_error(&stderr).unwrap_or_else(|| format!("the child process failed ({status})"))));
    }
    result.ok_or_else(|| anyhow!("the child process gave no result"))
}

/// The child's error and its causes as one line, without the `error: ` prefix.
fn child_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let Some(at) = lines.iter().rposition(|l| l.starts_with("error: ")) else {
        return lines.last().map(|l| l.to_string());
    };
    let mut msg = lines[at].trim_start_matches("error: ").to_string();
    for c in lines[at + 1..].iter().filter_map(|l| l.strip_prefix("caused by: ")) {
        msg.push_str(": ");
        msg.push_str(c);
    }
    Some(msg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn child_errors_become_one_line() {
        let e = "warning: a pack\nerror: cannot load\n  caused by: no file\n";
        assert_eq!(super::child_error(e).as_deref(), Some("cannot load: no file"));
        assert_eq!(super::child_error("killed\n").as_deref(), Some("killed"));
        assert_eq!(super::child_error(""), None);
    }
}
