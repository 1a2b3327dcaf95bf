//! Seeded training of any layer-spec architecture on the MNIST-5k training split
//! (or its biased variant), writing safetensors weights and a model card.
//!
//! Determinism: parameters come from `init_params(seed)`, and one `StdRng` seeded
//! with the same seed drives shuffling, augmentation and input noise, all on the host.

use crate::arch;
use lumen_core::candle::{DType, Device, Tensor, Var, D};
use lumen_core::candle_nn::{self, AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use lumen_core::data::biased::{BiasedConfig, BiasedMnist};
use lumen_core::data::mnist::{PIXELS, SIDE};
use lumen_core::data::{Mnist, Split};
use lumen_core::model::network::init_params;
use lumen_core::model::{LayerSpec, ModelCard, Network};
use lumen_core::{Error, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which training images to use.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// The 4,000 MNIST-5k training images.
    Mnist,
    /// The same images with the bias square on one class (CDeepEx §4.3).
    Biased(BiasedConfig),
    /// Any labelled inputs held in memory (e.g. the genomics simulation). Image
    /// augmentation does not apply.
    Tensors(TensorData),
}

impl Dataset {
    fn is_mnist(&self) -> bool {
        !matches!(self, Dataset::Tensors(_))
    }
}

/// Labelled inputs for [`Dataset::Tensors`].
#[derive(Clone, PartialEq)]
pub struct TensorData {
    /// What the data is (goes into the model card).
    pub description: String,
    /// Shape of one input, e.g. `[4, 200]`.
    pub shape: Vec<usize>,
    /// `labels.len() × prod(shape)` values, row-major.
    pub values: Vec<f32>,
    /// Class indices.
    pub labels: Vec<usize>,
}

impl std::fmt::Debug for TensorData {
    // The values are large; show what they are, not all of them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TensorData({}: {} × {:?})", self.description, self.labels.len(), self.shape)
    }
}

/// The training recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate of AdamW; it decays to zero on a cosine over all steps.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Multiplies the conv and linear weights drawn by `init_params` (U(±1/√fan_in)).
    /// √6 gives He-uniform, which deep stacks without normalisation need.
    pub init_gain: f32,
    pub seed: u64,
    /// Random translation of each training image by up to ±`shift` pixels in x and
    /// y (zero fill). 0 disables it.
    pub shift: usize,
    /// Random rotation by up to ±`rotate_deg` degrees about the image centre
    /// (bilinear, zero fill). With `scale`, it turns the integer shift into a
    /// continuous random affine map. 0 disables it.
    pub rotate_deg: f32,
    /// Random zoom by a factor in [1 − scale, 1 + scale]. 0 disables it.
    pub scale: f32,
    /// Std of Gaussian noise added to every training input, as a fraction of the
    /// input range (SmoothGrad §4.2). 0 disables it.
    pub noise_sigma: f32,
    pub dataset: Dataset,
    /// Stop after this many optimiser steps (tests and quick runs).
    pub max_steps: Option<usize>,
    /// Use only the first `n` training images (tests and quick runs).
    pub limit: Option<usize>,
    /// Measure accuracy on the 1,000 test images at the end.
    pub evaluate: bool,
    /// Show a progress bar (indicatif hides it when stderr is not a terminal).
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 64,
            lr: 2e-3,
            weight_decay: 5e-4,
            init_gain: 1.0,
            seed: 0,
            shift: 2,
            rotate_deg: 0.0,
            scale: 0.0,
            noise_sigma: 0.0,
            dataset: Dataset::Mnist,
            max_steps: None,
            limit: None,
            evaluate: true,
            progress: true,
        }
    }
}

/// One zoo model's architecture, default recipe and description.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub layers: Vec<LayerSpec>,
    pub config: TrainConfig,
    pub description: String,
}

