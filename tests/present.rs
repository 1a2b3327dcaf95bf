//! What packs declare for the host (typed diagnostics, picture renderers, gallery
//! presets) and what the host makes of it, from the outside.

use crate::explain::random_cnn;
use crate::util::{lumen, repo_root, tmpdir};
use lumen_core::candle::Device;
use lumen_core::data::load_input;
use lumen_core::{present, Params, Registry, Target};

fn registry() -> Registry {
    lumen_std_gradients::link();
    lumen_std_relevance::link();
    lumen_clear::link();
    lumen_cdeepex::link();
    lumen_std_perturbation::link();
    lumen_std_propagation::link();
    Registry::from_inventory().expect("registry")
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().expect("a list").iter().map(|x| x.as_f64().expect("a number")).collect()
}

/// IG's typed completeness delta is what `lumen explain` writes into its sidecar.
#[test]
fn ig_completeness_delta_is_typed_and_in_the_sidecar() {
    let dir = tmpdir("present-ig");
    let card = random_cnn(&dir, "random-cnn");
    let out = dir.join("out");
    ok(&lumen(&[
        "explain", "--model-card", card.to_str().unwrap(), "--input", "mnist:test:3", "--method",
        "integrated_gradients", "--param", "steps=16", "--out", out.to_str().unwrap(),
    ]));
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mnist-test-3_integrated_gradients.json")).unwrap()).unwrap();
    let reg = registry();
    let model = lumen_core::model::load_card_model(&card, &Device::Cpu).unwrap();
    let x = load_input("mnist:test:3", &Device::Cpu).unwrap().tensor.unsqueeze(0).unwrap();
    let m = reg.build_method("integrated_gradients", &Params::parse_pairs(&["steps=16"]).unwrap()).unwrap();
    let e = m.attribute(model.as_ref(), &x, &Target::Predicted).unwrap();
    let c = e.facts.completeness.as_ref().expect("IG sets the completeness fact");
    assert_eq!(c.delta.len(), 1);
    assert_eq!(floats(&js["diagnostics"]["completeness_delta"]), c.delta);
    assert_eq!(floats(&js["diagnostics"]["f_input"]), c.f_input);
    assert_eq!(floats(&js["diagnostics"]["completeness_delta_relative"]), c.relative);
    std::fs::remove_dir_all(&dir).ok();
}

/// DeepLIFT's summation-to-delta and PDA's perturbation facts match their JSON.
#[test]
fn deeplift_and_pda_facts_match_their_diagnostics() {
    let reg = registry();
    let model = reg.load_model("mnist-cnn", &Device::Cpu).unwrap();
    let x = load_input("mnist:test:0", &Device::Cpu).unwrap().tensor.unsqueeze(0).unwrap();
    let e = reg.build_method("deeplift", &Params::new()).unwrap().attribute(model.as_ref(), &x, &Target::Predicted).unwrap();
    let s = e.facts.summation.as_ref().expect("DeepLIFT sets summation-to-delta");
    let err: Vec<f64> = s.error.iter().map(|v| *v as f64).collect();
    assert_eq!(floats(&e.diagnostics["summation_to_delta"]), err);
    assert!(s.max_relative_error < 1e-3, "{}", s.max_relative_error);
    let p = Params::parse_pairs(&["stride=7", "samples=2", "window=7"]).unwrap();
    let e = reg.build_method("pda", &p).unwrap().attribute(model.as_ref(), &x, &Target::Predicted).unwrap();
    let pert = e.facts.perturbation.as_ref().expect("PDA sets the perturbation fact");
    assert_eq!(e.diagnostics["windows"], serde_json::json!(pert.windows));
    assert_eq!(pert.samples, Some(2));
    let t = e.facts.timings.as_ref().expect("PDA times itself");
    assert_eq!(e.diagnostics["forward_passes"], serde_json::json!(t.forward_passes.unwrap()));
    assert_eq!(t.phases.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["sampling", "forward"]);
}

