//! `lumen eval --emit-slurm N`: a Slurm job array of the shards, a merge job that
//! depends on it, and a wrapper that submits both.
//!
//! ```text
//! OUT/slurm/shards.sbatch   #SBATCH --array=0-(N-1); task K runs --shard K/N
//! OUT/slurm/merge.sbatch    lumen eval merge OUT --out OUT
//! OUT/slurm/submit.sh       sbatch shards, then merge with --dependency=afterok:ID
//! OUT/slurm/logs/           one log per task
//! ```
//! Every shard writes into OUT (a shared filesystem); each holds its own lock, so a
//! failed shard is rerun alone (`sbatch --array=K OUT/slurm/shards.sbatch`) and
//! resumes its own chunks.

use crate::run::{EvalConfig, Output};
use crate::{bail, Context, Result};
use lumen_core::candle::Device;
use lumen_core::io;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `s` quoted for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// A value that goes into an `#SBATCH` line: one line, no shell syntax needed.
fn sbatch_value(flag: &str, v: &str) -> Result<String> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control() || c == '#') {
        bail!("--{flag} '{v}' must be one word without spaces or '#'");
    }
    Ok(v.to_string())
}

/// The eval arguments of the saved run (`args.json` form) as command-line words.
pub fn eval_words(saved: &Value) -> Result<Vec<String>> {
    let s = |k: &str| -> Result<String> {
        saved[k].as_str().map(String::from).with_context(|| format!("'{k}' is missing or not a string"))
    };
    let mut w = vec![];
    match saved["model_card"].as_str() {
        Some(p) => w.extend(["--model-card".into(), absolute(Path::new(p))?.display().to_string()]),
        None => w.extend(["--model".into(), s("model")?]),
    }
    for (flag, k) in [("--data", "data"), ("--methods", "methods"), ("--metrics", "metrics")] {
        w.extend([flag.to_string(), s(k)?]);
    }
    for (flag, k) in [("--n", "n"), ("--seed", "seed"), ("--batch-size", "batch_size"), ("--examples", "examples")] {
        let v = saved[k].as_u64().with_context(|| format!("'{k}' is missing or not a number"))?;
        w.extend([flag.to_string(), v.to_string()]);
    }
    if saved["light"].as_bool() == Some(true) {
        w.push("--light".into());
    }
    for (flag, k) in [("--param", "params"), ("--cost", "costs")] {
        for p in saved[k].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
            w.extend([flag.to_string(), p.to_string()]);
        }
    }
    Ok(w)
}

/// How the emitted jobs run.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Generic resources of each shard job, e.g. `gpu:1`.
    pub gres: Option<String>,
    /// Time limit of each shard job, e.g. `2:00:00`.
    pub time: Option<String>,
}

/// Writes the scripts for `requested` shards (at most one per unit), which run the
/// `lumen` binary at `lumen`, and returns the directory that holds them.
#[allow(clippy::too_many_arguments)]
pub fn emit(
    a: &EvalConfig,
    o: &SlurmOptions,
    lumen: &Path,
    saved: &Value,
    device: &Device,
    requested: usize,
    units: usize,
    out: &dyn Output,
) -> Result<PathBuf> {
    if requested == 0 {
        bail!("--emit-slurm needs at least 1 shard");
    }
    let n = requested.min(units);
    if n < requested {
        out.line(&format!("note: --emit-slurm {requested} asks for more shards than the run's {units} (method, chunk) units; using {n} shards"));
    }
    let mut header = String::new();
    for (flag, v) in [("partition", &o.partition), ("gres", &o.gres), ("time", &o.time)] {
        if let Some(v) = v {
            header += &format!("#SBATCH --{flag}={}\n", sbatch_value(flag, v)?);
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let out_dir = a.out.canonicalize()?;
    let dir = out_dir.join("slurm");
    std::fs::create_dir_all(dir.join("logs"))?;
    let cwd = std::env::current_dir()?;
    let dev = if device.is_cuda() { "cuda" } else { "cpu" };
    let words: Vec<String> = eval_words(saved)?.iter().map(|w| quote(w)).collect();
    let env = match std::env::var("LUMEN_MODELS_DIR") {
        Ok(v) => format!("export LUMEN_MODELS_DIR={}\n", quote(&v)),
        Err(_) => String::new(),
    };
    let logs = quote(&dir.join("logs").display().to_string());
    let q = |p: &Path| quote(&p.display().to_string());
    let shards = format!(
        "#!/bin/bash\n\
         # lumen eval: {n} shards of one run, written by `lumen eval --emit-slurm`.\n\
         # Rerun a failed shard alone with: sbatch --array=K {script}\n\
         #SBATCH --job-name=lumen-eval\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --output={logs}/shard-%a.out\n\
         #SBATCH --chdir={cwd}\n\
         {header}\
         set -euo pipefail\n\
         {env}\
         exec {lumen} --device {dev} eval {words} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --out {out}\n",
        script = q(&dir.join("shards.sbatch")),
        last = n - 1,
        cwd = q(&cwd),
        lumen = q(lumen),
        words = words.join(" "),
        out = q(&out_dir),
    );
    let merge = format!(
        "#!/bin/bash\n\
         # lumen eval: joins the shards' chunks and writes the report (after every shard succeeded).\n\
         #SBATCH --job-name=lumen-eval-merge\n\
         #SBATCH --output={logs}/merge.out\n\
         #SBATCH --chdir={cwd}\n\
         {part}\
         set -euo pipefail\n\
         {env}\
         exec {lumen} --device cpu eval merge {out} --out {out}\n",
        cwd = q(&cwd),
        part = o.partition.as_ref().map(|p| format!("#SBATCH --partition={p}\n")).unwrap_or_default(),
        lumen = q(lumen),
        out = q(&out_dir),
    );
    let submit = format!(
        "#!/bin/sh\n\
         # Submits the shard array, then the merge job that waits for all of it to succeed.\n\
         set -eu\n\
         here={here}\n\
         array=$(sbatch --parsable \"$here/shards.sbatch\")\n\
         array=${{array%%;*}}\n\
         merge=$(sbatch --parsable --dependency=afterok:\"$array\" \"$here/merge.sbatch\")\n\
         merge=${{merge%%;*}}\n\
         echo \"array job $array ({n} shards), merge job $merge\"\n\
         echo \"$array $merge\" > \"$here/jobs\"\n",
        here = q(&dir),
    );
    io::write_atomic(dir.join("shards.sbatch"), shards.as_bytes())?;
    io::write_atomic(dir.join("merge.sbatch"), merge.as_bytes())?;
    io::write_atomic(dir.join("submit.sh"), submit.as_bytes())?;
    out.line(&format!("wrote {} ({n} shards), merge.sbatch and submit.sh", dir.join("shards.sbatch").display()));
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_words_whole() {
        assert_eq!(quote("saliency,smoothgrad"), "saliency,smoothgrad");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
