//! The plugin loader against misbehaving packs (issue 17, sections 6 and 7): unbounded
//! messages, panics out of entry points, refused packs' items, name clashes, panicking
//! accessors, versioned file names, an edited lumen-core, `lumen plugins --check`, and
//! the relocatable `dist` package run by an unprivileged user.

use crate::plugins::{example_lib, fixture_lib, lib_name, loaded_registry, path_list, plugin_dir, text};
use crate::util::{lumen_bin, repo_root, tmpdir};
use lumen_core::plugin::{load_into, LoadOptions, PackStatus, FINGERPRINT};
use lumen_core::{Error, Params, Registry};
use std::path::Path;
use std::process::{Command, Output};

/// `lumen ARGS` with `LUMEN_PLUGIN_PATH` and extra environment variables.
fn lumen_env(plugin_path: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(lumen_bin());
    c.env("LUMEN_PLUGIN_PATH", plugin_path).env_remove("LUMEN_FIXTURE_REGISTER").env_remove("RUST_BACKTRACE").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run lumen")
}

/// The non-empty stderr lines, less the blocks of Rust's default panic hook (a
/// contained panic still runs the hook; silencing it is not the loader's business):
/// what lumen itself said.
fn said(out: &Output) -> Vec<String> {
    let mut v = vec![];
    let mut in_hook = false;
    for l in text(&out.stderr).lines().filter(|l| !l.trim().is_empty()) {
        if l.starts_with("thread '") && l.contains(" panicked at ") {
            in_hook = true;
        } else if in_hook {
            in_hook = !l.starts_with("note: run with `RUST_BACKTRACE");
        } else {
            v.push(l.to_string());
        }
    }
    v
}

fn one_line(out: &Output) -> String {
    let l = said(out);
    assert_eq!(l.len(), 1, "expected one line on stderr:\n{}", text(&out.stderr));
    l[0].clone()
}

fn canon(dir: &Path, lib: &str) -> String {
    dir.canonicalize().unwrap().join(lib_name(lib)).display().to_string()
}

