//! `lumen bench`: the JSON it writes and its one-line errors (no timing assertions).

use crate::util::{lumen, tmpdir};
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn writes_one_object_per_method_with_the_documented_fields() {
    let dir = tmpdir("bench-json");
    let js = dir.join("bench.json");
    let out = lumen(&[
        "bench",
        "--model",
        "mnist-cnn",
        "--batch",
        "2",
        "--reps",
        "1",
        "--threads",
        "1",
        "--methods",
        "forward,saliency,integrated_gradients",
        "--param",
        "integrated_gradients.steps=3",
        "--json",
        js.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 threads") && text.contains(&format!("lumen {}", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("release build") || text.contains("debug build"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    let rows = v.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(names, ["forward", "saliency", "integrated_gradients"]);
    for r in rows {
        assert_eq!(r["batch"], 2, "{r}");
        let (median, min) = (r["median_ms"].as_f64().unwrap(), r["min_ms"].as_f64().unwrap());
        assert!(min > 0.0 && min <= median, "{r}");
        assert!(r["params"].is_object(), "{r}");
        assert_eq!(r["threads"], 1, "{r}");
        if cfg!(target_os = "linux") {
            assert!(r["peak_rss_mb"].as_f64().unwrap() >= r["base_rss_mb"].as_f64().unwrap(), "{r}");
        }
    }
    // --param reaches its method; the others keep their defaults.
    assert_eq!(rows[2]["params"]["steps"], "3", "{}", rows[2]);
    assert_eq!(rows[1]["params"]["batch_size"], "64", "{}", rows[1]);
    assert!(rows[0]["params"].as_object().unwrap().is_empty());
}

#[test]
fn bad_input_is_one_line() {
    let cases: [(&[&str], &str); 6] = [
        (&["--batch", "1", "--methods", "saliency,no_such_method"], "no_such_method"),
        (&["--batch", "0", "--methods", "saliency"], "--batch"),
        (&["--batch", "1", "--methods", "saliency", "--model", "no-such-model"], "no-such-model"),
        (&["--batch", "1", "--methods", "saliency", "--reps", "0"], "--reps"),
        (&["--batch", "1", "--methods", "saliency", "--param", "lrp.epsilon=0.1"], "lrp"),
        (&["--batch", "1", "--methods", "saliency", "--param", "saliency.batch_size=none"], "batch_size"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["bench"];
        args.extend_from_slice(extra);
        let out = lumen(&args);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {e}");
        let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line: {e}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
}