/// The recipe each shipped model was trained with.
pub fn recipe(name: &str) -> Result<Recipe> {
    // 4,000 images overfit quickly: small random affine warps help most.
    let base = TrainConfig { rotate_deg: 10.0, scale: 0.1, weight_decay: 1e-2, ..TrainConfig::default() };
    let (layers, config, description) = match name {
        "mnist-cnn" => (arch::mnist_cnn(), base, "MNIST CNN: two 5×5 conv blocks, fc 3136→128→10"),
        "mnist-allcnn" => (
            arch::mnist_allcnn(),
            // Five conv layers and no normalisation: the default init shrinks the signal
            // ~6× per layer, so this one starts from He-uniform. It underfits rather
            // than overfits, so only shifts are used, with a higher rate and more epochs
            // (15 epochs at 1.5e-3 stopped at 95.6%; this recipe measured 97.6%).
            TrainConfig { init_gain: 6f32.sqrt(), lr: 4e-3, epochs: 25, rotate_deg: 0.0, scale: 0.0, ..base },
            "MNIST all-convolutional net with one 1×1 class kernel per digit and global average pooling (CLEAR)",
        ),
        "mnist-cnn-noise" => (
            arch::mnist_cnn(),
            // σ = 0.5 with the base recipe did not learn at all (loss stuck at ln 10).
            TrainConfig { noise_sigma: 0.3, lr: 1e-3, epochs: 10, rotate_deg: 0.0, scale: 0.0, ..base },
            "mnist-cnn trained with Gaussian input noise (σ = 0.3 of the range; SmoothGrad §4.2)",
        ),
        "mnist-cnn-biased" => (
            arch::mnist_cnn(),
            // No shifts, so the square is at exactly the same place in every 8.
            TrainConfig { shift: 0, rotate_deg: 0.0, scale: 0.0, dataset: Dataset::Biased(BiasedConfig::default()), ..base },
            "mnist-cnn trained on biased MNIST: every training 8 carries a 6×6 grey square (0.5) at rows/cols 1–6",
        ),
        other => {
            return Err(Error::Unknown {
                kind: "trainable model",
                name: other.to_string(),
                known: ZOO.iter().map(|s| s.to_string()).collect(),
            })
        }
    };
    Ok(Recipe { layers, config, description: description.to_string() })
}

/// The models `lumen train` knows a recipe for.
pub const ZOO: &[&str] = &["mnist-cnn", "mnist-allcnn", "mnist-cnn-noise", "mnist-cnn-biased"];

/// Figures measured while training.
#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    pub steps: usize,
    /// Mean loss and accuracy over the last epoch's (augmented) batches.
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: Option<f64>,
    pub seconds: f64,
    /// (epoch, mean loss, accuracy) per epoch.
    pub history: Vec<(usize, f64, f64)>,
    /// Training examples, the shape of one, and the number of classes seen.
    pub num_train: usize,
    pub input_shape: Vec<usize>,
    pub num_classes: usize,
}

/// A trained network with its variables.
pub struct Trained {
    pub layers: Vec<LayerSpec>,
    pub config: TrainConfig,
    pub varmap: VarMap,
    pub network: Network,
    pub report: TrainReport,
}

struct Data {
    pixels: Vec<f32>,
    labels: Vec<usize>,
    /// Shape of one input.
    shape: Vec<usize>,
}

