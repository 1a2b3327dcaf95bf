//! Issue 17, sections 2–4 and 8: hostile or careless input through the `lumen`
//! binary. Each bad case exits 1 with one `error:` line that names the problem, and
//! writes no output.

use crate::explain::random_cnn;
use crate::util::{lumen_bin, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::model::{LayerKind, ModelCard, Normalization};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Asserts exit code 1 and exactly one non-empty stderr line, starting with
/// `error: ` and containing every needle.
fn fails_with(out: &Output, needles: &[&str]) {
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {e}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {e}");
    assert!(lines[0].starts_with("error: ") && !e.contains("panicked"), "{e}");
    for n in needles {
        assert!(e.contains(n), "'{n}' missing from: {e}");
    }
}

/// `lumen explain` on a card into `DIR/out`, with RUST_BACKTRACE unset.
fn explain(card: &Path, input: &str, extra: &[&str]) -> Output {
    let out = out_dir(card);
    Command::new(lumen_bin())
        .args(["explain", "--model-card"])
        .arg(card)
        .args(["--input", input, "--out"])
        .arg(&out)
        .args(extra)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run lumen")
}

fn out_dir(card: &Path) -> PathBuf {
    card.parent().unwrap().join("out")
}

/// Nothing was written: the output directory is absent or empty.
fn wrote_nothing(card: &Path) {
    let d = out_dir(card);
    let n = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
    assert_eq!(n, 0, "{} has files", d.display());
}

/// A random mnist-cnn card `TMP/a/b/m.toml` (valid weights next to it), edited by
/// `edit`.
fn card_with(name: &str, edit: impl FnOnce(&mut ModelCard)) -> PathBuf {
    let dir = tmpdir(name).join("a/b");
    std::fs::create_dir_all(&dir).unwrap();
    let path = random_cnn(&dir, "m");
    let mut card: ModelCard = lumen_core::model::ModelCard::load(&path).unwrap();
    edit(&mut card);
    card.save(&path).unwrap();
    path
}

fn bad_card(name: &str, edit: impl FnOnce(&mut ModelCard), needles: &[&str]) {
    let card = card_with(name, edit);
    let mut n = vec!["m.toml"];
    n.extend_from_slice(needles);
    fails_with(&explain(&card, "mnist:test:0", &[]), &n);
    wrote_nothing(&card);
}

fn set_conv1(card: &mut ModelCard, k: usize, s: usize) {
    if let LayerKind::Conv2d { kernel, stride, .. } = &mut card.layers[0].kind {
        *kernel = k;
        *stride = s;
    }
}

#[test]
fn zero_stride_and_oversized_kernels_are_refused_by_layer() {
    bad_card("hd-conv-stride", |c| set_conv1(c, 5, 0), &["layer 'conv1' (conv2d)", "stride"]);
    bad_card(
        "hd-pool-stride",
        |c| c.layers[2].kind = LayerKind::MaxPool2d { kernel: 2, stride: 0 },
        &["layer 'pool1' (max_pool2d)", "stride"],
    );
    bad_card("hd-kernel", |c| set_conv1(c, 40, 1), &["layer 'conv1'", "kernel 40", "does not fit", "28"]);
}

#[test]
fn label_count_must_match_the_outputs() {
    for n in [3usize, 40] {
        bad_card(
            &format!("hd-labels-{n}"),
            |c| c.labels = (0..n).map(|i| i.to_string()).collect(),
            &["output shape [10]", &format!("{n} labels")],
        );
    }
}

#[test]
fn normalisation_and_input_range_must_be_finite_and_ordered() {
    let norm = |mean: f32, std: f32| Some(Normalization { mean: vec![mean], std: vec![std] });
    bad_card("hd-std-nan", |c| c.normalization = norm(0.0, f32::NAN), &["normalization std NaN"]);
    bad_card("hd-mean-inf", |c| c.normalization = norm(f32::INFINITY, 1.0), &["normalization mean inf"]);
    bad_card("hd-range-rev", |c| c.input_range = [1.0, 0.0], &["input_range", "[1, 0]"]);
    bad_card("hd-range-nan", |c| c.input_range = [f32::NAN, 1.0], &["input_range", "NaN"]);
}

#[test]
fn non_finite_weights_name_the_tensor() {
    let card = card_with("hd-nan-weights", |_| {});
    let w = card.with_extension("safetensors");
    let mut t: HashMap<String, Tensor> = lumen_core::candle::safetensors::load(&w, &Device::Cpu).unwrap();
    let nan = Tensor::full(f32::NAN, t["fc2.weight"].shape(), &Device::Cpu).unwrap();
    t.insert("fc2.weight".into(), nan);
    lumen_core::io::save_safetensors(&w, &t).unwrap();
    fails_with(&explain(&card, "mnist:test:0", &[]), &["m.safetensors", "tensor 'fc2.weight'", "NaN"]);
    wrote_nothing(&card);
    // Every weight NaN: the first by name is reported.
    let all: HashMap<String, Tensor> = t
        .iter()
        .map(|(k, v)| (k.clone(), Tensor::full(f32::NAN, v.shape(), &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap()))
        .collect();
    lumen_core::io::save_safetensors(&w, &all).unwrap();
    fails_with(&explain(&card, "mnist:test:0", &[]), &["tensor 'conv1.bias'", "NaN"]);
    wrote_nothing(&card);
}

#[test]
fn weights_outside_the_card_directory_or_not_regular_are_refused() {
    for (name, weights) in [("hd-w-zero", "/dev/zero"), ("hd-w-passwd", "/etc/passwd"), ("hd-w-up", "../../x")] {
        let card = card_with(name, |c| c.weights = weights.into());
        if weights == "../../x" {
            // An existing file (TMP/x), so only the directory rule can refuse it.
            std::fs::write(card.parent().unwrap().join("../../x"), b"x").unwrap();
        }
        fails_with(&explain(&card, "mnist:test:0", &[]), &["m.toml", weights, "outside the card's directory"]);
        wrote_nothing(&card);
    }
    // An allowed directory still needs a regular file.
    let card = card_with("hd-w-dev", |c| c.weights = "/dev/zero".into());
    fails_with(&explain(&card, "mnist:test:0", &["--weights-dir", "/dev"]), &["/dev/zero", "not a regular file"]);
    wrote_nothing(&card);
}

/// Weights in a directory the user names are accepted (flag or environment).
#[test]
fn weights_from_an_allowed_directory_load() {
    let shared = tmpdir("hd-w-shared");
    random_cnn(&shared, "w");
    let card = card_with("hd-w-allowed", |c| c.weights = shared.join("w.safetensors").display().to_string());
    fails_with(&explain(&card, "mnist:test:0", &[]), &["outside the card's directory"]);
    let ok = explain(&card, "mnist:test:0", &["--weights-dir", shared.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let ok = Command::new(lumen_bin())
        .args(["explain", "--model-card", card.to_str().unwrap(), "--input", "mnist:test:0", "--out"])
        .arg(out_dir(&card))
        .env("LUMEN_WEIGHTS_DIRS", &shared)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn integer_parameters_have_upper_bounds() {
    let card = card_with("hd-bounds", |_| {});
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--method", "integrated_gradients", "--param", "steps=1000000000"], &["'steps'", "≤ 10000", "1000000000"]),
        (&["--method", "smoothgrad", "--param", "n=1e9"], &["'n'", "≤ 10000"]),
        (&["--method", "smoothgrad", "--param", "batch_size=100000"], &["'batch_size'", "≤ 4096"]),
        (&["--method", "deeplift", "--param", "n_references=1000000"], &["'n_references'", "≤ 10000"]),
    ];
    for (args, needles) in cases {
        fails_with(&explain(&card, "mnist:test:0", args), needles);
        wrote_nothing(&card);
    }
    // `lumen list` shows the bounds.
    let out = Command::new(lumen_bin()).arg("list").output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.lines().any(|l| l.contains("steps") && l.contains("int ≤ 10000")), "{s}");
}

/// A tiny PNG whose IHDR claims `w`×`h` 8-bit grayscale, with a stub IDAT (the
/// header is all a dimension check may read).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        let body: Vec<u8> = kind.iter().chain(data).copied().collect();
        v.extend(&body);
        v.extend(crc32(&body).to_be_bytes());
        v
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // depth 8, grayscale, deflate, adaptive, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn image_dimensions_are_checked_before_decoding() {
    let card = card_with("hd-png", |_| {});
    let big = card.parent().unwrap().join("big.png");
    std::fs::write(&big, png_header_only(20000, 20000)).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() < 100);
    fails_with(&explain(&card, big.to_str().unwrap(), &[]), &["big.png", "20000×20000", "limit"]);
    wrote_nothing(&card);
}

#[test]
fn inputs_must_be_regular_files() {
    let card = card_with("hd-fifo", |_| {});
    let fifo = card.parent().unwrap().join("x.safetensors");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    fails_with(&explain(&card, fifo.to_str().unwrap(), &[]), &["x.safetensors", "not a regular file"]);
    let dir = card.parent().unwrap().join("d.png");
    std::fs::create_dir_all(&dir).unwrap();
    fails_with(&explain(&card, dir.to_str().unwrap(), &[]), &["d.png", "not a regular file"]);
    wrote_nothing(&card);
}

/// Symlinks planted at the temporary names the old scheme would use (`.NAME.tmp-PID`
/// for the next few hundred PIDs) cannot redirect the outputs.
#[test]
fn planted_symlinks_cannot_redirect_outputs() {
    let card = card_with("hd-symlink", |_| {});
    let dir = card.parent().unwrap();
    let out = out_dir(&card);
    std::fs::create_dir_all(&out).unwrap();
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let next = Command::new("true").spawn().unwrap();
    let pid = next.id();
    let names = ["mnist-test-0_saliency.png", "mnist-test-0_saliency.safetensors", "mnist-test-0_saliency.json"];
    for p in pid..pid + 300 {
        for n in names {
            std::os::unix::fs::symlink(&victim, out.join(format!(".{n}.tmp-{p}"))).unwrap();
        }
    }
    let o = explain(&card, "mnist:test:0", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    for n in names {
        let m = std::fs::symlink_metadata(out.join(n)).unwrap();
        assert!(m.file_type().is_file() && m.len() > 0, "{n}");
    }
}

/// The plugin fixture whose method panics (built by cargo as an example).
fn panic_pack_dir() -> PathBuf {
    let profile = lumen_bin().parent().unwrap().to_path_buf();
    let lib = format!("{}fixture_panic.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    let src = profile.join("examples").join(&lib);
    assert!(src.exists(), "{} is built by cargo test", src.display());
    let d = tmpdir("hd-panic-pack");
    std::fs::copy(&src, d.join(&lib)).unwrap();
    d
}

/// A caught panic is one line naming its source; the backtrace only with RUST_BACKTRACE.
#[test]
fn caught_panics_are_one_line_unless_rust_backtrace() {
    let dir = panic_pack_dir();
    let run = |bt: Option<&str>| {
        let mut c = Command::new(lumen_bin());
        c.args(["explain", "--method", "fixture_panic", "--input", "mnist:test:0", "--out"])
            .arg(dir.join("out"))
            .env("LUMEN_PLUGIN_PATH", &dir)
            .env_remove("RUST_BACKTRACE");
        if let Some(v) = bt {
            c.env("RUST_BACKTRACE", v);
        }
        c.output().unwrap()
    };
    let out = run(None);
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines, ["error: plugin 'fixture-panic' panicked: deliberate panic inside the fixture pack"], "{e}");
    let out = run(Some("1"));
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("stack backtrace") && e.contains("deliberate panic"), "{e}");
}

/// Ctrl-C: one line, exit 130, no partial output.
#[test]
fn sigint_exits_130_with_one_line_and_no_partial_output() {
    use std::io::BufRead;
    let card = card_with("hd-sigint", |_| {});
    let mut child = Command::new(lumen_bin())
        .args(["explain", "--model-card", card.to_str().unwrap(), "--input", "mnist:test:0", "--out"])
        .arg(out_dir(&card))
        .args(["--method", "integrated_gradients", "--param", "steps=10000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The prediction is printed just before the (long) attribution starts.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 && !line.contains("prediction:") {}
    assert!(line.contains("prediction:"), "{line}");
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{e}");
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(lines[0].starts_with("error: interrupted"), "{e}");
    wrote_nothing(&card);
}
