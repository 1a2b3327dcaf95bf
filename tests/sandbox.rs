//! The sandbox of scripts and evaluations: paths that reach methods, script
//! functions and imports stay inside the allowed directories, and Rhai's resource
//! limits end a hostile script with one line instead of an abort or a hang.

use crate::util::{lumen_bin, tmpdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A script directory, an output directory and a directory outside both.
struct Sandbox {
    base: PathBuf,
    script_dir: PathBuf,
    out: PathBuf,
    outside: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let base = tmpdir(&format!("sandbox-{name}"));
        let (script_dir, out, outside) = (base.join("script"), base.join("out"), base.join("outside"));
        for d in [&script_dir, &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        Sandbox { base, script_dir, out, outside }
    }

    /// Writes `src` as `NAME.rhai` in the script directory and runs it.
    fn run(&self, name: &str, src: &str, flags: &[&str]) -> Output {
        let path = self.script_dir.join(format!("{name}.rhai"));
        std::fs::write(&path, src).unwrap();
        let mut args = vec!["run".to_string(), path.display().to_string(), "--out".into(), self.out.display().to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        Command::new(lumen_bin()).args(&args).output().expect("run lumen")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1 and exactly one non-empty line on stderr; returns that line.
fn one_line_failure(o: &Output, what: &str) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{what}: expected exit 1, got {:?}: {e}", o.status);
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line: {e}");
    assert!(lines[0].starts_with("error: "), "{what}: {e}");
    lines[0].to_string()
}

fn success(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", stderr(o));
}

/// A 28×28 grayscale PNG (an MNIST-sized input).
fn png(path: &Path) {
    lumen_core::image::GrayImage::from_pixel(28, 28, lumen_core::image::Luma([128u8])).save(path).unwrap();
}

const NET: &str = "let net = model(\"mnist-cnn\");\nlet x = mnist(\"test\")[0];\n";

#[test]
fn method_parameters_cannot_write_outside_the_output_directory() {
    let s = Sandbox::new("pda-write");
    let target = s.outside.join("x.safetensors");
    let attempts = [
        format!("method(\"pda\", #{{sampler_file: \"{}\"}});", target.display()),
        // `..` from inside the output directory.
        "method(\"pda\", #{sampler_file: OUT + \"/../outside/x.safetensors\"});".to_string(),
    ];
    for a in &attempts {
        let e = one_line_failure(&s.run("pda_write", &format!("{NET}{a}\n"), &[]), a);
        assert!(e.contains("pda_write.rhai:3:") && e.contains("refused to write") && e.contains("output directory"), "{a}: {e}");
        assert!(!target.exists(), "{a}: the sampler file was written outside");
    }
    assert!(std::fs::read_dir(&s.outside).unwrap().next().is_none(), "nothing was created outside");
}

#[cfg(unix)]
#[test]
fn a_symlink_in_the_output_directory_does_not_lead_outside() {
    let s = Sandbox::new("pda-link");
    std::fs::create_dir_all(&s.out).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.out.join("up")).unwrap();
    let src = format!("{NET}method(\"pda\", #{{sampler_file: OUT + \"/up/x.safetensors\"}});\n");
    let e = one_line_failure(&s.run("pda_link", &src, &[]), "symlink");
    assert!(e.contains("refused to write"), "{e}");
    assert!(!s.outside.join("x.safetensors").exists());
}

#[test]
fn method_parameters_and_script_functions_cannot_read_outside() {
    let s = Sandbox::new("reads");
    let img = s.outside.join("secret.png");
    png(&img);
    let st = s.outside.join("train.safetensors");
    std::fs::write(&st, b"not really").unwrap();
    let card = s.outside.join("card.toml");
    std::fs::write(&card, "name = \"x\"\n").unwrap();
    let cases = [
        ("pda train", format!("method(\"pda\", #{{train: \"{}\"}});", st.display())),
        ("occlusion baseline", format!("explain(net, x, method(\"occlusion\", #{{window: 14, strides: 14, baseline_tensor: \"{}\"}}));", img.display())),
        ("ig baseline", format!("explain(net, x, method(\"integrated_gradients\", #{{steps: 2, baseline: \"tensor\", baseline_tensor: \"{}\"}}));", img.display())),
        ("deeplift reference", format!("explain(net, x, method(\"deeplift\", #{{reference: \"tensor\", reference_tensor: \"{}\"}}));", img.display())),
        ("load_image", format!("load_image(\"{}\");", img.display())),
        ("load_image ..", "load_image(OUT + \"/../outside/secret.png\");".to_string()),
        ("model_from", format!("model_from(\"{}\");", card.display())),
    ];
    for (what, call) in &cases {
        let e = one_line_failure(&s.run("reads", &format!("{NET}{call}\n"), &[]), what);
        assert!(e.contains("reads.rhai:3:") && e.contains("refused to read") && e.contains("--allow-read"), "{what}: {e}");
    }
}

#[test]
fn a_card_in_the_script_directory_cannot_name_weights_outside() {
    let s = Sandbox::new("card-weights");
    let weights = s.outside.join("w.safetensors");
    std::fs::write(&weights, b"x").unwrap();
    let card = std::fs::read_to_string(crate::util::repo_root().join("models/weights/mnist-cnn.toml")).unwrap();
    let card: String = card
        .lines()
        .map(|l| if l.starts_with("weights") { format!("weights = \"{}\"", weights.display()) } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(s.script_dir.join("card.toml"), card).unwrap();
    let src = format!("let m = model_from(\"{}\");\n", s.script_dir.join("card.toml").display());
    let e = one_line_failure(&s.run("card", &src, &[]), "weights outside");
    assert!(e.contains("w.safetensors"), "{e}");
}

#[test]
fn reads_from_the_script_directory_the_output_directory_and_allowed_directories_work() {
    let s = Sandbox::new("allowed");
    png(&s.script_dir.join("here.png"));
    let extra = s.base.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    png(&extra.join("there.png"));
    let src = format!(
        "let a = load_image(\"{}\");\nlet b = load_image(\"{}\");\nwrite_text(\"shape.txt\", `${{a.shape}} ${{b.shape}}`);\n",
        s.script_dir.join("here.png").display(),
        extra.join("there.png").display()
    );
    let e = one_line_failure(&s.run("allowed", &src, &[]), "without --allow-read");
    assert!(e.contains("allowed.rhai:2:") && e.contains("there.png") && e.contains("refused to read"), "{e}");
    let o = s.run("allowed", &src, &["--allow-read", extra.to_str().unwrap()]);
    success(&o, "with --allow-read");
    assert_eq!(std::fs::read_to_string(s.out.join("shape.txt")).unwrap(), "[1, 28, 28] [1, 28, 28]");
    // The output directory is readable too.
    let o = s.run("again", &format!("let t = load_image(OUT + \"/../extra/there.png\");\n"), &[]);
    assert!(one_line_failure(&o, "escape via OUT").contains("refused to read"));
    png(&s.out.join("mine.png"));
    success(&s.run("own", "let t = load_image(OUT + \"/mine.png\");\n", &[]), "own output");
    let e = one_line_failure(&s.run("x", "1;\n", &["--allow-read", "/nonexistent/lumen-dir"]), "missing dir");
    assert!(e.contains("/nonexistent/lumen-dir"), "{e}");
}

#[test]
fn imports_come_only_from_the_script_directory() {
    let s = Sandbox::new("imports");
    std::fs::write(s.script_dir.join("lib.rhai"), "fn twice(x) { x * 2 }\nexport const K = 21;\n").unwrap();
    std::fs::create_dir_all(s.script_dir.join("sub")).unwrap();
    std::fs::write(s.script_dir.join("sub/more.rhai"), "fn inc(x) { x + 1 }\n").unwrap();
    std::fs::write(s.outside.join("evil.rhai"), "write_text(\"pwned.txt\", \"x\");\nfn f() { 1 }\n").unwrap();
    let src = "import \"lib\" as lib;\nimport \"sub/more\" as more;\nwrite_text(\"k.txt\", `${more::inc(lib::twice(lib::K))}`);\n";
    success(&s.run("ok", src, &[]), "imports from the script directory");
    assert_eq!(std::fs::read_to_string(s.out.join("k.txt")).unwrap(), "43");

    #[cfg(unix)]
    std::os::unix::fs::symlink(&s.outside, s.script_dir.join("link")).unwrap();
    let evil = s.outside.join("evil");
    let mut attempts = vec![format!("import \"{}\" as e;", evil.display()), "import \"../outside/evil\" as e;".into()];
    if cfg!(unix) {
        attempts.push("import \"link/evil\" as e;".into());
    }
    for a in &attempts {
        let e = one_line_failure(&s.run("imp", &format!("{a}\n"), &[]), a);
        assert!(e.contains("imp.rhai:1:") && e.contains("refused") && e.contains("own directory"), "{a}: {e}");
        assert!(!s.out.join("pwned.txt").exists(), "{a}");
    }
    let e = one_line_failure(&s.run("missing", "import \"nothing_here\" as n;\n", &[]), "missing module");
    assert!(e.contains("nothing_here"), "{e}");
}

#[test]
fn eval_method_parameters_obey_the_same_sandbox() {
    let base = tmpdir("sandbox-eval");
    let (cwd, out, outside, extra) = (base.join("cwd"), base.join("cwd/out"), base.join("outside"), base.join("extra"));
    for d in [&cwd, &outside, &extra] {
        std::fs::create_dir_all(d).unwrap();
    }
    png(&outside.join("b.png"));
    png(&extra.join("b.png"));
    png(&cwd.join("b.png"));
    let eval = |params: &[String], flags: &[&str]| -> Output {
        let mut a: Vec<String> = ["eval", "--methods", "occlusion", "--metrics", "deletion", "--n", "1", "--batch-size", "1", "--examples", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--out".into(), out.display().to_string(), "--param".into(), "deletion.steps=2".into()]);
        a.extend(["--param".into(), "occlusion.window=14".into(), "--param".into(), "occlusion.strides=14".into()]);
        for p in params {
            a.extend(["--param".into(), p.clone()]);
        }
        a.extend(flags.iter().map(|s| s.to_string()));
        let _ = std::fs::remove_dir_all(&out);
        Command::new(lumen_bin()).args(&a).current_dir(&cwd).output().expect("run lumen")
    };
    let e = one_line_failure(&eval(&[format!("occlusion.baseline_tensor={}", outside.join("b.png").display())], &[]), "eval read");
    assert!(e.contains("refused to read") && e.contains("b.png") && e.contains("--allow-read"), "{e}");
    success(&eval(&["occlusion.baseline_tensor=b.png".into()], &[]), "a file under the working directory");
    let p = format!("occlusion.baseline_tensor={}", extra.join("b.png").display());
    success(&eval(&[p], &["--allow-read", extra.to_str().unwrap()]), "an allowed directory");

    let target = outside.join("s.safetensors");
    let o = Command::new(lumen_bin())
        .args(["eval", "--methods", "pda", "--metrics", "deletion", "--n", "1", "--out", out.to_str().unwrap()])
        .args(["--param", &format!("pda.sampler_file={}", target.display())])
        .current_dir(&cwd)
        .output()
        .unwrap();
    let e = one_line_failure(&o, "eval write");
    assert!(e.contains("refused to write") && e.contains("s.safetensors"), "{e}");
    assert!(!target.exists());
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn oversized_and_overflowing_tensors_are_refused() {
    let s = Sandbox::new("tensor-size");
    for (what, src) in [
        ("10^10 elements", "let t = zeros([100000, 100000]);\n"),
        ("overflow", "print(zeros([4294967296, 4294967296]).sum());\n"),
        ("ones", "let t = ones([65536, 65536, 65536]);\n"),
        ("random", "let t = random([1 << 40], 1);\n"),
        ("tensor shape", "let t = tensor([], [4294967296, 4294967296]);\n"),
        ("reshape", "let t = zeros([0]).reshape([4294967296, 4294967296, 0]);\n"),
        ("broadcast", "let t = zeros([1, 100000]) + zeros([100000, 1]);\n"),
    ] {
        let e = one_line_failure(&s.run("big", src, &[]), what);
        assert!(e.contains("big.rhai:1:") && e.contains("the most a script tensor may have"), "{what}: {e}");
    }
    // The limit is a flag.
    let e = one_line_failure(&s.run("small", "let t = zeros([10, 10]);\n", &["--max-tensor-elements", "99"]), "flag");
    assert!(e.contains("more than 99 elements"), "{e}");
    success(&s.run("fits", "let t = zeros([10, 10]) + zeros([10, 1]);\n", &["--max-tensor-elements", "100"]), "at the limit");
}

#[test]
fn limits_that_would_mean_unlimited_or_overflow_the_stack_are_refused() {
    let s = Sandbox::new("limits");
    let spin = "let i = 0;\nloop { i += 1; }\n";
    let e = one_line_failure(&s.run("spin", spin, &["--max-operations", "0"]), "ops 0");
    assert!(e.contains("--max-operations must be at least 1"), "{e}");
    let rec = "fn down(n) { if n == 0 { 0 } else { 1 + down(n - 1) } }\ndown(100000000);\n";
    let e = one_line_failure(&s.run("rec", rec, &["--max-call-depth", "1000000"]), "depth 1e6");
    assert!(e.contains("--max-call-depth must be between 1 and 1000"), "{e}");
    for bad in ["0", "-1", "nan", "inf"] {
        let e = one_line_failure(&s.run("spin", spin, &[&format!("--timeout={bad}")]), bad);
        assert!(e.contains("--timeout"), "{bad}: {e}");
    }
}

#[test]
fn recursion_at_the_deepest_allowed_call_depth_ends_with_an_error() {
    let s = Sandbox::new("depth");
    // Deep expressions in the body make each call level cost more stack.
    // 50 is about the deepest nesting Rhai compiles in a function body.
    let nested = (0..50).fold("down(n - 1)".to_string(), |e, _| format!("1 + ({e})"));
    let src = format!("fn down(n) {{ if n == 0 {{ 0 }} else {{ {nested} }} }}\ndown(100000000);\n");
    let e = one_line_failure(&s.run("deep", &src, &["--max-call-depth", "1000"]), "deep recursion");
    assert!(e.contains("deep.rhai:") && e.to_lowercase().contains("stack overflow"), "{e}");
}

#[test]
fn the_wall_clock_deadline_stops_a_script_under_its_operation_limit() {
    let s = Sandbox::new("deadline");
    let o = s.run("spin", "let i = 0;\nloop { i += 1; }\n", &["--timeout", "0.5", "--max-operations", "1000000000000"]);
    let e = one_line_failure(&o, "deadline");
    assert!(e.contains("spin.rhai:2:") && e.contains("ran longer than 0.5 s") && e.contains("--timeout"), "{e}");
}

/// Rhai measures an array again after every in-place call on it (`push`, `len`), so
/// pushing is quadratic; the documented idiom, `pad` once then assign by index, is
/// linear: 900,000 elements here, which would take hours if it were quadratic.
#[test]
fn a_large_array_built_by_index_assignment_finishes() {
    let s = Sandbox::new("big-array");
    let src = "let n = 900000;\nlet a = [];\na.pad(n, 0);\nfor i in 0..n { a[i] = i; }\nwrite_text(\"n.txt\", `${a.len()} ${a[n - 1]}`);\n";
    success(&s.run("fill", src, &[]), "pad and assign");
    assert_eq!(std::fs::read_to_string(s.out.join("n.txt")).unwrap(), "900000 899999");
}
