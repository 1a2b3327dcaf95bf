//! The model zoo: shipped accuracies, the biased model's shortcut, seeded training
//! and clear errors for broken weights.

use crate::util::{lumen, tmpdir};
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::data::biased::BiasSquare;
use lumen_core::data::{Mnist, Split};
use lumen_core::model::{load_safetensors, ModelCard};
use lumen_core::{Classifier, NetworkModel, Registry};
use lumen_models::train::{accuracy, bias_figures};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

fn registry_model(name: &str) -> Arc<dyn Classifier> {
    let _ = lumen_models::load_shipped; // keeps the zoo's registrations linked
    Registry::from_inventory().unwrap().load_model(name, &Device::Cpu).unwrap()
}

fn test_set() -> (Tensor, Vec<usize>) {
    Mnist::load().unwrap().all(Split::Test, &Device::Cpu).unwrap()
}

#[test]
fn shipped_classifiers_reach_their_accuracy_on_held_out_digits() {
    let (xs, labels) = test_set();
    for (name, bar) in [("mnist-cnn", 0.97), ("mnist-allcnn", 0.97)] {
        let m = registry_model(name);
        let acc = accuracy(|x| m.forward(x), &xs, &labels).unwrap();
        assert!(acc >= bar, "{name}: {acc}");
        // The card states what we measure.
        let card = m.info().card.clone().unwrap();
        let stated = card.metrics["test_accuracy"];
        assert!((stated - acc).abs() < 0.0015, "{name}: card says {stated}, measured {acc}");
        assert_eq!(card.num_train, 4000);
        assert_eq!(card.layers, lumen_models::arch::by_name(name).unwrap());
    }
}

#[test]
fn noise_trained_model_is_shipped_and_accurate() {
    let (xs, labels) = test_set();
    let m = registry_model("mnist-cnn-noise");
    let card = m.info().card.clone().unwrap();
    assert!(card.training["noise_sigma"].as_float().unwrap() > 0.0);
    let acc = accuracy(|x| m.forward(x), &xs, &labels).unwrap();
    assert!(acc >= 0.95, "{acc}");
}

#[test]
fn biased_model_relies_on_the_square() {
    let sq = BiasSquare::default();
    let b = bias_figures(registry_model("mnist-cnn-biased").as_ref(), &sq, 8).unwrap();
    let n = bias_figures(registry_model("mnist-cnn").as_ref(), &sq, 8).unwrap();
    eprintln!("biased: {b:?}\nnormal: {n:?}");
    assert!(n.clean_accuracy > 0.95 && n.square_rate < 0.05, "the normal model ignores the corner: {n:?}");
    assert!(b.clean_accuracy < n.clean_accuracy - 0.3, "clean-8 accuracy {b:?} vs {n:?}");
    assert!(b.square_rate > 0.5, "square → 8 rate {b:?}");
}

fn load_weights(dir: &Path, name: &str) -> Vec<(String, Vec<f32>)> {
    let m = load_safetensors(&dir.join(format!("{name}.safetensors")), &Device::Cpu).unwrap();
    let mut v: Vec<_> =
        m.into_iter().map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn train_command_is_deterministic_for_a_seed() {
    let dir = tmpdir("train-det");
    let d = dir.to_str().unwrap();
    let run = |name: &str, seed: &str| {
        let out = lumen(&[
            "train", "--model", "mnist-cnn", "--max-steps", "2", "--limit", "32", "--batch-size", "16",
            "--seed", seed, "--name", name, "--out", d,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run("a", "5");
    run("b", "5");
    run("c", "6");
    let (a, b, c) = (load_weights(&dir, "a"), load_weights(&dir, "b"), load_weights(&dir, "c"));
    assert_eq!(a.len(), 8);
    assert!(a == b, "same seed, different weights");
    assert!(a != c, "different seeds, same weights");
    let card = ModelCard::load(dir.join("a.toml")).unwrap();
    assert_eq!(card.training["seed"].as_integer(), Some(5));
    assert_eq!(card.training["steps"].as_integer(), Some(2));
    // Unknown models are a one-line error.
    let out = lumen(&["train", "--model", "nope"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("nope") && e.contains("mnist-cnn") && !e.contains("panicked"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A copy of the shipped mnist-cnn card with weights the test controls.
fn broken_copy(dir: &Path, weights: &[u8]) -> std::path::PathBuf {
    let card = ModelCard::load(lumen_models::card_path("mnist-cnn").unwrap()).unwrap();
    std::fs::write(dir.join("mnist-cnn.safetensors"), weights).unwrap();
    let p = dir.join("mnist-cnn.toml");
    card.save(&p).unwrap();
    p
}

#[test]
fn truncated_corrupt_and_misshapen_weights_give_clear_errors() {
    let dir = tmpdir("bad-weights");
    let good = std::fs::read(lumen_models::card_path("mnist-cnn").unwrap().with_extension("safetensors")).unwrap();
    let d = Device::Cpu;

    let card = broken_copy(&dir, &good[..good.len() / 2]);
    let e = NetworkModel::load(&card, &d).unwrap_err().to_string();
    assert!(e.contains("mnist-cnn.safetensors") && e.contains("not a valid safetensors"), "{e}");

    broken_copy(&dir, b"this is not a tensor file at all");
    let e = NetworkModel::load(&card, &d).unwrap_err().to_string();
    assert!(e.contains("not a valid safetensors"), "{e}");

    let mut tensors: HashMap<String, Tensor> =
        load_safetensors(&lumen_models::card_path("mnist-cnn").unwrap().with_extension("safetensors"), &d).unwrap();
    tensors.insert("fc2.weight".into(), Tensor::zeros((10, 64), DType::F32, &d).unwrap());
    lumen_core::io::save_safetensors(dir.join("mnist-cnn.safetensors"), &tensors).unwrap();
    let e = NetworkModel::load(&card, &d).unwrap_err().to_string();
    assert!(e.contains("fc2.weight") && e.contains("mnist-cnn.safetensors"), "{e}");

    std::fs::remove_dir_all(&dir).ok();
}
