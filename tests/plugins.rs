//! Runtime plugin packs (issue 5): the example pack and three fixture packs
//! (tests/packs/, built by cargo as examples of the `lumen` package) are loaded by the
//! `lumen` binary and in this process.
//!
//! In-process loading needs this test binary to share the packs' lumen-core and
//! candle, hence the explicit link to the runtime.

extern crate lumen_dylib;

use crate::util::{lumen_bin, tmpdir};
use lumen_core::candle::{DType, Device, Tensor, Var};
use lumen_core::candle_nn::VarBuilder;
use lumen_core::method::{gradient, repeat_each};
use lumen_core::model::{ForwardOptions, ModelInfo, Network, NetworkModel};
use lumen_core::plugin::{load_into, LoadOptions, PackStatus, FINGERPRINT};
use lumen_core::{Error, Params, Registry, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// target/<profile>: this test binary runs from its deps/ directory.
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent().and_then(Path::parent).expect("profile dir").to_path_buf()
}

pub(crate) fn lib_name(stem: &str) -> String {
    format!("{}{stem}.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION)
}

pub(crate) fn built(p: PathBuf) -> PathBuf {
    assert!(
        p.exists(),
        "{} is missing: it is built by `cargo test --release --workspace` (or `cargo build --release --workspace --all-targets`)",
        p.display()
    );
    p
}

/// The example pack as built by this cargo run: in deps/ (cargo copies a cdylib up
/// to the profile directory only when it was asked for by name, and that copy can
/// be stale).
pub(crate) fn example_lib() -> PathBuf {
    built(profile_dir().join("deps").join(lib_name("lumen_example")))
}

pub(crate) fn fixture_lib(name: &str) -> PathBuf {
    built(profile_dir().join("examples").join(lib_name(name)))
}

/// A fresh directory holding copies of `libs`.
pub(crate) fn plugin_dir(name: &str, libs: &[PathBuf]) -> PathBuf {
    let d = tmpdir(name);
    for l in libs {
        std::fs::copy(l, d.join(l.file_name().expect("file name"))).expect("copy pack");
    }
    d
}

pub(crate) fn path_list(dirs: &[&Path]) -> String {
    std::env::join_paths(dirs).expect("join paths").to_string_lossy().into_owned()
}

pub(crate) fn lumen_with(plugin_path: &str, args: &[&str]) -> Output {
    let out = Command::new(lumen_bin()).env("LUMEN_PLUGIN_PATH", plugin_path).args(args).output().expect("run lumen");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn example_pack_is_found_listed_and_run_from_the_cli() {
    let dir = plugin_dir("plugins-example", &[example_lib()]);
    let lib = dir.canonicalize().unwrap().join(lib_name("lumen_example"));
    let pp = path_list(&[&dir]);

    let out = lumen_with(&pp, &["plugins"]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = s.lines().find(|l| l.trim_start().starts_with("lumen-example ")).unwrap_or_else(|| panic!("{s}"));
    assert!(line.contains("0.1.0") && line.contains(&lib.display().to_string()), "{line}");
    assert!(line.contains("LUMEN_PLUGIN_PATH") && line.contains("fingerprint ok") && line.ends_with("loaded"), "{line}");
    assert!(s.contains("method abs_input_x_gradient") && s.contains("model example-class-means"), "{s}");
    assert!(s.contains(FINGERPRINT), "{s}");
    // the static packs are listed too
    assert!(s.contains("lumen-std-gradients") && s.contains("static"), "{s}");

    let out = lumen_with(&pp, &["list"]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = s.lines().find(|l| l.trim_start().starts_with("abs_input_x_gradient")).unwrap_or_else(|| panic!("{s}"));
    assert!(line.contains(&format!("lumen-example ({})", lib.display())), "{line}");
    assert!(s.contains("percentile") && s.contains("example-class-means"), "{s}");

    // JSON for tools
    let out = lumen_with(&pp, &["plugins", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["host_fingerprint"], FINGERPRINT);
    let p = v["packs"].as_array().unwrap().iter().find(|p| p["name"] == "lumen-example").expect("example pack");
    assert_eq!(p["status"], "loaded");
    assert_eq!(p["fingerprint"], "ok");
    assert!(p["items"].as_array().unwrap().iter().any(|i| i == "method abs_input_x_gradient"));

    // run it: the pack's method on the pack's model, from the CLI
    let out_dir = tmpdir("plugins-explain");
    let out = lumen_with(
        &pp,
        &[
            "explain",
            "--model",
            "example-class-means",
            "--method",
            "abs_input_x_gradient",
            "--param",
            "percentile=95",
            "--input",
            "mnist:test:3",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.ends_with(".png")), "{files:?}");
    let st = files.iter().find(|f| f.ends_with(".safetensors")).unwrap_or_else(|| panic!("{files:?}"));
    let t = lumen_core::candle::safetensors::load(out_dir.join(st), &Device::Cpu).unwrap();
    let a = t["attribution"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // percentile-capped and scaled: within [0, 1], and about 5% of pixels at the cap
    assert!(a.iter().all(|v| (0.0..=1.0).contains(v)), "{a:?}");
    let at_cap = a.iter().filter(|v| **v == 1.0).count();
    assert!((20..=80).contains(&at_cap), "{at_cap} pixels at the cap");
}

/// Outside cargo: no LD_LIBRARY_PATH, no CARGO. The binary finds lumen-dylib and std
/// through its rpath, and an installed layout (binary + runtime + plugins/) works.
#[test]
fn binary_runs_directly_and_from_an_install_layout() {
    let run = |bin: &Path, plugin_path: Option<&str>| {
        let mut c = Command::new(bin);
        c.env_remove("LD_LIBRARY_PATH").env_remove("DYLD_LIBRARY_PATH").env_remove("CARGO").env_remove("LUMEN_PLUGIN_PATH");
        if let Some(p) = plugin_path {
            c.env("LUMEN_PLUGIN_PATH", p);
        }
        c.arg("plugins").output().expect("run lumen")
    };
    let dir = plugin_dir("plugins-direct", &[example_lib()]);
    let out = run(&lumen_bin(), Some(&path_list(&[&dir])));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("method abs_input_x_gradient"), "{}", text(&out.stdout));

    // install layout: bin/lumen, bin/liblumen_dylib.so, bin/plugins/<packs>
    let root = tmpdir("plugins-install");
    std::fs::create_dir_all(root.join("plugins")).unwrap();
    std::fs::copy(lumen_bin(), root.join("lumen")).unwrap();
    let runtime = lib_name("lumen_dylib");
    let rt = [profile_dir().join(&runtime), profile_dir().join("deps").join(&runtime)];
    let rt = rt.iter().find(|p| p.exists()).expect("liblumen_dylib in the target dir");
    std::fs::copy(rt, root.join(&runtime)).unwrap();
    std::fs::copy(example_lib(), root.join("plugins").join(lib_name("lumen_example"))).unwrap();
    let out = run(&root.join("lumen"), None);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = s.lines().find(|l| l.trim_start().starts_with("lumen-example ")).unwrap_or_else(|| panic!("{s}"));
    assert!(line.contains("plugins dir") && line.ends_with("loaded"), "{line}");
}

#[test]
fn pack_with_another_fingerprint_is_refused_and_the_others_load() {
    let dir = plugin_dir("plugins-badfp", &[fixture_lib("fixture_badfp"), example_lib()]);
    let pp = path_list(&[&dir]);
    let foreign = "lumen-core 0.0.1; candle 0.0.0; features none; rustc 1.0.0 (fixture)";

    let out = lumen_with(&pp, &["list"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{se}");
    let warn = se.lines().find(|l| l.contains("fixture-badfp")).unwrap_or_else(|| panic!("{se}"));
    assert!(warn.starts_with("warning: plugin fixture-badfp refused"), "{warn}");
    assert!(warn.contains(&format!("expected fingerprint '{FINGERPRINT}'")) && warn.contains(foreign), "{warn}");
    assert!(so.contains("abs_input_x_gradient"), "{so}");
    assert!(!so.contains("fixture_badfp_method"), "{so}");

    let out = lumen_with(&pp, &["plugins"]);
    let s = text(&out.stdout);
    let line = s.lines().find(|l| l.trim_start().starts_with("fixture-badfp ")).unwrap_or_else(|| panic!("{s}"));
    assert!(line.contains("0.0.1") && line.contains("fingerprint MISMATCH") && line.ends_with("refused"), "{line}");

    // the loader option that sets the host's expected fingerprint refuses a real pack
    let mut reg = Registry::new();
    let opts = LoadOptions { expected_fingerprint: "a host from elsewhere".into(), ..LoadOptions::only(&[example_lib()]) };
    let rep = load_into(&mut reg, &opts);
    assert_eq!(rep.packs.len(), 1);
    match &rep.packs[0].status {
        PackStatus::Refused(e @ Error::IncompatiblePlugin { expected, found, .. }) => {
            assert_eq!(expected, "a host from elsewhere");
            assert_eq!(found, FINGERPRINT);
            let m = e.to_string();
            assert!(m.contains("a host from elsewhere") && m.contains(FINGERPRINT), "{m}");
        }
        s => panic!("{s:?}"),
    }
    assert!(reg.method("abs_input_x_gradient").is_err());
}

/// The failure the shared runtime exists to prevent: a pack with its own lumen-core and
/// candle. Same fingerprint, so only the shared-runtime check can catch it.
#[test]
fn pack_with_a_private_lumen_core_is_refused() {
    let dir = plugin_dir("plugins-private", &[fixture_lib("fixture_private"), example_lib()]);
    let out = lumen_with(&path_list(&[&dir]), &["list"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{se}");
    let warn = se.lines().find(|l| l.contains("fixture-private")).unwrap_or_else(|| panic!("{se}"));
    assert!(warn.starts_with("warning: plugin fixture-private refused") && warn.contains("do not share one lumen-core"), "{warn}");
    assert!(!so.contains("fixture_private_method") && so.contains("abs_input_x_gradient"), "{so}");
}

#[test]
fn duplicate_item_from_two_packs_names_both() {
    let a = plugin_dir("plugins-dup-a", &[example_lib()]);
    let b = plugin_dir("plugins-dup-b", &[fixture_lib("fixture_dup")]);
    let pp = path_list(&[&a, &b]);
    let out = lumen_with(&pp, &["list"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{se}");
    let warn = se.lines().find(|l| l.contains("fixture-dup")).unwrap_or_else(|| panic!("{se}"));
    assert!(warn.contains("method 'abs_input_x_gradient' is registered twice"), "{warn}");
    assert!(warn.contains("by lumen-example (") && warn.contains("and by fixture-dup ("), "{warn}");
    // all or nothing: the clashing pack added nothing
    assert!(!so.contains("fixture_dup_only"), "{so}");
    let line = so.lines().find(|l| l.trim_start().starts_with("abs_input_x_gradient")).unwrap();
    assert!(line.contains("lumen-example ("), "{line}");

    // the same pack from two files is registered once, without a warning
    let b = example_lib();
    let pp = path_list(&[&a, &b]);
    let out = lumen_with(&pp, &["list"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && !se.contains("warning"), "{se}");
    assert_eq!(so.lines().filter(|l| l.trim_start().starts_with("abs_input_x_gradient")).count(), 1, "{so}");
    let out = lumen_with(&pp, &["plugins"]);
    let s = text(&out.stdout);
    let rows: Vec<&str> = s.lines().filter(|l| l.trim_start().starts_with("lumen-example ")).collect();
    assert!(rows.len() >= 2 && rows[0].ends_with("loaded") && rows[1].ends_with("duplicate file"), "{s}");
    assert!(s.contains(&format!("already registered from lumen-example ({})", a.canonicalize().unwrap().join(lib_name("lumen_example")).display())), "{s}");
}

#[test]
fn missing_and_non_library_entries_are_skipped_with_a_warning() {
    let dir = plugin_dir("plugins-junk", &[example_lib()]);
    std::fs::write(dir.join(lib_name("garbage")), "this is not a shared library").unwrap();
    std::fs::write(dir.join("README.txt"), "not a library name, ignored").unwrap();
    let missing = dir.join("no-such-dir");
    let pp = path_list(&[&missing, &dir]);
    let out = lumen_with(&pp, &["list"]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{se}");
    assert!(se.contains(&format!("warning: plugin path entry {} does not exist; skipped", missing.display())), "{se}");
    let g = se.lines().find(|l| l.contains(&lib_name("garbage"))).unwrap_or_else(|| panic!("{se}"));
    assert!(g.starts_with("warning: ") && g.contains("not a lumen plugin pack"), "{g}");
    assert!(!se.contains("README"), "{se}");
    assert!(so.contains("abs_input_x_gradient"), "{so}");
}

/// A small explainable model made and owned by the host (this process).
pub(crate) fn host_model(seed: u64) -> NetworkModel {
    let d = Device::Cpu;
    let specs = lumen_models::arch::mnist_cnn();
    let params = lumen_core::model::network::init_params(&specs, seed, &d).unwrap();
    let net = Network::from_spec(&specs, VarBuilder::from_tensors(params, DType::F32, &d)).unwrap();
    let info = ModelInfo {
        name: "host-cnn".into(),
        input_shape: vec![1, 28, 28],
        labels: (0..10).map(|c| c.to_string()).collect(),
        input_range: (0.0, 1.0),
        card: None,
    };
    NetworkModel::new(info, net, &d).unwrap()
}

pub(crate) fn loaded_registry(libs: &[PathBuf]) -> Registry {
    lumen_std_gradients::link(); // the host's own saliency
    let mut reg = Registry::from_inventory().unwrap();
    let rep = load_into(&mut reg, &LoadOptions::only(libs));
    for p in &rep.packs {
        assert!(matches!(p.status, PackStatus::Loaded { .. }), "{p:?}");
    }
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    reg
}

/// The example method, run from the loaded library, against the same computation done
/// here: noise drawn the same way, the gradient through the host's own helper, the
/// percentile cap written out naively. Host and pack tensors are created interleaved
/// over many runs, so colliding tensor ids would show up as wrong gradients.
#[test]
fn pack_tensors_meet_host_model_tensors_in_one_graph() {
    let reg = loaded_registry(&[example_lib()]);
    let (_, origin) = reg.methods().find(|(e, _)| e.name == "abs_input_x_gradient").unwrap();
    assert_ne!(origin.source, "static", "the method must come from the loaded library");
    let d = Device::Cpu;
    let model = host_model(3);
    let data = lumen_core::data::mnist::Mnist::load().unwrap();
    let mut keep = vec![]; // host tensors kept alive across runs
    let mut rng = StdRng::seed_from_u64(11);
    for run in 0..12u64 {
        // host tensors before the pack call, with their own backward pass
        let h = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 10), &d).unwrap()).unwrap();
        let hg = h.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        keep.push(hg.get(h.as_tensor()).unwrap().clone());

        let (x, _) = data.batch(lumen_core::data::mnist::Split::Test, &[run as usize * 7, run as usize * 7 + 3], &d).unwrap();
        let (n, sigma, seed, p) = (3usize, 0.1 + 0.02 * run as f64, 100 + run, 95.0 + (run % 5) as f64);
        let target = Target::Classes(vec![rng.gen_range(0..10), rng.gen_range(0..10)]);
        let params = Params::new()
            .with("n", n as i64)
            .with("sigma", sigma)
            .with("seed", seed as i64)
            .with("percentile", p)
            .with("batch_size", 64i64);
        let method = reg.build_method("abs_input_x_gradient", &params).unwrap();
        let got = method.attribute(&model, &x, &target).unwrap().attribution().flatten_from(1).unwrap().to_vec2::<f32>().unwrap();

        // more host tensors in between
        keep.push(Tensor::ones((3, 3), DType::F32, &d).unwrap());

        // the same computation, in the host
        let normal = Normal::new(0f64, sigma).unwrap();
        let mut nrng = StdRng::seed_from_u64(seed);
        let xs = repeat_each(&x, n).unwrap();
        let noise: Vec<f32> = (0..xs.elem_count()).map(|_| normal.sample(&mut nrng) as f32).collect();
        let xs = (&xs + Tensor::from_vec(noise, xs.shape(), &d).unwrap()).unwrap();
        let g = gradient(&model, &xs, &target.repeat_each(n), ForwardOptions::default()).unwrap().grad;
        let m = (&xs * &g).unwrap().abs().unwrap().flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        for b in 0..2 {
            let mut mean = vec![0f32; 784];
            for s in 0..n {
                for (acc, v) in mean.iter_mut().zip(&m[b * n + s]) {
                    *acc += v / n as f32;
                }
            }
            let mut sorted = mean.clone();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let k = ((p / 100.0 * 784.0).ceil() as usize).max(1) - 1;
            let cap = sorted[k];
            assert!(cap > 0.0);
            for (i, (want, have)) in mean.iter().map(|v| v.min(cap) / cap).zip(&got[b]).enumerate() {
                assert!((want - have).abs() < 1e-4, "run {run}, example {b}, pixel {i}: host {want} vs pack {have}");
            }
        }
    }

    // the other way round: the host's method (saliency, std pack) on the pack's model.
    // The model is linear, logit_k = μ_k·x − ½‖μ_k‖², so the gradient is exactly μ_k.
    let pack_model = reg.load_model("example-class-means", &d).unwrap();
    for run in 0..5 {
        let x = Tensor::rand(0f32, 1., (2, 1, 28, 28), &d).unwrap();
        let k = [run, 9 - run];
        let sal = reg.build_method("saliency", &Params::new()).unwrap();
        let e = sal.attribute(pack_model.as_ref(), &x, &Target::Classes(k.to_vec())).unwrap();
        let g = e.attribution().flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let w = pack_model.network().unwrap().node("fc").unwrap().1.weight.as_ref().unwrap().to_vec2::<f32>().unwrap();
        for b in 0..2 {
            for i in 0..784 {
                assert!((g[b][i] - w[k[b]][i]).abs() < 1e-6, "run {run}: pixel {i}");
            }
        }
    }
}

#[test]
fn panicking_pack_method_is_contained_and_the_next_call_works() {
    let reg = loaded_registry(&[fixture_lib("fixture_panic"), example_lib()]);
    let model = host_model(5);
    let x = Tensor::rand(0f32, 1., (2, 1, 28, 28), &Device::Cpu).unwrap();
    let panicky = reg.build_method("fixture_panic", &Params::new()).unwrap();
    for _ in 0..3 {
        match panicky.attribute(&model, &x, &Target::Predicted) {
            Err(Error::PluginPanicked { plugin, message }) => {
                assert_eq!(plugin, "fixture-panic");
                assert!(message.contains("deliberate panic"), "{message}");
            }
            other => panic!("expected PluginPanicked, got {other:?}"),
        }
    }
    let calm = reg.build_method("fixture_panic", &Params::new().with("panic", false)).unwrap();
    let e = calm.attribute(&model, &x, &Target::Predicted).unwrap();
    assert_eq!(e.attribution().dims(), &[2, 1, 28, 28]);
    let ixg = reg.build_method("abs_input_x_gradient", &Params::new()).unwrap();
    let a = ixg.attribute(&model, &x, &Target::Predicted).unwrap();
    assert_eq!(a.attribution().dims(), &[2, 1, 28, 28]);

    // a pack model whose forward panics, called directly and from a host method
    let bad = reg.load_model("fixture-panic-model", &Device::Cpu).unwrap();
    match bad.forward(&x) {
        Err(Error::PluginPanicked { plugin, message }) => {
            assert_eq!(plugin, "fixture-panic");
            assert!(message.contains("forward pass"), "{message}");
        }
        other => panic!("expected PluginPanicked, got {other:?}"),
    }
    let sal = reg.build_method("saliency", &Params::new()).unwrap();
    let e = sal.attribute(bad.as_ref(), &x, &Target::Class(1)).unwrap_err();
    assert!(e.to_string().contains("panicked"), "{e}");
    // and the host still works
    assert!(sal.attribute(&model, &x, &Target::Class(1)).is_ok());

    // a pack generator: decoder and encoder panics are contained too
    let g = reg.load_generator("fixture-panic-generator", &Device::Cpu).unwrap();
    assert_eq!(g.latent_dim(), 4);
    let z = Tensor::zeros((1, 4), lumen_core::candle::DType::F32, &Device::Cpu).unwrap();
    for _ in 0..2 {
        match g.generate(&z) {
            Err(Error::PluginPanicked { plugin, message }) => {
                assert_eq!(plugin, "fixture-panic");
                assert!(message.contains("pack generator"), "{message}");
            }
            other => panic!("expected PluginPanicked, got {other:?}"),
        }
    }
    match g.encode(&x) {
        Some(Err(Error::PluginPanicked { message, .. })) => assert!(message.contains("encoder"), "{message}"),
        other => panic!("expected a contained encoder panic, got {other:?}"),
    }

    // a pack sampler: build works, every draw and save panic is contained
    let train = Tensor::zeros((2, 1, 28, 28), lumen_core::candle::DType::F32, &Device::Cpu).unwrap();
    let s = reg.build_sampler("fixture-panic-sampler", &Params::new(), &train).unwrap();
    let img = x.get(0).unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    for _ in 0..2 {
        match s.sample(&img, lumen_core::sampler::Window::square(0, 0, 3), 2, &mut rng) {
            Err(Error::PluginPanicked { plugin, message }) => {
                assert_eq!(plugin, "fixture-panic");
                assert!(message.contains("pack sampler"), "{message}");
            }
            other => panic!("expected PluginPanicked, got {other:?}"),
        }
    }
    let e = s.save(&std::env::temp_dir().join("lumen-never-written")).unwrap_err();
    assert!(matches!(e, Error::PluginPanicked { .. }), "{e}");
    // the host's own sampler still works after the panics
    let m = reg.build_sampler("marginal", &Params::new(), &train).unwrap();
    assert_eq!(m.sample(&img, lumen_core::sampler::Window::square(0, 0, 3), 2, &mut rng).unwrap().dims(), &[2, 1, 3, 3]);
}

/// Libraries are opened once per process: a later registry, even one searching a copy
/// of the file elsewhere, gets the pack from the library already loaded.
#[test]
fn a_second_registry_reuses_the_loaded_library() {
    let first = loaded_registry(&[example_lib()]);
    let copy = plugin_dir("plugins-second", &[example_lib()]);
    let second = loaded_registry(&[copy]);
    let source = |r: &Registry| {
        r.methods().find(|(e, _)| e.name == "abs_input_x_gradient").map(|(_, o)| o.source.clone()).expect("registered")
    };
    assert_eq!(source(&first), source(&second));
    assert_eq!(source(&first), example_lib().canonicalize().unwrap().display().to_string());
}

/// The example pack's method and model from a Rhai script, through the registry the
/// host hands to the script engine.
#[test]
fn example_pack_runs_from_rhai() {
    let reg = std::sync::Arc::new(loaded_registry(&[example_lib()]));
    let opts = lumen_script::ScriptOptions { out_dir: tmpdir("plugins-rhai"), ..Default::default() };
    let src = r#"
        let m = model("example-class-means");
        let x = mnist("test").take(2).images();
        let e = explain(m, x, method("abs_input_x_gradient", #{percentile: 95.0, n: 2, sigma: 0.1, seed: 3}));
        let a = e.attribution;
        `${a.numel()} ${a.max()} ${a.min()}`
    "#;
    let v = lumen_script::eval_source("plugins.rhai", src, reg, &opts).unwrap_or_else(|e| panic!("{e}"));
    let s = v.to_string();
    let parts: Vec<f64> = s.split(' ').map(|p| p.parse().unwrap_or_else(|_| panic!("{s}"))).collect();
    assert_eq!(parts, vec![1568.0, 1.0, 0.0], "{s}");
}

/// The same from the command line: `lumen run` hands the host's registry, plugins
/// included, to the script.
#[test]
fn example_pack_runs_from_lumen_run() {
    let dir = plugin_dir("plugins-run", &[example_lib()]);
    let script = dir.join("pack.rhai");
    std::fs::write(
        &script,
        r#"
        let e = explain(model("example-class-means"), mnist("test").take(1).images(),
                        method("abs_input_x_gradient", #{percentile: 90.0}));
        let a = e.attribution;
        print(`pack map: ${a.numel()} ${a.max()} ${a.min()}`);
        "#,
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = lumen_with(&path_list(&[&dir]), &["run", script.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{so}\n{se}");
    assert!(so.contains("pack map: 784 1.0 0.0") || so.contains("pack map: 784 1 0"), "{so}\n{se}");
}

/// The standard packs are ordinary packs: a host that links none of them finds every
/// one as a plugin file in the target directory, and computes the same maps as the
/// `lumen` binary, which links them statically.
#[test]
fn standard_packs_load_as_plugin_files_into_a_bare_host() {
    let exe = built(profile_dir().join("examples").join(format!("bare_host{}", std::env::consts::EXE_SUFFIX)));
    // The pack files cargo built, copied into a plugin directory of their own.
    let packs: Vec<PathBuf> = [
        "lumen_models",
        "lumen_std_gradients",
        "lumen_std_propagation",
        "lumen_std_relevance",
        "lumen_std_perturbation",
        "lumen_std_generators",
        "lumen_cdeepex",
        "lumen_clear",
        "lumen_std_metrics",
        "lumen_std_shapley",
        "lumen_std_cam",
        "lumen_std_layer",
    ]
    .iter()
    .map(|c| built(profile_dir().join("deps").join(lib_name(c))))
    .collect();
    let dir = plugin_dir("bare-host", &packs);
    // Run directly (not through cargo): the rpath must find lumen-dylib and std.
    let out = Command::new(&exe).arg(&dir).env_remove("LD_LIBRARY_PATH").output().expect("run bare_host");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bare_host failed:\n{so}\n{se}");
    for pack in [
        "lumen-models",
        "lumen-std-gradients",
        "lumen-std-propagation",
        "lumen-std-relevance",
        "lumen-std-perturbation",
        "lumen-std-generators",
        "lumen-cdeepex",
        "lumen-clear",
        "lumen-std-metrics",
        "lumen-std-shapley",
        "lumen-std-cam",
        "lumen-std-layer",
    ] {
        // Packs that embed another pack (std-relevance links lumen-models) report it
        // as already loaded; one file must have registered it.
        assert!(so.lines().any(|l| l.starts_with(&format!("pack {pack} loaded "))), "{pack} not loaded:\n{so}\n{se}");
    }
    let list = |kind: &str| -> Vec<String> {
        let l = so.lines().find(|l| l.starts_with(&format!("{kind} "))).unwrap_or_else(|| panic!("{kind}:\n{so}"));
        l[kind.len() + 1..].split(',').map(str::to_string).collect()
    };
    let methods = list("methods");
    for m in ["saliency", "integrated_gradients", "smoothgrad", "guided_backprop", "deeplift", "lrp", "pda", "cdeepex", "xgems", "clear", "kernel_shap", "shapley_sampling", "grad_cam"] {
        assert!(methods.iter().any(|x| x == m), "{m} missing: {methods:?}");
    }
    assert!(list("models").iter().any(|x| x == "mnist-cnn"));
    assert!(list("models").iter().any(|x| x == "genomics-cnn"));
    assert!(list("generators").iter().any(|x| x == "mnist-vae"));
    assert!(list("samplers").iter().any(|x| x == "conditional_gaussian"));
    assert!(list("metrics").iter().any(|x| x == "deletion"));

    // The same maps, computed here through the statically linked packs.
    lumen_std_gradients::link();
    let _ = lumen_models::models_dirs;
    let reg = Registry::from_inventory().unwrap();
    let model = reg.load_model("mnist-cnn", &Device::Cpu).unwrap();
    let x = lumen_core::data::load_input("mnist:test:0", &Device::Cpu).unwrap().tensor.unsqueeze(0).unwrap();
    for (method, params) in [("saliency", Params::new()), ("integrated_gradients", Params::new().with("steps", 16i64))] {
        let e = reg.build_method(method, &params).unwrap().attribute(model.as_ref(), &x, &Target::Class(7)).unwrap();
        let a = e.attribution();
        let here = [a.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), a.sum_all().unwrap().to_scalar::<f32>().unwrap()];
        let line = so.lines().find(|l| l.starts_with(&format!("{method} "))).unwrap_or_else(|| panic!("{method}:\n{so}"));
        let there: Vec<f32> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
        for (h, t) in here.iter().zip(&there) {
            assert!((h - t).abs() <= 1e-5 * h.abs().max(1.0), "{method}: host {here:?} vs bare host {there:?}");
        }
    }
}