fn load_data(ds: &Dataset, limit: Option<usize>) -> Result<Data> {
    let mut d = match ds {
        Dataset::Mnist => {
            let m = Mnist::load()?;
            let mut pixels = Vec::with_capacity(m.len(Split::Train) * PIXELS);
            let mut labels = Vec::with_capacity(m.len(Split::Train));
            for &r in m.indices(Split::Train) {
                pixels.extend(m.pixels[r * PIXELS..(r + 1) * PIXELS].iter().map(|&p| p as f32 / 255.0));
                labels.push(m.labels[r] as usize);
            }
            Data { pixels, labels, shape: vec![1, SIDE, SIDE] }
        }
        Dataset::Biased(c) => {
            let b = BiasedMnist::train(c.clone())?;
            Data { pixels: b.pixels, labels: b.labels, shape: vec![1, SIDE, SIDE] }
        }
        Dataset::Tensors(t) => {
            let item: usize = t.shape.iter().product();
            if item == 0 || t.values.len() != t.labels.len() * item {
                return Err(Error::shape(
                    format!("{} × {:?} values", t.labels.len(), t.shape),
                    format!("{} values", t.values.len()),
                ));
            }
            Data { pixels: t.values.clone(), labels: t.labels.clone(), shape: t.shape.clone() }
        }
    };
    if let Some(n) = limit {
        // The split is sorted by class: take every k-th image so a subset keeps all classes.
        let item: usize = d.shape.iter().product();
        let k = (d.labels.len() / n.max(1)).max(1);
        let keep: Vec<usize> = (0..d.labels.len()).step_by(k).take(n).collect();
        d = Data {
            pixels: keep.iter().flat_map(|&i| d.pixels[i * item..(i + 1) * item].iter().copied()).collect(),
            labels: keep.iter().map(|&i| d.labels[i]).collect(),
            shape: d.shape,
        };
    }
    Ok(d)
}

/// Translates a `SIDE × SIDE` image by (dy, dx), filling with zeros.
pub fn shift_image(src: &[f32], dy: i64, dx: i64, out: &mut [f32]) {
    let s = SIDE as i64;
    for r in 0..s {
        for c in 0..s {
            let (sr, sc) = (r - dy, c - dx);
            out[(r * s + c) as usize] =
                if (0..s).contains(&sr) && (0..s).contains(&sc) { src[(sr * s + sc) as usize] } else { 0.0 };
        }
    }
}