/// CLEAR's picture comes from the renderer its pack registered; the host's
/// commands name no pack.
#[test]
fn renderers_and_presets_come_from_the_packs() {
    let reg = registry();
    let r = present::renderers(&reg).into_iter().find(|r| r.name == "clear").expect("clear registers its renderer");
    assert_eq!((r.pack, r.suffix), ("lumen-clear", "rgb"));
    let p = present::gallery_preset(&reg, "clear").expect("clear registers its gallery preset");
    assert_eq!((p.pack, p.model), ("lumen-clear", Some("mnist-allcnn")));
    assert!(present::light_settings(&reg, "pda", |_| true).contains(&"stride=2".to_string()));
    // The commands that show explanations and evaluate them (training a generator is
    // another matter: it trains that pack's model).
    for name in ["cmd_explain.rs", "cmd_gallery.rs", "cmd_eval.rs", "cmd_list.rs"] {
        let text = std::fs::read_to_string(repo_root().join("cli/src").join(name)).unwrap();
        for pack in ["lumen_clear", "lumen_std_", "lumen_cdeepex"] {
            assert!(!text.contains(pack), "{name} names the pack {pack}");
        }
    }
    let eval_src = repo_root().join("eval/src");
    for f in std::fs::read_dir(&eval_src).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(!text.contains("lumen_clear") && !text.contains("clap"), "{} names a pack or clap", f.path().display());
    }
    // `lumen explain` writes the pack's picture and says what it is.
    let dir = tmpdir("present-clear");
    let s = ok(&lumen(&[
        "explain", "--model", "mnist-allcnn", "--input", "mnist:test:3", "--method", "clear", "--out",
        dir.to_str().unwrap(),
    ]));
    assert!(s.contains("_rgb.png (the CLEAR map with its class legend)"), "{s}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Every std method has a gallery column; CLEAR, which refuses mnist-cnn, is shown on
/// the model its pack names instead of as an n/a tile.
#[test]
fn gallery_shows_every_method_on_a_model_it_applies_to() {
    let reg = registry();
    for m in reg.method_names() {
        if reg.method(&m).unwrap().pack.starts_with("lumen-") && m != "contrastive" {
            assert!(present::gallery_preset(&reg, &m).is_some(), "{m} has no gallery preset");
        }
    }
    let dir = tmpdir("present-gallery");
    let s = ok(&lumen(&["gallery", "--methods", "saliency,clear", "--out", dir.to_str().unwrap()]));
    assert!(s.contains("0 not applicable"), "{s}");
    let js: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("gallery.json")).unwrap()).unwrap();
    let ms = js["methods"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert!(ms.iter().all(|m| m["ok"] == true), "{ms:?}");
    assert_eq!((ms[0]["model"].as_str(), ms[1]["model"].as_str()), (Some("mnist-cnn"), Some("mnist-allcnn")));
    let html = std::fs::read_to_string(dir.join("gallery.html")).unwrap();
    assert!(html.contains("is computed on <code>mnist-allcnn</code>"), "the page says where CLEAR comes from");
    std::fs::remove_dir_all(&dir).ok();
}

/// The README's gallery lists every method with a model and no refusal.
#[test]
fn shipped_gallery_has_no_na_column() {
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("docs/gallery/gallery.json")).unwrap()).unwrap();
    let ms = js["methods"].as_array().unwrap();
    assert!(ms.len() >= 13, "{} methods", ms.len());
    for m in ms {
        assert_eq!(m["ok"], true, "{m}");
        assert!(m["model"].is_string(), "{m}");
    }
    let clear = ms.iter().find(|m| m["name"] == "clear").expect("clear is in the gallery");
    assert_eq!(clear["model"], "mnist-allcnn");
}

/// `lumen list` says a metric's direction once, even when its summary already says it.
#[test]
fn list_says_the_metric_direction_once() {
    let s = ok(&lumen(&["list"]));
    assert!(!s.contains("(lower is better) (lower is better)") && !s.contains("(higher is better) (higher is better)"), "{s}");
    let metrics = &s[s.find("metrics:").expect("a metrics section")..];
    // The section ends at the next heading (composites follow it).
    let metrics: Vec<&str> = metrics.lines().skip(1).take_while(|l| l.is_empty() || l.starts_with(' ')).collect();
    assert!(!metrics.is_empty(), "{s}");
    for line in metrics.into_iter().filter(|l| l.starts_with("  ") && !l.starts_with("      ")) {
        assert_eq!(line.matches("is better").count(), 1, "{line}");
    }
}
