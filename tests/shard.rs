//! `lumen eval` at scale: shards merge to the bytes of a one-machine run, resume
//! checks every chunk against the run key, locks, Slurm scripts, `--plan`, bad input.

use crate::util::{lumen, lumen_bin, repo_root, tmpdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CSVS: [&str; 4] = ["per_example.csv", "summary.csv", "curves.csv", "layers.csv"];

/// 2 methods (one stochastic) × 2 metrics on 6 digits in chunks of 2: 6 units.
fn args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "eval", "--methods", "saliency,smoothgrad", "--metrics", "deletion,insertion", "--n", "6", "--batch-size", "2",
        "--param", "smoothgrad.n=3", "--param", "deletion.steps=8", "--param", "insertion.steps=8", "--seed", "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(a: &[String]) -> Output {
    Command::new(lumen_bin()).args(a).output().expect("run lumen")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(a: &[String]) -> String {
    let o = run(a);
    assert!(o.status.success(), "lumen {a:?} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit code 1 and exactly one non-empty stderr line `error: ...` holding every needle.
fn one_line_error(o: &Output, needles: &[&str]) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {e}");
    assert!(lines[0].starts_with("error: "), "{e}");
    for n in needles {
        assert!(e.contains(n), "'{n}' missing from: {e}");
    }
    e
}

fn out(d: &Path) -> Vec<String> {
    vec!["--out".into(), d.to_str().expect("utf-8 path").into()]
}

fn with_out(extra: &[&str], d: &Path) -> Vec<String> {
    let mut a = args(extra);
    a.extend(out(d));
    a
}

fn same_csvs(a: &Path, b: &Path) {
    for f in CSVS {
        let (x, y) = (std::fs::read(a.join(f)).expect("csv"), std::fs::read(b.join(f)).expect("csv"));
        assert!(x == y, "{f} differs between {} and {}", a.display(), b.display());
    }
}

/// Chunk files under a run directory, as `method/chunk-NNNN.json`.
fn chunk_files(d: &Path) -> Vec<String> {
    let mut v = vec![];
    for m in std::fs::read_dir(d.join("chunks")).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(m.path()).into_iter().flatten().flatten() {
            let name = c.file_name().to_string_lossy().to_string();
            if name.starts_with("chunk-") {
                v.push(format!("{}/{name}", m.file_name().to_string_lossy()));
            }
        }
    }
    v.sort();
    v
}

fn merge(dirs: &[&Path], to: &Path) -> Output {
    let mut a: Vec<String> = vec!["eval".into(), "merge".into()];
    a.extend(dirs.iter().map(|d| d.to_str().unwrap().to_string()));
    a.extend(out(to));
    run(&a)
}

#[test]
fn shards_in_separate_directories_merge_to_the_bytes_of_one_run() {
    let d = tmpdir("shard-merge");
    let single = d.join("single");
    ok(&with_out(&[], &single));
    let shards: Vec<PathBuf> = (0..3).map(|k| d.join(format!("s{k}"))).collect();
    let mut all = vec![];
    for (k, s) in shards.iter().enumerate() {
        let said = ok(&with_out(&["--shard", &format!("{k}/3")], s));
        assert!(said.contains(&format!("shard {k}/3:")) && said.contains("of 6 (method, chunk) units"), "{said}");
        assert!(!s.join("summary.csv").exists(), "a shard writes no report");
        let files = chunk_files(s);
        assert!(!files.is_empty(), "shard {k} got no unit");
        all.extend(files);
    }
    // Every unit exactly once over the shards, and balanced by cost: smoothgrad
    // (weight 40) chunks go one per shard.
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(sorted, chunk_files(&single));
    for s in &shards {
        assert_eq!(chunk_files(s).iter().filter(|f| f.starts_with("smoothgrad/")).count(), 1, "{:?}", chunk_files(s));
    }
    let merged = d.join("merged");
    let said = text(&merge(&[&shards[0], &shards[1], &shards[2]], &merged));
    assert!(said.contains("merged 6 chunks from 3 directories"), "{said}");
    same_csvs(&single, &merged);
    assert!(merged.join("index.html").is_file() && merged.join("plots/bar_deletion.png").is_file());

    // A missing shard: the chunks are listed, with the shard that owns them.
    let e = one_line_error(&merge(&[&shards[0], &shards[2]], &d.join("m2")), &["merge:", "are missing", "rerun it"]);
    assert!(e.contains("shard 1/3"), "{e}");
    // The same chunks twice.
    one_line_error(&merge(&[&shards[0], &shards[1], &shards[2], &single], &d.join("m3")), &["present more than once", "single"]);
    // A directory twice, and one that holds no run.
    one_line_error(&merge(&[&shards[0], &shards[0]], &d.join("m4")), &["given twice"]);
    one_line_error(&merge(&[&shards[0], &d], &d.join("m5")), &["not a lumen eval run directory"]);
    // Another run (another seed): named field by field.
    let other = d.join("other");
    let mut a = args(&["--stop-after-chunks", "0"]);
    let i = a.iter().position(|x| x == "--seed").unwrap();
    a[i + 1] = "6".into();
    a.extend(out(&other));
    ok(&a);
    one_line_error(&merge(&[&shards[0], &other], &d.join("m6")), &["hold different runs", "seed: 5 before, 6 now"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn concurrent_shards_share_one_directory_and_merge_in_place() {
    let d = tmpdir("shard-shared");
    let shared = d.join("shared");
    // Two shards at once into one directory.
    let children: Vec<std::process::Child> = (0..2)
        .map(|k| {
            Command::new(lumen_bin())
                .args(with_out(&["--shard", &format!("{k}/2")], &shared))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(chunk_files(&shared).len(), 6);
    let said = text(&merge(&[&shared], &shared));
    assert!(said.contains("merged 6 chunks from 1 directory (0 copied)"), "{said}");
    let single = d.join("single");
    ok(&with_out(&[], &single));
    same_csvs(&single, &shared);
    // A failed shard is rerun alone and resumes its own chunks.
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(shared.join("shards/1-of-2.json")).unwrap()).unwrap();
    let units = status["units"].as_array().unwrap();
    // Weights 40 and 1: shard 0 takes two smoothgrad chunks, shard 1 the third and every saliency chunk.
    assert_eq!((status["complete"].as_bool(), units.len()), (Some(true), 4), "{status}");
    let lost = format!("chunks/{}/chunk-{:04}.json", units[0]["method"].as_str().unwrap(), units[0]["chunk"].as_u64().unwrap());
    std::fs::remove_file(shared.join(&lost)).unwrap();
    let e = one_line_error(&merge(&[&shared], &d.join("m")), &["1 of 6 chunks are missing", "shard 1/2"]);
    assert!(e.contains(units[0]["method"].as_str().unwrap()), "{e}");
    let said = ok(&with_out(&["--shard", "1/2"], &shared));
    assert!(said.contains("resuming") && said.contains("3 of 4") && said.contains("(1 computed, 3 reused)"), "{said}");
    assert!(merge(&[&shared], &shared).status.success());
    same_csvs(&single, &shared);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn resume_reuses_only_chunks_that_check_out() {
    let d = tmpdir("shard-resume");
    let run_dir = d.join("r");
    ok(&with_out(&[], &run_dir));
    let before = std::fs::read(run_dir.join("summary.csv")).unwrap();
    // An unreadable chunk is recomputed, not fatal.
    std::fs::write(run_dir.join("chunks/saliency/chunk-0001.json"), b"{ truncated").unwrap();
    let said = ok(&with_out(&[], &run_dir));
    assert!(said.contains("recomputing 1 chunk file(s)") && said.contains("saliency chunk 1 (not JSON)"), "{said}");
    assert_eq!(std::fs::read(run_dir.join("summary.csv")).unwrap(), before);
    // run.json deleted and other arguments: the old chunks belong to another run.
    std::fs::remove_file(run_dir.join("run.json")).unwrap();
    let mut a = args(&[]);
    let i = a.iter().position(|x| x == "deletion.steps=8").unwrap();
    a[i] = "deletion.steps=10".into();
    let mut fresh = a.clone();
    a.extend(out(&run_dir));
    let said = ok(&a);
    assert!(said.contains("recomputing 6 chunk file(s)") && said.contains("made by another run"), "{said}");
    fresh.extend(out(&d.join("fresh")));
    ok(&fresh);
    same_csvs(&run_dir, &d.join("fresh"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn other_weights_under_the_same_model_name_are_refused() {
    let d = tmpdir("shard-weights");
    let run_dir = d.join("r");
    ok(&with_out(&["--stop-after-chunks", "1"], &run_dir));
    // LUMEN_MODELS_DIR points mnist-cnn at the noise-trained weights.
    let models = d.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let shipped = repo_root().join("models/weights");
    let card = std::fs::read_to_string(shipped.join("mnist-cnn.toml")).unwrap();
    let weights_line = card.lines().find(|l| l.trim_start().starts_with("weights")).expect("weights line").to_string();
    std::fs::write(models.join("mnist-cnn.toml"), card.replace(&weights_line, "weights = \"other.safetensors\"")).unwrap();
    std::fs::copy(shipped.join("mnist-cnn-noise.safetensors"), models.join("other.safetensors")).unwrap();
    let o = Command::new(lumen_bin()).args(with_out(&[], &run_dir)).env("LUMEN_MODELS_DIR", &models).output().unwrap();
    one_line_error(&o, &["other arguments", "model_hash"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_second_process_of_the_same_run_or_shard_is_refused() {
    let d = tmpdir("shard-lock");
    let run_dir = d.join("r");
    std::fs::create_dir_all(run_dir.join("locks")).unwrap();
    // This test holds the locks that a running lumen would hold.
    let hold = |name: &str| {
        let f = std::fs::File::create(run_dir.join("locks").join(name)).unwrap();
        f.try_lock().unwrap();
        std::fs::write(run_dir.join("locks").join(name), "pid 1 on test").unwrap();
        f
    };
    let all = hold("all.lock");
    one_line_error(&run(&with_out(&[], &run_dir)), &["another process is computing this run", "pid 1 on test"]);
    one_line_error(&run(&with_out(&["--shard", "0/2"], &run_dir)), &["another shard count", "all"]);
    drop(all);
    let s0 = hold("shard-0-of-2.lock");
    one_line_error(&run(&with_out(&["--shard", "0/2"], &run_dir)), &["another process is computing shard 0/2"]);
    one_line_error(&run(&with_out(&["--shard", "1/3"], &run_dir)), &["another shard count", "shard-0-of-2"]);
    // Shard 1 of the same count shares the directory.
    ok(&with_out(&["--shard", "1/2"], &run_dir));
    drop(s0);
    // Released lock files block nobody; shard 0 finishes the run.
    ok(&with_out(&["--shard", "0/2"], &run_dir));
    assert!(merge(&[&run_dir], &run_dir).status.success());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn emitted_slurm_scripts_run_the_shards_and_the_merge() {
    let d = tmpdir("shard-slurm");
    let run_dir = d.join("r");
    let said = ok(&with_out(&["--emit-slurm", "50", "--partition", "gpu", "--gres", "gpu:1", "--time", "1:00:00"], &run_dir));
    assert!(said.contains("asks for more shards than the run's 6 (method, chunk) units; using 6 shards"), "{said}");
    let sb = std::fs::read_to_string(run_dir.join("slurm/shards.sbatch")).unwrap();
    for want in ["#SBATCH --array=0-5", "#SBATCH --partition=gpu", "#SBATCH --gres=gpu:1", "#SBATCH --time=1:00:00", "--shard \"${SLURM_ARRAY_TASK_ID}/6\""] {
        assert!(sb.contains(want), "{want} not in:\n{sb}");
    }
    let submit = std::fs::read_to_string(run_dir.join("slurm/submit.sh")).unwrap();
    assert!(submit.contains("sbatch --parsable --dependency=afterok:\"$array\""), "{submit}");
    // Three shards, run as Slurm would run the array tasks, then the merge job.
    ok(&with_out(&["--emit-slurm", "3"], &run_dir));
    for k in 0..3 {
        let o = Command::new("bash").arg(run_dir.join("slurm/shards.sbatch")).env("SLURM_ARRAY_TASK_ID", k.to_string()).output().unwrap();
        assert!(o.status.success(), "task {k}: {}", text(&o));
    }
    let o = Command::new("bash").arg(run_dir.join("slurm/merge.sbatch")).output().unwrap();
    assert!(o.status.success(), "merge: {}", text(&o));
    let single = d.join("single");
    ok(&with_out(&[], &single));
    same_csvs(&single, &run_dir);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn plan_counts_passes_and_shows_the_assignment() {
    let d = tmpdir("shard-plan");
    let said = ok(&with_out(&["--plan", "2"], &d.join("p")));
    let row = |m: &str, k: &str| -> Vec<String> {
        said.lines()
            .find(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == [m, k])
            .unwrap_or_else(|| panic!("no {m} {k} row in:\n{said}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    // One gradient per example for saliency, n = 3 for smoothgrad.
    assert_eq!(row("saliency", "(maps)")[2..4], ["1.0", "1.0"]);
    assert_eq!(row("smoothgrad", "(maps)")[2..4], ["3.0", "3.0"]);
    // deletion with 8 steps: 9 forward passes per example, no gradient.
    assert_eq!(row("saliency", "deletion")[2..4], ["9.0", "0.0"]);
    assert!(said.contains("measured weights:") && said.contains("--cost"), "{said}");
    assert!(said.lines().any(|l| l.trim_start().starts_with("0/2")) && said.lines().any(|l| l.trim_start().starts_with("1/2")), "{said}");
    assert!(!d.join("p/chunks").exists(), "--plan computes nothing");
    let said = ok(&with_out(&["--plan"], &d.join("p")));
    assert!(said.contains("balance") && said.contains("--plan N"), "{said}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_shard_and_scale_arguments_are_one_line_errors() {
    let d = tmpdir("shard-bad");
    let o = d.join("x");
    for (shard, want) in [("5/4", "numbered 0 to 3"), ("4/4", "numbered 0 to 3"), ("0/0", "at least 1"), ("x", "not K/N")] {
        one_line_error(&run(&with_out(&["--shard", shard], &o)), &[&format!("--shard '{shard}'"), want]);
    }
    one_line_error(&run(&with_out(&["--emit-slurm", "0"], &o)), &["--emit-slurm needs at least 1 shard"]);
    one_line_error(&run(&with_out(&["--emit-slurm", "2", "--gres", "gpu 1"], &o)), &["--gres 'gpu 1'"]);
    one_line_error(&run(&with_out(&["--cost", "pda=3"], &o)), &["--cost names 'pda'", "saliency, smoothgrad"]);
    one_line_error(&run(&with_out(&["--cost", "saliency=-1"], &o)), &["--cost 'saliency=-1'"]);
    one_line_error(&lumen(&["eval", "--methods", "saliency,smoothgrad,saliency", "--out", o.to_str().unwrap()]), &["--methods names 'saliency' twice"]);
    one_line_error(&lumen(&["eval", "--metrics", "deletion,deletion", "--out", o.to_str().unwrap()]), &["--metrics names 'deletion' twice"]);
    one_line_error(&lumen(&["eval", "merge", d.join("nope").to_str().unwrap(), "--out", o.to_str().unwrap()]), &["merge:", "nope"]);
    assert!(!o.join("chunks").exists());
    std::fs::remove_dir_all(&d).unwrap();
}