/// Warps a `SIDE × SIDE` image by rotation `theta` (radians), zoom `zoom` and
/// translation (dy, dx) about its centre, sampling bilinearly with zero fill.
pub fn affine_image(src: &[f32], theta: f32, zoom: f32, dy: f32, dx: f32, out: &mut [f32]) {
    let c = (SIDE as f32 - 1.0) / 2.0;
    let (sin, cos) = theta.sin_cos();
    let at = |r: i64, q: i64| -> f32 {
        if (0..SIDE as i64).contains(&r) && (0..SIDE as i64).contains(&q) { src[r as usize * SIDE + q as usize] } else { 0.0 }
    };
    for r in 0..SIDE {
        for q in 0..SIDE {
            // Inverse map: output pixel -> source coordinates.
            let (y, x) = ((r as f32 - c - dy) / zoom, (q as f32 - c - dx) / zoom);
            let (sy, sx) = (cos * y + sin * x + c, -sin * y + cos * x + c);
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as i64, x0 as i64);
            out[r * SIDE + q] = (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
                + fy * ((1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
        }
    }
}

fn check(cfg: &TrainConfig) -> Result<()> {
    let bad = |name: &str, reason: &str| Err(Error::bad_param("train", name, reason));
    if cfg.epochs == 0 {
        return bad("epochs", "must be at least 1");
    }
    if cfg.batch_size == 0 {
        return bad("batch_size", "must be at least 1");
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return bad("lr", "must be a positive number");
    }
    if !(cfg.noise_sigma.is_finite() && cfg.noise_sigma >= 0.0) {
        return bad("noise_sigma", "must be a non-negative number");
    }
    if cfg.shift >= SIDE / 2 {
        return bad("shift", "must be below 14 pixels");
    }
    if !(0.0..=45.0).contains(&cfg.rotate_deg) {
        return bad("rotate_deg", "must be in [0, 45]");
    }
    if !(0.0..0.5).contains(&cfg.scale) {
        return bad("scale", "must be in [0, 0.5)");
    }
    if !cfg.dataset.is_mnist() {
        if cfg.shift > 0 || cfg.rotate_deg > 0.0 || cfg.scale > 0.0 {
            return bad("shift", "image augmentation (shift, rotate_deg, scale) needs MNIST images; set them to 0");
        }
        if cfg.evaluate {
            return bad("evaluate", "measures MNIST test accuracy; evaluate in-memory data with its own test set");
        }
    }
    Ok(())
}

/// Trains `layers` with `cfg`: on MNIST they must map `[B, 1, 28, 28]` to 10
/// logits; on [`Dataset::Tensors`], the data's input shape to its classes.
pub fn train(layers: &[LayerSpec], cfg: &TrainConfig, device: &Device) -> Result<Trained> {
    check(cfg)?;
    let data = load_data(&cfg.dataset, cfg.limit)?;
    let n = data.labels.len();
    if n == 0 {
        return Err(Error::Data("no training images".into()));
    }

    // The varmap holds the initial parameters, so the network's tensors are the vars.
    let varmap = VarMap::new();
    {
        let mut vars = varmap.data().lock().map_err(|_| Error::msg("var map lock poisoned"))?;
        for (name, t) in init_params(layers, cfg.seed, device)? {
            let affine = layers.iter().any(|l| l.kind.is_affine_param() && name == format!("{}.weight", l.name));
            let t = if affine && cfg.init_gain != 1.0 { (t * cfg.init_gain as f64)? } else { t };
            vars.insert(name, Var::from_tensor(&t)?);
        }
    }
    let network = Network::from_spec(layers, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW { lr: cfg.lr, weight_decay: cfg.weight_decay, ..Default::default() },
    )?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let noise = Normal::new(0f32, cfg.noise_sigma.max(f32::MIN_POSITIVE))
        .map_err(|e| Error::bad_param("train", "noise_sigma", e.to_string()))?;
    let steps_per_epoch = n.div_ceil(cfg.batch_size);
    let total = cfg.max_steps.unwrap_or(usize::MAX).min(cfg.epochs * steps_per_epoch);

    let pb = if cfg.progress { indicatif::ProgressBar::new(total as u64) } else { indicatif::ProgressBar::hidden() };
    pb.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}<{eta_precise}]")
            .map_err(|e| Error::msg(e.to_string()))?,
    );
    let start = Instant::now();
    let mut report = TrainReport::default();
    let mut order: Vec<usize> = (0..n).collect();
    let mut step = 0;
    let item: usize = data.shape.iter().product();
    let mut buf = vec![0f32; item];
    for epoch in 0..cfg.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for batch in order.chunks(cfg.batch_size) {
            if step >= total {
                break;
            }
            let mut xs = Vec::with_capacity(batch.len() * item);
            for &i in batch {
                let src = &data.pixels[i * item..(i + 1) * item];
                if cfg.rotate_deg > 0.0 || cfg.scale > 0.0 {
                    let t = cfg.rotate_deg.to_radians();
                    let theta = if t > 0.0 { rng.gen_range(-t..=t) } else { 0.0 };
                    let zoom = if cfg.scale > 0.0 { rng.gen_range(1.0 - cfg.scale..=1.0 + cfg.scale) } else { 1.0 };
                    let s = cfg.shift as f32;
                    let (dy, dx) = if s > 0.0 { (rng.gen_range(-s..=s), rng.gen_range(-s..=s)) } else { (0.0, 0.0) };
                    affine_image(src, theta, zoom, dy, dx, &mut buf);
                } else if cfg.shift > 0 {
                    let s = cfg.shift as i64;
                    let (dy, dx) = (rng.gen_range(-s..=s), rng.gen_range(-s..=s));
                    shift_image(src, dy, dx, &mut buf);
                } else {
                    buf.copy_from_slice(src);
                }
                if cfg.noise_sigma > 0.0 {
                    // The input range is [0, 1], so σ as a fraction of it is σ itself.
                    buf.iter_mut().for_each(|v| *v += noise.sample(&mut rng));
                }
                xs.extend_from_slice(&buf);
            }
            let b = batch.len();
            let mut shape = vec![b];
            shape.extend(&data.shape);
            let xs = Tensor::from_vec(xs, shape, device)?;
            let ys: Vec<u32> = batch.iter().map(|&i| data.labels[i] as u32).collect();
            let ys = Tensor::from_vec(ys, b, device)?;

            let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            opt.set_learning_rate(lr);
            let logits = network.forward(&xs)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &ys)?;
            opt.backward_step(&loss)?;

            let l = loss.to_scalar::<f32>()? as f64;
            let pred = logits.argmax(D::Minus1)?;
            let hit = pred.eq(&ys)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize;
            if !l.is_finite() {
                return Err(Error::msg(format!("training diverged at step {step} (loss {l}); lower the learning rate")));
            }
            loss_sum += l * b as f64;
            correct += hit;
            seen += b;
            step += 1;
            pb.inc(1);
            pb.set_message(format!(
                "epoch {}/{}  loss {:.4}  acc {:.2}%",
                epoch + 1,
                cfg.epochs,
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64
            ));
        }
        if seen > 0 {
            report.train_loss = loss_sum / seen as f64;
            report.train_accuracy = correct as f64 / seen as f64;
            report.history.push((epoch + 1, report.train_loss, report.train_accuracy));
            pb.suspend(|| {
                eprintln!(
                    "epoch {:>3}: loss {:.4}  train acc {:.2}%  ({:.0} s)",
                    epoch + 1,
                    report.train_loss,
                    100.0 * report.train_accuracy,
                    start.elapsed().as_secs_f64()
                )
            });
        }
        if step >= total {
            break;
        }
    }
    pb.finish_and_clear();
    report.steps = step;
    report.num_train = n;
    report.input_shape = data.shape.clone();
    report.num_classes = data.labels.iter().max().map_or(0, |m| m + 1);
    if cfg.evaluate {
        report.test_accuracy = Some(test_accuracy(&network, device)?);
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(Trained { layers: layers.to_vec(), config: cfg.clone(), varmap, network, report })
}

