//! Rhai scripting from the outside: every shipped script runs (small inputs), errors
//! name the line and the problem, writes stay inside the output directory, and a
//! composition in Rhai equals the same composition in Rust.

use crate::util::{lumen, repo_root, tmpdir};
use lumen_core::candle::Device;
use lumen_core::data::{Mnist, Split};
use lumen_core::{Attributor, Registry, Target};
use lumen_script::{eval_source, ExplanationValue, ScriptOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Arguments that keep every shipped script small; scripts ignore those they do
/// not read (see scripts/README.md).
const SMALL: &[&str] = &["digits=2", "n=3", "quick=true"];

fn run_script(script: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    let mut a = vec!["run", script.to_str().unwrap(), "--out", out.to_str().unwrap(), "--"];
    a.extend(args);
    lumen(&a)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(files_under(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn every_shipped_script_runs_on_a_small_input() {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(repo_root().join("scripts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 4, "expected the shipped scripts, found {scripts:?}");
    let base = tmpdir("scripts");
    for s in &scripts {
        let name = s.file_stem().unwrap().to_string_lossy().into_owned();
        let out = base.join(&name);
        let t = std::time::Instant::now();
        let o = run_script(s, &out, SMALL);
        assert!(
            o.status.success(),
            "{name} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let files = files_under(&out);
        assert!(!files.is_empty(), "{name} wrote nothing");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 0, "{name}: {} is empty", f.display());
        }
        eprintln!("{name}: {:.1} s, {} files", t.elapsed().as_secs_f64(), files.len());
    }
    // The deletion pipeline wrote one row per (ranking, fraction) and a plot.
    let csv = std::fs::read_to_string(base.join("evaluate/deletion.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("method,fraction,probability,drop"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.iter().any(|r| r.starts_with("random,")) && rows.iter().any(|r| r.starts_with("saliency,")), "{csv}");
    assert!(rows.iter().all(|r| r.split(',').count() == 4), "{csv}");
    // At fraction 0 nothing is masked, so no method drops accuracy.
    let at_zero: Vec<&&str> = rows.iter().filter(|r| r.split(',').nth(1) == Some("0")).collect();
    assert!(!at_zero.is_empty() && at_zero.iter().all(|r| r.ends_with(",0")), "{csv}");
    assert!(std::fs::read_to_string(base.join("evaluate/deletion.svg")).unwrap().contains("<polyline"));
    let sanity = std::fs::read_to_string(base.join("evaluate/sanity.csv")).unwrap();
    assert!(sanity.starts_with("method,layer,step,spearman,ssim\nsaliency,none,0,1,1\n"), "{sanity}");
    assert!(base.join("smoothgrad_guided_backprop/smoothgrad_guided_backprop.png").exists());
    assert!(base.join("compare_methods/compare_methods.html").exists());
    let _ = std::fs::remove_dir_all(&base);
}

fn script_error(name: &str, src: &str) -> String {
    let dir = tmpdir(&format!("script-err-{name}"));
    let path = dir.join(format!("{name}.rhai"));
    std::fs::write(&path, src).unwrap();
    let o = run_script(&path, &dir.join("out"), &[]);
    assert!(!o.status.success(), "{name} should fail");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(e.starts_with("error: ") && !e.contains("panicked"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    e
}

#[test]
fn script_errors_name_the_line_and_the_problem() {
    let net = "let net = model(\"mnist-cnn\");\nlet x = mnist(\"test\")[0];\n";
    let e = script_error("param", &format!("{net}let m = smoothgrad(method(\"saliency\"), #{{n: 2, sigmaa: 0.1}});\n"));
    assert!(e.contains("param.rhai:3:9:") && e.contains("unknown parameter 'sigmaa'") && e.contains("sigma"), "{e}");
    let e = script_error("type", &format!("{net}\nlet m = method(\"smoothgrad\", #{{n: \"many\"}});\n"));
    assert!(e.contains("type.rhai:4:9:") && e.contains("'n'") && e.contains("expected an integer"), "{e}");
    let e = script_error("sig", &format!("{net}explain(net, \"x\", method(\"saliency\"));\n"));
    assert!(e.contains("sig.rhai:3:1:") && e.contains("explain") && e.contains("String"), "{e}");
    let e = script_error("unknown", &format!("{net}let e = explain(net, x, method(\"gradcam\"));\n"));
    assert!(e.contains("unknown.rhai:3:25:") && e.contains("unknown method 'gradcam'") && e.contains("saliency"), "{e}");
    let e = script_error("syntax", "let a = [1, 2;\n");
    assert!(e.contains("syntax.rhai:1:"), "{e}");
}

#[test]
fn writing_outside_the_output_directory_is_refused() {
    let dir = tmpdir("script-sandbox");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "keep").unwrap();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&dir, out.join("up")).unwrap();
    let attempts = [
        "write_text(\"../victim.txt\", \"gone\")".to_string(),
        format!("write_text(\"{}\", \"gone\")", victim.display()),
        "write_csv(\"sub/../../victim.txt\", [#{a: 1}])".to_string(),
        #[cfg(unix)]
        "write_json(\"up/victim.txt\", 1)".to_string(),
    ];
    for a in &attempts {
        let path = dir.join("escape.rhai");
        std::fs::write(&path, format!("print(\"hi\");\n{a};\n")).unwrap();
        let o = run_script(&path, &out, &[]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("escape.rhai:2:1:") && e.contains("refused"), "{a}: {e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep", "{a}");
    }
    // Inside is fine, and the script sees its arguments.
    let path = dir.join("ok.rhai");
    std::fs::write(&path, "write_text(\"sub/args.txt\", `${ARGS.len()} ${arg(\"k\", 1) + 1}`);\n").unwrap();
    let o = run_script(&path, &out, &["k=41", "other"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(out.join("sub/args.txt")).unwrap(), "2 42");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn operation_limit_stops_a_runaway_script() {
    let dir = tmpdir("script-limit");
    let path = dir.join("spin.rhai");
    std::fs::write(&path, "let i = 0;\nwhile true { i += 1; }\n").unwrap();
    let o = lumen(&["run", path.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap(), "--max-operations", "10000"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("spin.rhai:2:") && e.contains("Too many operations"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SmoothGrad over Guided Backprop composed in Rhai equals the same composition in
/// Rust with the same seed; another seed gives another map.
#[test]
fn composition_in_rhai_equals_composition_in_rust() {
    use lumen_std_gradients::{NoiseTunnel, NoiseTunnelConfig};
    use lumen_std_propagation::{ModifiedGradient, ModifiedGradientConfig};
    lumen_std_gradients::link();
    lumen_std_propagation::link();
    let reg = Arc::new(Registry::from_inventory().unwrap());
    let dir = tmpdir("script-compose");
    let opts = ScriptOptions { out_dir: dir.clone(), ..Default::default() };
    let src = |seed: u64| {
        format!(
            "let net = model(\"mnist-cnn\");\nlet x = mnist(\"test\")[412].image;\n\
             explain(net, x, smoothgrad(method(\"guided_backprop\"), #{{n: 5, sigma: 0.2, seed: {seed}}}), #{{target: 4}})"
        )
    };
    let rhai_map = |seed: u64| -> Vec<f32> {
        let v = eval_source("compose", &src(seed), reg.clone(), &opts).unwrap();
        let e = v.try_cast::<ExplanationValue>().expect("an explanation");
        assert_eq!(e.0.attribution().dims(), &[1, 28, 28]);
        e.0.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let model = reg.load_model("mnist-cnn", &Device::Cpu).unwrap();
    let (x, label) = Mnist::load().unwrap().get(Split::Test, 412, &Device::Cpu).unwrap();
    assert_eq!(label, 4);
    let nt = NoiseTunnel::new(
        Box::new(ModifiedGradient::guided_backprop(ModifiedGradientConfig::default())),
        NoiseTunnelConfig { n: 5, sigma: 0.2, seed: 7, ..Default::default() },
    );
    let rust = nt.attribute(&*model, &x.unsqueeze(0).unwrap(), &Target::Class(4)).unwrap();
    let rust = rust.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let a = rhai_map(7);
    assert_eq!(a, rust);
    assert!(a.iter().any(|v| *v != 0.0));
    assert_ne!(rhai_map(8), a);
    let _ = std::fs::remove_dir_all(&dir);
}
