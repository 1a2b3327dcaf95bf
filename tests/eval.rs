//! `lumen eval`: files written and parseable, resuming gives the same bytes, clear errors.

use crate::util::{lumen, tmpdir};
use std::path::Path;

fn ok(args: &[&str]) -> String {
    let out = lumen(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "lumen {args:?} failed:\n{text}");
    text
}

fn fails(args: &[&str]) -> String {
    let out = lumen(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "lumen {args:?} should fail");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    err
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const CSVS: [&str; 4] = ["per_example.csv", "summary.csv", "curves.csv", "layers.csv"];

/// A small run: two methods (one stochastic), two metrics, 6 digits in chunks of 4.
fn small(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "eval",
        "--methods",
        "saliency,smoothgrad",
        "--metrics",
        "deletion,insertion",
        "--n",
        "6",
        "--batch-size",
        "4",
        "--param",
        "smoothgrad.n=3",
        "--param",
        "deletion.steps=8",
        "--seed",
        "5",
        "--out",
    ];
    let o = out.to_str().expect("utf-8 path");
    args.push(o);
    args.extend(extra);
    ok(&args)
}

#[test]
fn eval_writes_parseable_csv_json_plots_and_html() {
    let d = tmpdir("eval-files");
    let out = d.join("run");
    small(&out, &[]);
    // summary.csv: header + one headline row per (method, metric), with mean, std, n.
    let summary = read(&out.join("summary.csv"));
    let mut lines = summary.lines();
    assert_eq!(lines.next(), Some("method,metric,score,mean,std,n,higher_is_better"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for m in ["saliency", "smoothgrad"] {
        for k in ["deletion", "insertion"] {
            let r = rows.iter().find(|r| r[0] == m && r[1] == k && r[2] == "score").unwrap_or_else(|| panic!("{m} {k}"));
            let mean: f64 = r[3].parse().unwrap();
            let std: f64 = r[4].parse().unwrap();
            assert!((0.0..=1.0).contains(&mean) && std >= 0.0, "{r:?}");
            assert_eq!(r[5], "6");
            assert_eq!(r[6], if k == "deletion" { "false" } else { "true" });
        }
    }
    // per_example.csv: the means above are the means of these rows.
    let per = read(&out.join("per_example.csv"));
    let vals: Vec<f64> = per
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("saliency,deletion,score,"))
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(vals.len(), 6);
    let r = rows.iter().find(|r| r[0] == "saliency" && r[1] == "deletion" && r[2] == "score").unwrap();
    assert!((vals.iter().sum::<f64>() / 6.0 - r[3].parse::<f64>().unwrap()).abs() < 1e-12);
    // Curves: one mean curve per method, the deletion curve starting at step 0.
    let curves = read(&out.join("curves.csv"));
    assert!(curves.lines().any(|l| l.starts_with("smoothgrad,deletion,0,")), "{curves}");
    // results.json: parameters (resolved, with the seed) and per-example scores.
    let j: serde_json::Value = serde_json::from_str(&read(&out.join("results.json"))).unwrap();
    assert_eq!(j["run"]["seed"], 5);
    let sg = j["methods"].as_array().unwrap().iter().find(|m| m["name"] == "smoothgrad").unwrap();
    assert_eq!(sg["params"]["n"], "3");
    assert_eq!(sg["params"]["seed"], "5");
    assert_eq!(sg["metrics"]["deletion"]["scores"]["score"]["per_example"].as_array().unwrap().len(), 6);
    assert!(j["metrics"].as_array().unwrap().iter().any(|m| m["name"] == "deletion" && m["params"]["steps"] == "8"));
    // Index of chunks, plots and the page that links them.
    let idx: serde_json::Value = serde_json::from_str(&read(&out.join("index.json"))).unwrap();
    assert_eq!(idx["complete"], true);
    assert_eq!(idx["done"]["saliency"], serde_json::json!([0, 1]));
    let html = read(&out.join("index.html"));
    for f in ["plots/bar_deletion.png", "plots/curves_insertion.png", "maps.png"] {
        assert!(out.join(f).is_file(), "{f}");
        assert!(html.contains(f), "index.html links {f}");
    }
    let png = image::open(out.join("plots/bar_deletion.png")).unwrap();
    assert!(png.width() > 300 && png.height() > 100);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn eval_resumes_to_the_same_csv_and_refuses_other_arguments() {
    let d = tmpdir("eval-resume");
    let (whole, parts) = (d.join("whole"), d.join("parts"));
    small(&whole, &[]);
    // Interrupted after one (method, chunk) unit: no report yet, the index says so.
    let said = small(&parts, &["--stop-after-chunks", "1"]);
    assert!(said.contains("stopped after 1 chunks"), "{said}");
    assert!(!parts.join("summary.csv").exists());
    let idx: serde_json::Value = serde_json::from_str(&read(&parts.join("index.json"))).unwrap();
    assert_eq!((idx["done_count"].as_u64(), idx["complete"].as_bool()), (Some(1), Some(false)));
    let first = std::fs::metadata(parts.join("chunks/saliency/chunk-0000.json")).unwrap().modified().unwrap();
    let said = small(&parts, &["--stop-after-chunks", "2"]);
    assert!(said.contains("resuming") && said.contains("1 of 4"), "{said}");
    let said = small(&parts, &[]);
    assert!(said.contains("3 of 4"), "{said}");
    // The chunk done first was not recomputed.
    let again = std::fs::metadata(parts.join("chunks/saliency/chunk-0000.json")).unwrap().modified().unwrap();
    assert_eq!(first, again);
    for f in CSVS {
        assert_eq!(read(&whole.join(f)), read(&parts.join(f)), "{f} differs after resuming");
    }
    // A different run into the same directory is refused, naming the difference.
    let err = fails(&[
        "eval", "--methods", "saliency,smoothgrad", "--metrics", "deletion,insertion", "--n", "5", "--batch-size", "4",
        "--param", "smoothgrad.n=3", "--param", "deletion.steps=8", "--seed", "5", "--out", whole.to_str().unwrap(),
    ]);
    assert!(err.contains("other arguments") && err.contains("n: 6 before, 5 now"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn eval_errors_are_one_clear_line() {
    let d = tmpdir("eval-errors");
    let out = d.join("x");
    let o = out.to_str().unwrap();
    let e = fails(&["eval", "--methods", "saliency,nope", "--out", o]);
    assert!(e.contains("unknown method 'nope'") && e.contains("integrated_gradients"), "{e}");
    let e = fails(&["eval", "--metrics", "deletion,auc", "--out", o]);
    assert!(e.contains("unknown metric 'auc'") && e.contains("insertion"), "{e}");
    let e = fails(&["eval", "--model", "mnist-rnn", "--out", o]);
    assert!(e.contains("unknown model 'mnist-rnn'") && e.contains("mnist-cnn"), "{e}");
    let e = fails(&["eval", "--n", "0", "--out", o]);
    assert!(e.contains("--n must be at least 1"), "{e}");
    let e = fails(&["eval", "--methods", "saliency", "--metrics", "deletion", "--n", "100000", "--out", o]);
    assert!(e.contains("--n 100000 exceeds the 1000 examples"), "{e}");
    let e = fails(&["eval", "--data", "cifar", "--out", o]);
    assert!(e.contains("unknown --data 'cifar'") && e.contains("biased"), "{e}");
    let e = fails(&["eval", "--methods", "saliency", "--param", "occlusion.window=3", "--out", o]);
    assert!(e.contains("neither an evaluated method"), "{e}");
    let e = fails(&["eval", "--methods", "saliency", "--metrics", "deletion", "--param", "deletion.bogus=1", "--out", o]);
    assert!(e.contains("bogus"), "{e}");
    for e in [e] {
        assert!(e.lines().count() <= 2, "{e}");
    }
    // Nothing was computed, and nothing but (at most) the run key was written.
    assert!(!out.join("summary.csv").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Localization needs masks: refused on plain MNIST, and on the biased-8 set the
/// biased model's evidence for 8 sits in the square far above chance (36/784).
#[test]
fn eval_localization_on_the_biased_square() {
    let d = tmpdir("eval-biased");
    let out = d.join("b");
    let o = out.to_str().unwrap();
    let e = fails(&["eval", "--methods", "saliency", "--metrics", "localization", "--n", "4", "--out", o]);
    assert!(e.contains("needs ground-truth masks") && e.contains("--data biased"), "{e}");
    ok(&[
        "eval", "--model", "mnist-cnn-biased", "--data", "biased", "--methods", "input_x_gradient", "--metrics",
        "localization", "--n", "4", "--out", o,
    ]);
    let summary = read(&out.join("summary.csv"));
    let row = summary.lines().find(|l| l.starts_with("input_x_gradient,localization,score,")).expect("localization row");
    let mean: f64 = row.split(',').nth(3).unwrap().parse().unwrap();
    assert!(mean > 0.3, "mass in the square {mean}");
    // Every example is explained for class 8.
    let per = read(&out.join("per_example.csv"));
    assert!(per.lines().skip(1).all(|l| l.split(',').nth(6) == Some("8")), "{per}");
    std::fs::remove_dir_all(&d).unwrap();
}