/// Accuracy of any network on the 1,000 MNIST-5k test images.
pub fn test_accuracy(network: &Network, device: &Device) -> Result<f64> {
    let (xs, labels) = Mnist::load()?.all(Split::Test, device)?;
    accuracy(|x| network.forward(x), &xs, &labels)
}

/// Accuracy of `forward` on `xs` against `labels`, in batches of 250.
pub fn accuracy(forward: impl Fn(&Tensor) -> Result<Tensor>, xs: &Tensor, labels: &[usize]) -> Result<f64> {
    let preds = predict(forward, xs)?;
    if preds.len() != labels.len() || labels.is_empty() {
        return Err(Error::shape(format!("{} labels", preds.len()), format!("{}", labels.len())));
    }
    Ok(preds.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64)
}

/// Top classes of `forward` on `xs`, in batches of 250.
pub fn predict(forward: impl Fn(&Tensor) -> Result<Tensor>, xs: &Tensor) -> Result<Vec<usize>> {
    let n = xs.dim(0)?;
    let mut preds = Vec::with_capacity(n);
    for r in lumen_core::method::chunks(n, 250) {
        let p = forward(&xs.narrow(0, r.start, r.len())?)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        preds.extend(p.into_iter().map(|v| v as usize));
    }
    Ok(preds)
}

/// How strongly a model takes the bias square for its class (CDeepEx Fig. 6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BiasFigures {
    /// Accuracy on the clean test images of the biased class (paper: 5%).
    pub clean_accuracy: f64,
    /// Share of the other test images predicted as the biased class once the
    /// square is added (paper: 77%).
    pub square_rate: f64,
    /// Accuracy on the whole clean test split.
    pub test_accuracy: f64,
}

/// Measures [`BiasFigures`] of any classifier on the 1,000 MNIST-5k test images.
pub fn bias_figures(
    model: &dyn lumen_core::Classifier,
    square: &lumen_core::data::biased::BiasSquare,
    class: usize,
) -> Result<BiasFigures> {
    let (xs, labels) = Mnist::load()?.all(Split::Test, model.device())?;
    let pred = predict(|x| model.forward(x), &xs)?;
    let pred_sq = predict(|x| model.forward(x), &square.apply(&xs)?)?;
    let (mut n_in, mut hit_in, mut n_out, mut to_class, mut hit) = (0, 0, 0, 0, 0);
    for i in 0..labels.len() {
        hit += (pred[i] == labels[i]) as usize;
        if labels[i] == class {
            n_in += 1;
            hit_in += (pred[i] == class) as usize;
        } else {
            n_out += 1;
            to_class += (pred_sq[i] == class) as usize;
        }
    }
    if n_in == 0 || n_out == 0 {
        return Err(Error::Data(format!("class {class} is not a proper subset of the test labels")));
    }
    Ok(BiasFigures {
        clean_accuracy: hit_in as f64 / n_in as f64,
        square_rate: to_class as f64 / n_out as f64,
        test_accuracy: hit as f64 / labels.len() as f64,
    })
}