#[test]
fn an_error_message_without_a_nul_is_read_within_the_buffer() {
    let dir = plugin_dir("loader-nonul", &[fixture_lib("fixture_misbehave")]);
    let out = lumen_env(&path_list(&[&dir]), &[("LUMEN_FIXTURE_REGISTER", "nonul")], &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let l = one_line(&out);
    let path = canon(&dir, "fixture_misbehave");
    assert!(l.starts_with(&format!("warning: plugin fixture-misbehave not loaded: plugin error ({path}): AAAA")), "{l}");
    assert!(l.ends_with("A… (truncated)"), "{l}");
    // 400 characters of the pack's message at most, nothing from beyond the buffer
    let msg = l.rsplit("): ").next().unwrap();
    assert_eq!(msg, format!("{}… (truncated)", "A".repeat(400)));
    assert!(!text(&out.stdout).contains("fixture_misbehave_method"));
}

#[test]
fn a_panic_out_of_the_register_entry_point_is_contained() {
    let dir = plugin_dir("loader-unwind", &[fixture_lib("fixture_misbehave"), example_lib()]);
    let out = lumen_env(&path_list(&[&dir]), &[("LUMEN_FIXTURE_REGISTER", "panic")], &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        one_line(&out),
        format!(
            "warning: plugin fixture-misbehave not loaded: plugin error ({}): plugin 'fixture-misbehave' panicked: deliberate panic in the register entry point",
            canon(&dir, "fixture_misbehave")
        )
    );
    let so = text(&out.stdout);
    assert!(!so.contains("fixture_misbehave_method") && so.contains("abs_input_x_gradient"), "{so}");
    // unset, the same pack loads
    let out = lumen_env(&path_list(&[&dir]), &[], &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(said(&out).is_empty(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("fixture_misbehave_method"));
}

/// The refused pack's inventory items are in the process-wide lists (its constructors
/// ran), one of them claiming to belong to the example pack. None is ever registered.
#[test]
fn a_refused_packs_items_are_never_registered() {
    let dir = plugin_dir("loader-refused", &[fixture_lib("fixture_badfp"), example_lib()]);
    let out = lumen_env(&path_list(&[&dir]), &[], &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(one_line(&out).starts_with("warning: plugin fixture-badfp refused: incompatible plugin"), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    assert!(!so.contains("fixture_badfp_impostor") && !so.contains("fixture_badfp_method"), "{so}");
    assert!(so.contains("abs_input_x_gradient"), "{so}");

    // in this process: neither a later registry from the inventory nor the real
    // example pack picks them up
    let mut reg = Registry::new();
    let rep = load_into(&mut reg, &LoadOptions::only(&[fixture_lib("fixture_badfp")]));
    assert!(matches!(rep.packs[0].status, PackStatus::Refused(_)), "{:?}", rep.packs);
    let stat = Registry::from_inventory().unwrap();
    assert!(stat.method("fixture_badfp_impostor").is_err() && stat.method("fixture_badfp_method").is_err());
    let reg = loaded_registry(&[example_lib()]);
    assert!(reg.method("fixture_badfp_impostor").is_err());
    let items = lumen_core::plugin::items_of(&reg, "lumen-example");
    assert_eq!(items, ["method abs_input_x_gradient", "model example-class-means"]);
}

#[test]
fn two_packs_of_one_name_are_refused_not_merged() {
    let a = plugin_dir("loader-name-a", &[example_lib()]);
    let b = plugin_dir("loader-name-b", &[fixture_lib("fixture_samename")]);
    let out = lumen_env(&path_list(&[&a, &b]), &[], &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        one_line(&out),
        format!(
            "warning: plugin lumen-example refused: plugin error ({}): the pack name 'lumen-example' is already taken by the pack from {}; packs of the same name are not merged",
            canon(&b, "fixture_samename"),
            canon(&a, "lumen_example")
        )
    );
    let so = text(&out.stdout);
    assert!(!so.contains("fixture_samename_extra"), "{so}");
    let line = so.lines().find(|l| l.trim_start().starts_with("abs_input_x_gradient")).unwrap();
    assert!(line.contains(&canon(&a, "lumen_example")), "{line}");

    // first come, first served: the impostor first, and the real pack is the one refused
    let out = lumen_env(&path_list(&[&b, &a]), &[], &["plugins"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let rows: Vec<&str> = so.lines().filter(|l| l.trim_start().starts_with("lumen-example ")).collect();
    assert_eq!(rows.len(), 2, "{so}");
    assert!(rows[0].contains(&canon(&b, "fixture_samename")) && rows[0].ends_with("loaded"), "{so}");
    assert!(rows[1].contains(&canon(&a, "lumen_example")) && rows[1].ends_with("refused"), "{so}");
    assert!(so.contains("method fixture_samename_extra") && !so.contains("      method abs_input_x_gradient"), "{so}");
}

/// `name()`, `params()`, `props()` and `info()` are read once, under the guard.
#[test]
fn panicking_accessors_are_contained() {
    let reg = loaded_registry(&[fixture_lib("fixture_panic")]);
    for which in ["name", "params", "props"] {
        match reg.build_method("fixture_panic_accessors", &Params::new().with("which", which)) {
            Err(Error::PluginPanicked { plugin, message }) => {
                assert_eq!(plugin, "fixture-panic");
                assert_eq!(message, format!("deliberate panic in {which}()"));
            }
            Err(e) => panic!("{which}: {e}"),
            Ok(_) => panic!("{which}: built"),
        }
    }
    let m = reg.build_method("fixture_panic_accessors", &Params::new().with("which", "none")).unwrap();
    assert_eq!(m.name(), "fixture_panic_accessors");
    match reg.load_model("fixture-panic-info", &lumen_core::candle::Device::Cpu) {
        Err(Error::PluginPanicked { message, .. }) => assert_eq!(message, "deliberate panic in info()"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("loaded"),
    }

    // from the command line: one error, exit 1
    let dir = plugin_dir("loader-accessors", &[fixture_lib("fixture_panic")]);
    let out_dir = tmpdir("loader-accessors-out");
    let out = lumen_env(
        &path_list(&[&dir]),
        &[],
        &["explain", "--model", "fixture-panic-info", "--method", "saliency", "--input", "mnist:test:0", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(one_line(&out), "error: plugin 'fixture-panic' panicked: deliberate panic in info()");
    let out = lumen_env(
        &path_list(&[&dir]),
        &[],
        &["explain", "--model", "mnist-cnn", "--method", "fixture_panic_accessors", "--input", "mnist:test:0", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(one_line(&out), "error: plugin 'fixture-panic' panicked: deliberate panic in name()");
}

#[test]
fn versioned_library_names_are_found() {
    let dir = tmpdir("loader-versioned");
    let lib = dir.join(format!("{}.1", lib_name("lumen_example")));
    std::fs::copy(example_lib(), &lib).unwrap();
    let out = lumen_env(&path_list(&[&dir]), &[], &["plugins"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(said(&out).is_empty(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    let row = so.lines().find(|l| l.trim_start().starts_with("lumen-example ")).unwrap_or_else(|| panic!("{so}"));
    let lib = lib.canonicalize().unwrap();
    assert!(row.contains(&format!("[{} (found via LUMEN_PLUGIN_PATH)]", lib.display())) && row.ends_with("loaded"), "{row}");
}

/// The fixture reports the host's fingerprint with another layout hash, as a pack built
/// from an edited lumen-core of the same version would.
#[test]
fn a_pack_from_an_edited_lumen_core_is_refused() {
    let dir = plugin_dir("loader-layout", &[fixture_lib("fixture_layout"), example_lib()]);
    let out = lumen_env(&path_list(&[&dir]), &[], &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (same, _) = FINGERPRINT.rsplit_once("; layout ").unwrap();
    assert_eq!(
        one_line(&out),
        format!(
            "warning: plugin fixture-layout refused: incompatible plugin {}: expected fingerprint '{FINGERPRINT}', found '{same}; layout 0123456789abcdef'",
            canon(&dir, "fixture_layout")
        )
    );
    let so = text(&out.stdout);
    assert!(!so.contains("fixture_layout_method") && so.contains("abs_input_x_gradient"), "{so}");
}

#[test]
fn plugins_check_reports_ok_refused_and_crashed_and_the_host_survives() {
    let dir = plugin_dir(
        "loader-check",
        &[example_lib(), fixture_lib("fixture_badfp"), fixture_lib("fixture_misbehave")],
    );
    let d = dir.to_str().unwrap();
    for (mode, signal) in [("abort", "SIGABRT (signal 6)"), ("segv", "SIGSEGV (signal 11)")] {
        let out = lumen_env("", &[("LUMEN_FIXTURE_REGISTER", mode)], &["plugins", "--check", d]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert_eq!(one_line(&out), format!("error: 2 of 3 pack(s) in {d} did not pass the check"));
        let so = text(&out.stdout);
        let row = |lib: &str| {
            let p = dir.join(lib_name(lib)).display().to_string();
            so.lines().find(|l| l.trim_start().starts_with(&format!("{p}: "))).unwrap_or_else(|| panic!("{lib}:\n{so}")).to_string()
        };
        let ok = row("lumen_example");
        assert!(ok.contains(": ok: lumen-example 0.1.0 (2 items: method abs_input_x_gradient, model example-class-means)"), "{ok}");
        assert!(row("fixture_badfp").contains(": refused: fixture-badfp 0.0.1: incompatible plugin"), "{so}");
        let crashed = row("fixture_misbehave");
        assert!(crashed.contains(&format!(": crashed: the child process died of {signal}")), "{crashed}");
    }
    // every pack fine: exit 0, nothing on stderr
    let good = plugin_dir("loader-check-good", &[example_lib()]);
    let out = lumen_env("", &[], &["plugins", "--check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(said(&out).is_empty(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(": ok: lumen-example 0.1.0"), "{}", text(&out.stdout));
    // no such directory
    let missing = good.join("nope");
    let out = lumen_env("", &[], &["plugins", "--check", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(one_line(&out), format!("error: cannot check plugins: {} is neither a directory nor a file", missing.display()));
}

/// tools/dist.sh packages the build this test runs against; the unpacked tarball runs
/// as `nobody` with an empty environment, from a directory outside the source tree.
#[test]
fn dist_package_runs_as_an_unprivileged_user_with_a_clean_environment() {
    let release = lumen_bin().parent().unwrap().to_path_buf();
    let tmp = tmpdir("loader-dist");
    let out = Command::new("bash")
        .arg(repo_root().join("tools/dist.sh"))
        .args(["--no-build", "--release-dir", release.to_str().unwrap(), "--out"])
        .arg(tmp.join("dist"))
        .output()
        .expect("run tools/dist.sh");
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let tarball = text(&out.stdout).lines().last().unwrap().to_string();
    assert!(tarball.ends_with(".tar.gz"), "{tarball}");
    let name = Path::new(&tarball).file_name().unwrap().to_str().unwrap().trim_end_matches(".tar.gz").to_string();
    assert!(name.starts_with(&format!("lumen-{}-", env!("CARGO_PKG_VERSION"))), "{name}");

    let unpack = tmp.join("unpacked");
    std::fs::create_dir_all(&unpack).unwrap();
    let st = Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&unpack).status().unwrap();
    assert!(st.success());
    let root = unpack.join(&name);
    for f in [
        "bin/lumen",
        "lib/liblumen_dylib.so",
        "lib/lumen/plugins/liblumen_example.so",
        "lib/lumen/packs/liblumen_std_gradients.so",
        "lib/lumen/packs/liblumen_models.so",
        "share/lumen/models/mnist-cnn.toml",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    let libstd = std::fs::read_dir(root.join("lib")).unwrap().filter_map(|e| e.ok()).any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        n.starts_with("libstd-") && n.ends_with(".so")
    });
    assert!(libstd, "no libstd in lib/");
    let out_dir = tmp.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // writable for nobody
    let st = Command::new("chmod").arg("777").arg(&out_dir).status().unwrap();
    assert!(st.success());

    let as_nobody = |args: &[&str]| -> Output {
        // root switches to nobody; anyone else runs it as themselves, still with no HOME,
        // no cargo and no library path
        let root_user = text(&Command::new("id").arg("-u").output().unwrap().stdout).trim() == "0";
        let mut c = if root_user {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin"]);
            c
        } else {
            let mut c = Command::new("env");
            c.args(["-i", "PATH=/usr/bin:/bin"]);
            c
        };
        c.arg(root.join("bin/lumen")).args(args).current_dir(&root).env_clear().env("PATH", "/usr/bin:/bin");
        c.output().expect("run the packaged lumen")
    };
    let out = as_nobody(&["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(said(&out).is_empty(), "{}", text(&out.stderr));
    let so = text(&out.stdout);
    // the example pack, found in lib/lumen/plugins
    let line = so.lines().find(|l| l.trim_start().starts_with("abs_input_x_gradient")).unwrap_or_else(|| panic!("{so}"));
    assert!(line.contains(&format!("{}/lib/lumen/plugins/", root.display())), "{line}");

    let out = as_nobody(&[
        "explain", "--model", "mnist-cnn", "--input", "mnist:test:3", "--method", "saliency", "--out", out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let files: Vec<String> = std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().any(|f| f.ends_with(".png")) && files.iter().any(|f| f.ends_with(".safetensors")), "{files:?}");
    // the card comes from the package: without it there, the source tree is not consulted
    std::fs::remove_file(root.join("share/lumen/models/mnist-cnn.toml")).unwrap();
    let out = as_nobody(&[
        "explain", "--model", "mnist-cnn", "--input", "mnist:test:3", "--method", "saliency", "--out", out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let l = one_line(&out);
    assert!(l.starts_with("error: ") && l.contains("no model card 'mnist-cnn.toml' in"), "{l}");
    assert!(l.contains(&format!("{}/share/lumen/models", root.display())), "{l}");
    assert!(!l.contains(repo_root().join("models").to_str().unwrap()), "{l}");
}