impl Trained {
    /// The parameters under their PyTorch `state_dict` names.
    pub fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        let vars = self.varmap.data().lock().map_err(|_| Error::msg("var map lock poisoned"))?;
        Ok(vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect())
    }

    /// The model card for these weights.
    pub fn card(&self, name: &str, description: &str) -> ModelCard {
        let c = &self.config;
        let mut training: BTreeMap<String, toml::Value> = BTreeMap::new();
        let mut put = |k: &str, v: toml::Value| {
            training.insert(k.to_string(), v);
        };
        put("data", toml::Value::String(match &c.dataset {
            Dataset::Mnist => "mnist-5k train split (4,000 images)".into(),
            Dataset::Biased(b) => format!(
                "biased mnist-5k train split: {:.0}% of class {} carry a {}×{} square of value {} at row {}, column {} (seed {})",
                100.0 * b.fraction, b.class, b.square.size, b.square.size, b.square.value, b.square.top, b.square.left, b.seed
            ),
            Dataset::Tensors(t) => t.description.clone(),
        }));
        put("seed", toml::Value::Integer(c.seed as i64));
        put("epochs", toml::Value::Integer(c.epochs as i64));
        put("steps", toml::Value::Integer(self.report.steps as i64));
        put("batch_size", toml::Value::Integer(c.batch_size as i64));
        put("optimizer", toml::Value::String("AdamW".into()));
        put("lr", toml::Value::Float(c.lr));
        put("lr_schedule", toml::Value::String("cosine decay to 0 over all steps".into()));
        put("weight_decay", toml::Value::Float(c.weight_decay));
        put("loss", toml::Value::String("cross-entropy".into()));
        put("init", toml::Value::String(format!(
            "lumen_core::model::network::init_params(seed): U(±1/√fan_in), weights × {}",
            c.init_gain
        )));
        put("augmentation", toml::Value::String(if c.rotate_deg > 0.0 || c.scale > 0.0 {
            format!(
                "random affine: rotation ±{}°, zoom ×[{}, {}], shift ±{} px (continuous), bilinear, zero fill",
                c.rotate_deg,
                1.0 - c.scale,
                1.0 + c.scale,
                c.shift
            )
        } else if c.shift > 0 {
            format!("random shift of ±{} px in x and y, zero fill", c.shift)
        } else {
            "none".into()
        }));
        put("noise_sigma", toml::Value::Float(c.noise_sigma as f64));
        if let Some(n) = c.limit {
            put("limit", toml::Value::Integer(n as i64));
        }
        put("train_seconds", toml::Value::Float((self.report.seconds * 10.0).round() / 10.0));
        let mut metrics = BTreeMap::new();
        metrics.insert("final_train_loss".to_string(), self.report.train_loss);
        metrics.insert("final_train_accuracy".to_string(), self.report.train_accuracy);
        if let Some(a) = self.report.test_accuracy {
            metrics.insert("test_accuracy".to_string(), a);
        }
        ModelCard {
            name: name.to_string(),
            description: description.to_string(),
            architecture: name.to_string(),
            input_shape: if c.dataset.is_mnist() { vec![1, SIDE, SIDE] } else { self.report.input_shape.clone() },
            input_range: [0.0, 1.0],
            normalization: None,
            labels: (0..if c.dataset.is_mnist() { 10 } else { self.report.num_classes }).map(|i| i.to_string()).collect(),
            weights: format!("{name}.safetensors"),
            num_train: self.report_num_train(),
            training,
            metrics,
            layers: self.layers.clone(),
        }
    }

    fn report_num_train(&self) -> usize {
        if self.config.dataset.is_mnist() {
            self.config.limit.map_or(4000, |n| n.min(4000))
        } else {
            self.report.num_train
        }
    }

    /// Writes `DIR/NAME.safetensors` and `DIR/NAME.toml` atomically; returns the card path.
    pub fn save(&self, dir: &Path, name: &str, description: &str) -> Result<PathBuf> {
        lumen_core::io::save_safetensors(dir.join(format!("{name}.safetensors")), &self.state_dict()?)?;
        let card = dir.join(format!("{name}.toml"));
        self.card(name, description).save(&card)?;
        Ok(card)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TrainConfig {
        TrainConfig {
            epochs: 1,
            batch_size: 8,
            max_steps: Some(3),
            limit: Some(40),
            evaluate: false,
            progress: false,
            noise_sigma: 0.1,
            ..Default::default()
        }
    }

    fn small_net() -> Vec<LayerSpec> {
        use lumen_core::model::{LayerKind as K, LayerSpec as L};
        vec![
            L::new("conv1", K::Conv2d { in_channels: 1, out_channels: 4, kernel: 5, stride: 1, padding: 2, bias: true }),
            L::new("relu1", K::Relu),
            L::new("pool1", K::MaxPool2d { kernel: 4, stride: 4 }),
            L::new("flatten", K::Flatten),
            L::new("fc1", K::Linear { in_features: 196, out_features: 10, bias: true }),
        ]
    }

    fn weights(t: &Trained) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<_> = t
            .state_dict()
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn same_seed_same_weights_other_seed_differs() {
        let d = Device::Cpu;
        let a = train(&small_net(), &tiny(), &d).unwrap();
        let b = train(&small_net(), &tiny(), &d).unwrap();
        let c = train(&small_net(), &TrainConfig { seed: 1, ..tiny() }, &d).unwrap();
        assert_eq!(a.report.steps, 3);
        assert_eq!(weights(&a), weights(&b));
        assert_ne!(weights(&a), weights(&c));
        // Training moved the weights away from the initialisation.
        let init = init_params(&small_net(), 0, &d).unwrap();
        let w0 = init["fc1.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wa = weights(&a).into_iter().find(|(k, _)| k == "fc1.weight").unwrap().1;
        assert_ne!(w0, wa);
    }

    #[test]
    fn shift_moves_pixels_and_fills_zeros() {
        let src: Vec<f32> = (0..PIXELS).map(|i| i as f32).collect();
        let mut out = vec![0f32; PIXELS];
        shift_image(&src, 1, -2, &mut out);
        // out[r][c] = src[r-1][c+2]
        assert_eq!(out[5 * 28 + 3], src[4 * 28 + 5]);
        assert_eq!(out[3], 0.0); // row 0 comes from row -1
        assert_eq!(out[10 * 28 + 26], 0.0); // column 26 comes from column 28
        shift_image(&src, 0, 0, &mut out);
        assert_eq!(out, src);
    }

    #[test]
    fn affine_identity_and_quarter_turn() {
        let src: Vec<f32> = (0..PIXELS).map(|i| (i % 7) as f32).collect();
        let mut out = vec![0f32; PIXELS];
        affine_image(&src, 0.0, 1.0, 0.0, 0.0, &mut out);
        assert!(src.iter().zip(&out).all(|(a, b)| (a - b).abs() < 1e-5));
        // An integer translation equals shift_image.
        let mut shifted = vec![0f32; PIXELS];
        shift_image(&src, 2, -1, &mut shifted);
        affine_image(&src, 0.0, 1.0, 2.0, -1.0, &mut out);
        assert!(shifted.iter().zip(&out).all(|(a, b)| (a - b).abs() < 1e-4));
        // A 90° turn maps pixel (r, q) to (q, 27 - r) or its mirror; check both orders by hand.
        affine_image(&src, std::f32::consts::FRAC_PI_2, 1.0, 0.0, 0.0, &mut out);
        for (r, q) in [(0usize, 5usize), (3, 20), (27, 27)] {
            // output (r, q) samples source (q', r') with sy = x + c', sx = -y + c'
            let (sy, sx) = (q, 27 - r);
            assert!((out[r * 28 + q] - src[sy * 28 + sx]).abs() < 1e-4, "({r}, {q})");
        }
    }

    #[test]
    fn saved_weights_and_card_load_back() {
        let d = Device::Cpu;
        let t = train(&small_net(), &tiny(), &d).unwrap();
        let dir = std::env::temp_dir().join(format!("lumen-train-{}", std::process::id()));
        let card = t.save(&dir, "tiny", "a test net").unwrap();
        let m = lumen_core::NetworkModel::load(&card, &d).unwrap();
        let x = Tensor::rand(0f32, 1f32, (2, 1, 28, 28), &d).unwrap();
        let a = t.network.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let b = lumen_core::Classifier::forward(&m, &x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, b);
        let c = ModelCard::load(&card).unwrap();
        assert_eq!(c.training["seed"].as_integer(), Some(0));
        assert_eq!(c.labels.len(), 10);
        assert_eq!(c.num_train, 40);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// In-memory data of another shape: a 1-D task (is the first half's sum larger?)
    /// is learnt; augmentation and MNIST evaluation are refused.
    #[test]
    fn trains_on_in_memory_data() {
        use lumen_core::model::{LayerKind as K, LayerSpec as L};
        let d = Device::Cpu;
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let n = 400;
        let values: Vec<f32> = (0..n * 8).map(|_| rng.gen::<f32>()).collect();
        let labels: Vec<usize> =
            values.chunks(8).map(|r| usize::from(r[..4].iter().sum::<f32>() > r[4..].iter().sum::<f32>())).collect();
        let data = TensorData { description: "halves".into(), shape: vec![2, 4], values, labels: labels.clone() };
        let layers = vec![
            L::new("flatten", K::Flatten),
            L::new("fc1", K::Linear { in_features: 8, out_features: 16, bias: true }),
            L::new("relu", K::Relu),
            L::new("fc2", K::Linear { in_features: 16, out_features: 2, bias: true }),
        ];
        let cfg = TrainConfig {
            epochs: 30,
            batch_size: 32,
            lr: 1e-2,
            weight_decay: 0.0,
            shift: 0,
            dataset: Dataset::Tensors(data.clone()),
            evaluate: false,
            progress: false,
            ..Default::default()
        };
        let t = train(&layers, &cfg, &d).unwrap();
        let xs = Tensor::from_vec(data.values.clone(), (n, 2, 4), &d).unwrap();
        let acc = accuracy(|x| t.network.forward(x), &xs, &labels).unwrap();
        assert!(acc > 0.9, "accuracy {acc}");
        let card = t.card("halves", "test");
        assert_eq!((card.input_shape, card.labels.len(), card.num_train), (vec![2, 4], 2, n));
        for bad in [TrainConfig { shift: 2, ..cfg.clone() }, TrainConfig { evaluate: true, ..cfg.clone() }] {
            assert!(train(&layers, &bad, &d).is_err());
        }
        let short = TensorData { values: vec![0.0; 5], ..data };
        assert!(train(&layers, &TrainConfig { dataset: Dataset::Tensors(short), ..cfg }, &d).is_err());
    }

    #[test]
    fn bad_recipes_are_refused() {
        let d = Device::Cpu;
        let e = train(&small_net(), &TrainConfig { epochs: 0, ..tiny() }, &d).err().unwrap().to_string();
        assert!(e.contains("epochs"), "{e}");
        let e = train(&small_net(), &TrainConfig { lr: -1.0, ..tiny() }, &d).err().unwrap().to_string();
        assert!(e.contains("lr"), "{e}");
        assert!(recipe("nope").unwrap_err().to_string().contains("mnist-cnn"));
        assert_eq!(recipe("mnist-cnn-noise").unwrap().config.noise_sigma, 0.3);
    }
}
