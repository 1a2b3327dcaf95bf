//! DeepLIFT (Shrikumar et al. 2016, 2017): contributions `C = m · (x − x_ref)` from
//! the multipliers of this pack's DeepLIFT rule presets ([`crate::rules::deeplift`]). The input and its reference run
//! through the network in one batch. Every explanation reports its
//! summation-to-delta error `Σ C − (f(x) − f(ref))` per example.

use lumen_core::candle::{DType, Tensor, Var, D};
use lumen_core::data::{Mnist, Split};
use lumen_core::method::{chunks, prepare, repeat_each};
use lumen_core::model::{ForwardOptions, LayerKind, Network};
use crate::rules::deeplift::{self as rules, DeepLiftSettings, OneHotNormalize};
use lumen_core::rules::{Matcher, RuleCtx, RuleMap};
use lumen_core::config::Choice;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// The rule for nonlinearities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
pub enum DeepLiftRule {
    Rescale,
    #[choice(name = "revealcancel")]
    RevealCancel,
}

/// Which reference each input is compared with.
#[derive(Debug, Clone)]
pub enum Reference {
    Zero,
    Constant(f64),
    /// Gaussian blur of the input with this σ in pixels (positions).
    Blur(f64),
    /// The mean of a data set: of `reference_tensor`'s rows, or of the `pool`.
    Mean,
    /// A user tensor: one reference `[...input]` for all inputs, or one per input.
    Tensor,
    /// Average the contributions over `n` references drawn (seeded) from
    /// `reference_tensor`'s rows or the `pool` (DeepLIFT-SHAP).
    Distribution(usize),
    /// Average over every row of `reference_tensor` or the `pool` (Captum's
    /// `DeepLiftShap`): exact for the background, and deterministic.
    Every,
}

/// Softmax outputs: explain the pre-softmax logits, mean-normalised across classes
/// (2016 paper, eq. 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
pub enum SoftmaxMode {
    /// Normalise when the network ends in a softmax layer.
    Auto,
    On,
    Off,
}

/// Where `reference=mean|distribution` draws from without `reference_tensor`: named,
/// never guessed from the model's input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
pub enum Pool {
    /// No pool: `reference_tensor` must be given.
    None,
    /// The bundled MNIST-5k training images (for `[1, 28, 28]` models).
    #[choice(name = "mnist-train")]
    MnistTrain,
}

/// The rule and the passes, shared by [`DeepLiftConfig`] and [`DeepLiftShapConfig`].
#[derive(Debug, Clone, Config)]
pub struct DeepLiftRules {
    /// rule for nonlinearities
    pub rule: DeepLiftRule,
    /// mean-normalise logits (eq. 21)
    pub softmax: SoftmaxMode,
    /// §2.6 first-layer normalisation for one-hot inputs
    pub onehot: bool,
    /// |δx| below this falls back to the gradient
    pub eps: f64,
    /// rows (inputs × references) per pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for DeepLiftRules {
    fn default() -> Self {
        DeepLiftRules { rule: DeepLiftRule::Rescale, softmax: SoftmaxMode::Auto, onehot: false, eps: rules::DEFAULT_EPS, batch_size: 32 }
    }
}

/// Configuration of [`DeepLift`].
#[derive(Debug, Clone, Config)]
pub struct DeepLiftConfig {
    /// reference input
    #[param(with = reference)]
    pub reference: Reference,
    /// user reference(s) or the pool for mean/distribution
    pub reference_tensor: Option<Tensor>,
    /// pool for mean/distribution without reference_tensor
    #[param(recorded_if = DeepLiftConfig::reads_pool)]
    pub pool: Pool,
    /// seed for drawing references
    pub seed: u64,
    #[param(flatten)]
    pub rules: DeepLiftRules,
}

impl Default for DeepLiftConfig {
    fn default() -> Self {
        DeepLiftConfig { reference: Reference::Zero, reference_tensor: None, pool: Pool::None, seed: 0, rules: DeepLiftRules::default() }
    }
}

impl DeepLiftConfig {
    /// `pool` is read (and recorded) only by mean/distribution without a tensor, so
    /// other configs keep their run keys.
    fn reads_pool(&self) -> bool {
        matches!(self.reference, Reference::Mean | Reference::Distribution(_) | Reference::Every) && self.reference_tensor.is_none()
    }
}

/// `reference=WORD` with the one number each kind reads: `value` (constant),
/// `sigma` (blur) or `n_references` (distribution).
mod reference {
    use super::Reference;
    use lumen_core::config::{leak, Builder};
    use lumen_core::params::{Args, ParamKind, ParamSpec};
    use lumen_core::{Error, Result};
    use std::collections::BTreeMap;

    const WORDS: &[&str] = &["zero", "constant", "blur", "mean", "tensor", "distribution", "every"];
    // The numbers' defaults when the default reference does not fix them.
    const VALUE: f64 = 0.0;
    const SIGMA: f64 = 3.0;
    const N_REFERENCES: usize = 16;

    fn parts(r: &Reference) -> (&'static str, Option<(&'static str, String)>) {
        match r {
            Reference::Zero => ("zero", None),
            Reference::Constant(v) => ("constant", Some(("value", v.to_string()))),
            Reference::Blur(s) => ("blur", Some(("sigma", s.to_string()))),
            Reference::Mean => ("mean", None),
            Reference::Tensor => ("tensor", None),
            Reference::Distribution(n) => ("distribution", Some(("n_references", n.to_string()))),
            Reference::Every => ("every", None),
        }
    }

    pub fn specs(name: &'static str, doc: &'static str, d: &Reference) -> Vec<ParamSpec> {
        let (word, _) = parts(d);
        let value = match d { Reference::Constant(v) => *v, _ => VALUE };
        let sigma = match d { Reference::Blur(s) => *s, _ => SIGMA };
        let n = match d { Reference::Distribution(n) => *n, _ => N_REFERENCES };
        vec![
            ParamSpec::new(name, ParamKind::Choice(WORDS), word, doc),
            ParamSpec::new("value", ParamKind::Float, leak(Some(value.to_string())), "value of the constant reference"),
            ParamSpec::new("sigma", ParamKind::Float, leak(Some(sigma.to_string())), "σ (pixels) of the blurred reference"),
            ParamSpec::new("n_references", ParamKind::Int, leak(Some(n.to_string())), "references drawn for reference=distribution")
                .max(10_000),
        ]
    }

    pub fn read(a: &Args, name: &'static str, _: &dyn Builder) -> Result<Reference> {
        Ok(match a.string(name)?.as_str() {
            "constant" => Reference::Constant(a.f64("value")?),
            "blur" => match a.f64("sigma")? {
                s if s > 0.0 => Reference::Blur(s),
                _ => return Err(Error::bad_param(a.method(), "sigma", "must be > 0")),
            },
            "mean" => Reference::Mean,
            "tensor" => Reference::Tensor,
            "distribution" => Reference::Distribution(a.positive("n_references")?),
            "every" => Reference::Every,
            "zero" => Reference::Zero,
            other => return Err(Error::bad_param(a.method(), name, format!("'{other}' is not one of {}", WORDS.join(", ")))),
        })
    }

    pub fn write(r: &Reference, name: &str, out: &mut BTreeMap<String, String>) {
        let (word, extra) = parts(r);
        out.insert(name.to_string(), word.to_string());
        if let Some((k, v)) = extra {
            out.insert(k.to_string(), v);
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DeepLift {
    pub config: DeepLiftConfig,
}

impl DeepLift {
    /// Library use: the config is taken as given (`Method::new` checks it).
    pub fn new(config: DeepLiftConfig) -> Self {
        DeepLift { config }
    }

    fn settings(&self) -> DeepLiftSettings {
        DeepLiftSettings { eps: self.config.rules.eps }
    }

    fn composite(&self) -> RuleMap {
        let m = match self.config.rules.rule {
            DeepLiftRule::Rescale => rules::rescale_composite(&self.settings()),
            DeepLiftRule::RevealCancel => rules::revealcancel_composite(&self.settings()),
        };
        if self.config.rules.onehot {
            m.prepend(Matcher::FirstParam, Arc::new(OneHotNormalize))
        } else {
            m
        }
    }

    /// References for a chunk `xs` `[b, ...]`: `[b·r, ...]`, grouped by input, and `r`.
    fn references(&self, xs: &Tensor, pool: &Option<Tensor>, rng: &mut StdRng) -> Result<(Tensor, usize)> {
        let b = xs.dim(0)?;
        let item: Vec<usize> = xs.dims()[1..].to_vec();
        let per_item = |t: &Tensor| -> Result<Tensor> {
            let mut shape = vec![b];
            shape.extend(&item);
            Ok(t.unsqueeze(0)?.broadcast_as(shape)?.contiguous()?)
        };
        Ok(match &self.config.reference {
            Reference::Zero => (xs.zeros_like()?, 1),
            Reference::Constant(v) => ((xs.zeros_like()? + *v)?, 1),
            Reference::Blur(sigma) => (gaussian_blur(xs, *sigma)?, 1),
            Reference::Mean => {
                let pool = pool.as_ref().ok_or_else(|| no_pool("mean", &item))?;
                (per_item(&pool.mean(0)?)?, 1)
            }
            Reference::Tensor => {
                let t = self.config.reference_tensor.as_ref().ok_or_else(|| {
                    Error::bad_param("deeplift", "reference_tensor", "is required with reference=tensor")
                })?;
                let t = t.to_device(xs.device())?.to_dtype(xs.dtype())?;
                if t.dims() == item.as_slice() {
                    (per_item(&t)?, 1)
                } else if t.dims() == xs.dims() {
                    (t, 1)
                } else {
                    return Err(Error::bad_param(
                        "deeplift",
                        "reference_tensor",
                        format!("has shape {:?}; expected {:?} or one per input {:?}", t.dims(), item, xs.dims()),
                    ));
                }
            }
            Reference::Distribution(r) => {
                let pool = pool.as_ref().ok_or_else(|| no_pool("distribution", &item))?;
                let k = pool.dim(0)?;
                let idx: Vec<u32> = (0..b * r).map(|_| rng.gen_range(0..k) as u32).collect();
                let idx = Tensor::from_vec(idx, b * r, pool.device())?;
                (pool.index_select(&idx, 0)?.to_device(xs.device())?, *r)
            }
            Reference::Every => {
                // `pool` is the block of the background this pass covers.
                let pool = pool.as_ref().ok_or_else(|| no_pool("every", &item))?;
                let k = pool.dim(0)?;
                let mut shape = vec![b, k];
                shape.extend(&item);
                let rows = pool.to_device(xs.device())?.unsqueeze(0)?.broadcast_as(shape)?.contiguous()?;
                let mut flat = vec![b * k];
                flat.extend(&item);
                (rows.reshape(flat)?, k)
            }
        })
    }

    /// The pool of examples that `mean` and `distribution` draw from.
    fn pool(&self, model: &dyn Classifier) -> Result<Option<Tensor>> {
        if !matches!(self.config.reference, Reference::Mean | Reference::Distribution(_) | Reference::Every) {
            return Ok(None);
        }
        let dev = model.device();
        if let Some(t) = &self.config.reference_tensor {
            let t = t.to_device(dev)?.to_dtype(DType::F32)?;
            if t.rank() != model.info().input_shape.len() + 1 || t.dims()[1..] != model.info().input_shape[..] {
                return Err(Error::bad_param(
                    "deeplift",
                    "reference_tensor",
                    format!("a pool of references must be [N, {:?}], got {:?}", model.info().input_shape, t.dims()),
                ));
            }
            return Ok(Some(t));
        }
        match self.config.pool {
            Pool::MnistTrain => {
                let shape = &model.info().input_shape;
                if shape[..] != [1, 28, 28] {
                    return Err(Error::bad_param(
                        "deeplift",
                        "pool",
                        format!("mnist-train holds [1, 28, 28] images; model '{}' takes {shape:?}", model.info().name),
                    ));
                }
                Ok(Some(Mnist::load()?.all(Split::Train, dev)?.0))
            }
            Pool::None => Ok(None),
        }
    }

    /// Explains one chunk: (contributions `[b, ...]`, Σ C `[b]`, δ `[b]`).
    fn chunk(
        &self,
        model: &dyn Classifier,
        xs: &Tensor,
        target: &Target,
        pool: &Option<Tensor>,
        rng: &mut StdRng,
        normalise: bool,
        stop_after: &Option<String>,
    ) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
        let b = xs.dim(0)?;
        let (refs, r) = self.references(xs, pool, rng)?;
        let xr = if r == 1 { xs.clone() } else { repeat_each(xs, r)? };
        let n = b * r;
        let var = Var::from_tensor(&xr.detach())?;
        let batch = Tensor::cat(&[var.as_tensor(), &refs.detach()], 0)?;
        let t1 = target.repeat_each(r);
        let both = match &t1 {
            Target::Classes(v) => Target::Classes(v.iter().chain(v).copied().collect()),
            Target::Contrast { a, b } => {
                Target::Contrast { a: a.iter().chain(a).copied().collect(), b: b.iter().chain(b).copied().collect() }
            }
            other => other.clone(),
        };
        let composite = self.composite();
        let ctx = RuleCtx::with_reference_split(n);
        let opts = ForwardOptions { composite: Some(&composite), stop_after: stop_after.clone(), ctx, ..Default::default() };
        let (obj, m) = match native(model, &batch, &both, &opts, normalise, n)? {
            Some(v) => v,
            None => {
                let obj = objective(model, &batch, &both, opts, normalise)?;
                let grads = obj.narrow(0, 0, n)?.sum_all()?.backward()?;
                (obj, lumen_core::method::grad_or_zeros(&grads, var.as_tensor())?)
            }
        };
        let (oi, or) = (obj.narrow(0, 0, n)?, obj.narrow(0, n, n)?);
        let c = (m * (&xr - &refs)?)?;
        let mut shape = vec![b, r];
        shape.extend(&xs.dims()[1..]);
        let c = c.reshape(shape)?.mean(1)?;
        let sum_c = c.flatten_from(1)?.sum(1)?.to_vec1::<f32>()?;
        let delta = (oi.detach() - or.detach())?.reshape((b, r))?.mean(1)?.to_vec1::<f32>()?;
        Ok((c, sum_c, delta))
    }
}

fn no_pool(kind: &str, shape: &[usize]) -> Error {
    Error::bad_param(
        "deeplift",
        "reference_tensor",
        format!("reference={kind} needs reference_tensor=PATH, a pool of examples [N, {shape:?}] (or pool=mnist-train for MNIST models)"),
    )
}

/// The objective per row of the `2n` batch; logits mean-normalised across classes
/// when `normalise` (so a change that moves every class equally contributes zero).
fn objective(model: &dyn Classifier, xs: &Tensor, target: &Target, opts: ForwardOptions, normalise: bool) -> Result<Tensor> {
    match target {
        Target::Classes(_) | Target::Contrast { .. } => class_objective(&model.forward_with(xs, &opts)?.output, target, normalise),
        other => Ok(lumen_core::target::objective(model, xs, other, opts)?.0),
    }
}

/// [`objective`] of a class target from the logits.
fn class_objective(out: &Tensor, target: &Target, normalise: bool) -> Result<Tensor> {
    if out.rank() != 2 {
        return Err(Error::BadTarget(format!("a class target needs [B, K] outputs, got {:?}", out.dims())));
    }
    let out = if normalise { out.broadcast_sub(&out.mean_keepdim(D::Minus1)?)? } else { out.clone() };
    lumen_core::target::class_objective(&out, target)
}

/// The objective of every row and the multipliers of the `n` input rows through the
/// model's native reverse pass ([`Classifier::input_gradient`]), or `None` where it
/// has none (the caller then runs candle's autograd). Under the reference split only
/// the inputs' rows carry a gradient, so the seed has `n` rows.
fn native(
    model: &dyn Classifier,
    batch: &Tensor,
    target: &Target,
    opts: &ForwardOptions,
    normalise: bool,
    n: usize,
) -> Result<Option<(Tensor, Tensor)>> {
    let k = model.info().num_classes();
    let Some(seed) = lumen_core::target::class_seed(target, 2 * n, n, k, normalise, batch)? else { return Ok(None) };
    let Some(r) = model.input_gradient(&batch.detach(), &seed, opts)? else { return Ok(None) };
    Ok(Some((class_objective(&r.output, target, normalise)?, r.grad)))
}

/// The blurred reference: core's Gaussian blur (the one IG's blur baseline uses),
/// for `[B, C, L]` or `[B, C, H, W]` inputs.
pub fn gaussian_blur(xs: &Tensor, sigma: f64) -> Result<Tensor> {
    let dims = xs.dims();
    if dims.len() < 3 {
        return Err(Error::shape("[B, C, L] or [B, C, H, W] for a blurred reference", format!("{dims:?}")));
    }
    lumen_core::method::gaussian_blur(xs, sigma)
}

/// When the network ends in a softmax: the layer that feeds it.
fn before_softmax(net: &Network) -> Option<String> {
    let nodes = net.nodes();
    let last = nodes.last()?;
    if last.kind != LayerKind::Softmax {
        return None;
    }
    let src = *last.inputs.first()?;
    if src == 0 {
        return None;
    }
    Some(nodes[src - 1].name.clone())
}

impl Method for DeepLift {
    const NAME: &'static str = "deeplift";
    const SUMMARY: &'static str = "DeepLIFT: contributions m·(x − ref) with Rescale or RevealCancel multipliers";
    type Config = DeepLiftConfig;
    const PROPS: MethodProps =
        MethodProps { multiplies_input: true, completeness: true, needs_rules: true, stochastic: false, wrapper: false };
    fn props_of(c: &DeepLiftConfig) -> MethodProps {
        MethodProps { stochastic: matches!(c.reference, Reference::Distribution(_)), ..Self::PROPS }
    }
    fn new(config: DeepLiftConfig) -> Result<Self> {
        if matches!(config.reference, Reference::Tensor) && config.reference_tensor.is_none() {
            return Err(Error::bad_param("deeplift", "reference_tensor", "is required with reference=tensor"));
        }
        if !(config.rules.eps >= 0.0) {
            return Err(Error::bad_param("deeplift", "eps", "must be ≥ 0"));
        }
        Ok(DeepLift { config })
    }
    fn config(&self) -> &DeepLiftConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let net = model.network().ok_or_else(|| {
            Error::unsupported("deeplift", format!("model '{}' is not built from the explainable layer vocabulary", model.info().name))
        })?;
        let target = prepare(model, inputs, target)?;
        let softmax_in = before_softmax(net);
        let normalise = match self.config.rules.softmax {
            SoftmaxMode::Auto => softmax_in.is_some(),
            SoftmaxMode::On => true,
            SoftmaxMode::Off => false,
        };
        let stop_after = if self.config.rules.softmax == SoftmaxMode::Off { None } else { softmax_in };
        let pool = self.pool(model)?;
        let mut rng = StdRng::seed_from_u64(self.config.seed);
        let (mut parts, mut sums, mut deltas) = (vec![], vec![], vec![]);
        // Each input expands to `refs` rows; chunks hold at most `batch_size` rows (one
        // input when it has more references), so memory does not grow with
        // n_references. References come from one stream in order, so chunking does
        // not change them.
        let bs = self.config.rules.batch_size;
        // `every` walks the background in blocks of at most `batch_size` rows and
        // weighs each block by its share, so memory stays bounded by the batch size.
        let blocks: Vec<(Option<Tensor>, usize)> = match (&self.config.reference, &pool) {
            (Reference::Every, Some(p)) => chunks(p.dim(0)?, bs).map(|r| Ok((Some(p.narrow(0, r.start, r.len())?), r.len()))).collect::<Result<_>>()?,
            _ => vec![(pool.clone(), 1)],
        };
        if blocks.is_empty() || pool.as_ref().is_some_and(|p| p.dim(0).ok() == Some(0)) {
            return Err(Error::bad_param(Self::NAME, "reference_tensor", "the pool of references is empty"));
        }
        let total: usize = blocks.iter().map(|(_, n)| n).sum();
        let refs = match self.config.reference {
            Reference::Distribution(n) => n.max(1),
            Reference::Every => blocks[0].1,
            _ => 1,
        };
        for r in chunks(inputs.dim(0)?, (bs / refs).max(1)) {
            let x = inputs.narrow(0, r.start, r.len())?;
            let (mut c_acc, mut s_acc, mut d_acc) = (None::<Tensor>, vec![0f32; r.len()], vec![0f32; r.len()]);
            for (block, n) in &blocks {
                let w = *n as f32 / total as f32;
                let (c, s, d) = self.chunk(model, &x, &target.select(r.clone()), block, &mut rng, normalise, &stop_after)?;
                let c = if blocks.len() == 1 { c } else { c.affine(w as f64, 0.0)? };
                c_acc = Some(match c_acc { None => c, Some(a) => (a + c)? });
                s_acc.iter_mut().zip(s).for_each(|(a, v)| *a += w * v);
                d_acc.iter_mut().zip(d).for_each(|(a, v)| *a += w * v);
            }
            parts.push(c_acc.ok_or_else(|| Error::bad_param(Self::NAME, "reference_tensor", "the pool of references is empty"))?);
            sums.extend(s_acc);
            deltas.extend(d_acc);
        }
        let errors: Vec<f32> = sums.iter().zip(&deltas).map(|(s, d)| s - d).collect();
        let max_rel = errors.iter().zip(&deltas).map(|(e, d)| e.abs() / d.abs().max(1e-6)).fold(0f32, f32::max);
        let mut e = Explanation::new("deeplift", Tensor::cat(&parts, 0)?, target).with_params(self.params());
        e.seed = matches!(self.config.reference, Reference::Distribution(_)).then_some(self.config.seed);
        Ok(e.with_summation(lumen_core::explanation::SummationToDelta {
            delta: deltas,
            sum: sums,
            error: errors,
            max_relative_error: max_rel,
        }))
    }
}

lumen_core::submit_method!(DeepLift);

/// Configuration of [`DeepLiftShap`]: DeepLIFT against a distribution of references.
#[derive(Debug, Clone, Config)]
pub struct DeepLiftShapConfig {
    /// the reference distribution: a [K, ...] tensor of references
    pub reference_tensor: Option<Tensor>,
    /// where references are drawn from without reference_tensor
    #[param(recorded_if = DeepLiftShapConfig::reads_pool)]
    pub pool: Pool,
    /// references drawn (seeded, with replacement) per input; 0 = every row of the background
    #[param(max = 10_000)]
    pub n_references: usize,
    /// seed for drawing references
    pub seed: u64,
    #[param(flatten)]
    pub rules: DeepLiftRules,
}

impl Default for DeepLiftShapConfig {
    fn default() -> Self {
        // The bundled MNIST training images: a model of another shape is told to pass
        // reference_tensor (the pool is named, never guessed).
        DeepLiftShapConfig { reference_tensor: None, pool: Pool::MnistTrain, n_references: 16, seed: 0, rules: DeepLiftRules::default() }
    }
}

impl DeepLiftShapConfig {
    fn reads_pool(&self) -> bool {
        self.reference_tensor.is_none()
    }
}

/// DeepLIFT-SHAP (Lundberg & Lee 2017, §4.2; Captum's `DeepLiftShap`): DeepLIFT
/// contributions averaged over references drawn from a background distribution, an
/// approximation of SHAP values. It is `deeplift` with `reference=distribution`
/// (`n_references` seeded draws) or, with `n_references=0`, `reference=every` (every
/// row of the background, as Captum does), registered under its own name with the
/// background as the default; the summation holds against `f(x) − mean f(ref)`.
///
/// ```text
/// lumen explain --method deeplift_shap --param n_references=32
/// lumen explain --method deeplift_shap --param reference_tensor=background.safetensors
/// ```
#[derive(Debug, Clone)]
pub struct DeepLiftShap {
    pub config: DeepLiftShapConfig,
    deeplift: DeepLift,
}

impl Method for DeepLiftShap {
    const NAME: &'static str = "deeplift_shap";
    const SUMMARY: &'static str = "DeepLIFT-SHAP: DeepLIFT averaged over references drawn from a background distribution";
    type Config = DeepLiftShapConfig;
    const PROPS: MethodProps = MethodProps { stochastic: true, ..DeepLift::PROPS };
    fn props_of(c: &DeepLiftShapConfig) -> MethodProps {
        MethodProps { stochastic: c.n_references > 0, ..Self::PROPS }
    }
    fn new(config: DeepLiftShapConfig) -> Result<Self> {
        let c = config.clone();
        let deeplift = <DeepLift as Method>::new(DeepLiftConfig {
            reference: match c.n_references {
                0 => Reference::Every,
                n => Reference::Distribution(n),
            },
            reference_tensor: c.reference_tensor,
            pool: c.pool,
            seed: c.seed,
            rules: c.rules,
        })?;
        Ok(DeepLiftShap { config, deeplift })
    }
    fn config(&self) -> &DeepLiftShapConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let mut e = self.deeplift.explain(model, inputs, target)?;
        e.method = Self::NAME.to_string();
        e.params = self.params();
        Ok(e)
    }
}

lumen_core::submit_method!(DeepLiftShap);

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::Device;
    use lumen_core::Params;

    /// Words are checked (no silent default), the MNIST pool is asked for by name,
    /// and the props follow the config instead of a static copy.
    #[test]
    fn words_are_checked_and_props_follow_the_config() {
        let build = |p: Params| <DeepLift as Method>::from_params(&p, &lumen_core::config::NoMethods);
        let e = build(Params::new().with("rule", "revealcancle")).unwrap_err().to_string();
        assert!(e.contains("revealcancle") && e.contains("rescale, revealcancel"), "{e}");
        let e = build(Params::new().with("pool", "imagenet")).unwrap_err().to_string();
        assert!(e.contains("'pool'") && e.contains("none, mnist-train"), "{e}");
        let e = build(Params::new().with("softmax", "yes")).unwrap_err().to_string();
        assert!(e.contains("auto, on, off"), "{e}");
        assert!(!DeepLift::default().props().stochastic);
        let d = build(Params::new().with("reference", "distribution").with("pool", "mnist-train")).unwrap();
        assert!(d.props().stochastic);
        assert_eq!(d.params()["pool"], "mnist-train");
        // configs that never read the pool keep their recorded keys
        let p = build(Params::new()).unwrap().params();
        assert!(!p.contains_key("pool"));
        assert_eq!((p["rule"].as_str(), p["softmax"].as_str()), ("rescale", "auto"));
    }

    /// A single 1 in the middle of a 1-D signal blurs into the normalised kernel.
    #[test]
    fn blur_preserves_mass_and_is_symmetric() {
        let mut v = vec![0f32; 21];
        v[10] = 1.0;
        let x = Tensor::from_vec(v, (1, 1, 21), &Device::Cpu).unwrap();
        let y = gaussian_blur(&x, 1.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let s: f32 = y.iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
        assert!((y[9] - y[11]).abs() < 1e-7 && y[10] > y[9]);
        // exp(-1/2) ratio between centre and neighbour
        assert!((y[9] / y[10] - (-0.5f32).exp()).abs() < 1e-5);
    }
}

/// The layer kinds of `genomics-cnn` (conv1d, PReLU, a max pool whose windows leave
/// a tail uncovered, fc) on a small random net.
#[cfg(test)]
mod genomics_layers {
    use super::*;
    use lumen_core::candle::Device;
    use lumen_core::candle_nn::VarBuilder;
    use lumen_core::model::network::init_params;
    use lumen_core::model::{LayerKind as K, LayerSpec as L, ModelInfo, NetworkModel};
    use lumen_core::rules::Rule;

    fn net(seed: u64) -> NetworkModel {
        let d = Device::Cpu;
        let s = vec![
            L::new("conv1", K::Conv1d { in_channels: 4, out_channels: 3, kernel: 5, stride: 1, padding: 0, bias: true }),
            L::new("prelu1", K::Prelu { channels: 3 }),
            // 36 conv outputs, 3 windows of 10: conv outputs 30–35 (bases 34–39) unseen.
            L::new("pool1", K::MaxPool1d { kernel: 10, stride: 10 }),
            L::new("flatten", K::Flatten),
            L::new("fc1", K::Linear { in_features: 9, out_features: 6, bias: true }),
            L::new("prelu2", K::Prelu { channels: 6 }),
            L::new("fc2", K::Linear { in_features: 6, out_features: 2, bias: true }),
        ];
        let mut rng = StdRng::seed_from_u64(seed);
        let mut p = init_params(&s, seed, &d).unwrap();
        // PReLU slopes of both signs, so negative pre-activations matter.
        for (k, c) in [("prelu1.weight", 3), ("prelu2.weight", 6)] {
            p.insert(k.into(), Tensor::from_vec((0..c).map(|_| rng.gen_range(-0.5f32..0.5)).collect::<Vec<_>>(), c, &d).unwrap());
        }
        let net = Network::from_spec(&s, VarBuilder::from_tensors(p, DType::F32, &d)).unwrap();
        let info = ModelInfo { name: "t".into(), input_shape: vec![4, 40], labels: vec!["0".into(), "1".into()], input_range: (0.0, 1.0), card: None };
        NetworkModel::new(info, net, &d).unwrap()
    }

    fn onehot(n: usize, seed: u64) -> Tensor {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut v = vec![0f32; n * 4 * 40];
        for b in 0..n {
            for i in 0..40 {
                v[b * 160 + rng.gen_range(0..4) * 40 + i] = 1.0;
            }
        }
        Tensor::from_vec(v, (n, 4, 40), &Device::Cpu).unwrap()
    }

    /// Σ C = f(x) − f(ref) on every row of a batch, with and without the §2.6
    /// normalisation, for raw and mean-normalised logits. (Failed before conv1d was
    /// routed through conv2d: candle 0.11's conv1d backward mixes batch rows.)
    #[test]
    fn summation_to_delta_on_conv1d_prelu_maxpool1d() {
        for seed in [1, 2, 3] {
            let m = net(seed);
            let x = onehot(6, seed + 10);
            let plain = m.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            for onehot in [false, true] {
                for rule in [DeepLiftRule::Rescale, DeepLiftRule::RevealCancel] {
                    for softmax in [SoftmaxMode::Off, SoftmaxMode::On] {
                        let dl = DeepLift::new(DeepLiftConfig { rules: DeepLiftRules { onehot, rule, softmax, batch_size: 4, ..Default::default() }, ..Default::default() });
                        let e = dl.attribute(&m, &x, &Target::Class(1)).unwrap();
                        let get = |k: &str| -> Vec<f64> {
                            e.diagnostics[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
                        };
                        let (delta, err) = (get("delta"), get("summation_to_delta"));
                        for (i, (d, r)) in delta.iter().zip(&err).enumerate() {
                            assert!(r.abs() <= 1e-4 * d.abs().max(1e-3), "seed {seed} onehot {onehot} {rule:?} {softmax:?} row {i}: Σ C − Δ = {r}, Δ = {d}");
                        }
                        // Δ is measured against the model's own output for one-hot
                        // inputs: §2.6 changes only the reference's value.
                        if softmax == SoftmaxMode::Off && !onehot {
                            let zero = m.forward(&x.zeros_like().unwrap()).unwrap().to_vec2::<f32>().unwrap();
                            for (i, d) in delta.iter().enumerate() {
                                assert!((d - (plain[i][1] - zero[0][1]) as f64).abs() < 1e-5);
                            }
                        }
                        // Bases 34–39 only feed conv outputs no pooling window reads.
                        let a = e.attribution().narrow(2, 34, 6).unwrap().abs().unwrap().max_all().unwrap();
                        assert_eq!(a.to_scalar::<f32>().unwrap(), 0.0, "uncovered tail");
                    }
                }
            }
        }
    }

    /// deeplift_shap is deeplift with reference=distribution under its own name and
    /// defaults: the same draws give the same map, and Σ C = f(x) − mean f(ref).
    #[test]
    fn deeplift_shap_is_deeplift_over_a_distribution() {
        use lumen_core::config::NoMethods;
        use lumen_core::Params;
        let m = net(5);
        let (x, pool) = (onehot(3, 1), onehot(7, 2));
        let path = std::env::temp_dir().join(format!("lumen-dlshap-{}.safetensors", std::process::id()));
        lumen_core::io::save_safetensors(&path, &[("reference".to_string(), pool.clone())].into_iter().collect()).unwrap();
        let p = path.to_string_lossy().to_string();
        let shap = <DeepLiftShap as Method>::from_params(
            &Params::new().with("reference_tensor", p.as_str()).with("n_references", 5i64).with("seed", 3i64).with("rule", "revealcancel"),
            &NoMethods,
        )
        .unwrap();
        let dl = <DeepLift as Method>::from_params(
            &Params::new()
                .with("reference", "distribution")
                .with("reference_tensor", p.as_str())
                .with("n_references", 5i64)
                .with("seed", 3i64)
                .with("rule", "revealcancel"),
            &NoMethods,
        )
        .unwrap();
        std::fs::remove_file(&path).ok();
        let t = Target::Classes(vec![0, 1, 1]);
        let (a, b) = (shap.attribute(&m, &x, &t).unwrap(), dl.attribute(&m, &x, &t).unwrap());
        assert_eq!(a.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!((a.method.as_str(), a.seed), ("deeplift_shap", Some(3)));
        assert_eq!((a.params["n_references"].as_str(), a.params["rule"].as_str()), ("5", "revealcancel"));
        assert!(!a.params.contains_key("pool") && !a.params.contains_key("reference"), "{:?}", a.params);
        let s = a.facts.summation.as_ref().unwrap();
        for (e, d) in s.error.iter().zip(&s.delta) {
            assert!(e.abs() <= 1e-4 * d.abs().max(1e-3), "{e} vs {d}");
        }
        // A new seed draws other references; the defaults name the MNIST pool, which
        // a [4, 40] model refuses with a clear error.
        let other = <DeepLiftShap as Method>::new(DeepLiftShapConfig { seed: 4, reference_tensor: Some(pool.clone()), n_references: 5, ..Default::default() }).unwrap();
        assert_ne!(flat_of(&other.attribute(&m, &x, &t).unwrap()), flat_of(&a));
        let err = <DeepLiftShap as Method>::new(DeepLiftShapConfig::default()).unwrap().attribute(&m, &x, &t).unwrap_err().to_string();
        assert!(err.contains("mnist-train") && err.contains("[4, 40]"), "{err}");
        assert!(<DeepLiftShap as Method>::from_params(&Params::new().with("n_references", 10_001i64), &NoMethods).is_err());
        assert!(<DeepLiftShap as Method>::new(DeepLiftShapConfig::default()).unwrap().props().stochastic);
        // n_references=0: every row of the background, in blocks of batch_size rows,
        // is the plain mean of the single-reference maps (Captum's DeepLiftShap).
        let every = <DeepLiftShap as Method>::new(DeepLiftShapConfig {
            reference_tensor: Some(pool.clone()),
            n_references: 0,
            rules: DeepLiftRules { batch_size: 3, ..Default::default() },
            ..Default::default()
        })
        .unwrap();
        assert!(!every.props().stochastic);
        let got = flat_of(&every.attribute(&m, &x, &t).unwrap());
        let mut want = vec![0f32; got.len()];
        for j in 0..pool.dim(0).unwrap() {
            let one = DeepLift::new(DeepLiftConfig {
                reference: Reference::Tensor,
                reference_tensor: Some(pool.get(j).unwrap()),
                ..Default::default()
            });
            for (w, v) in want.iter_mut().zip(flat_of(&one.attribute(&m, &x, &t).unwrap())) {
                *w += v / pool.dim(0).unwrap() as f32;
            }
        }
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    fn flat_of(e: &Explanation) -> Vec<f32> {
        e.attribution().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// §2.6 keeps the value of one-hot inputs: the first layer's output is unchanged.
    #[test]
    fn onehot_normalisation_keeps_onehot_values() {
        let m = net(4);
        let x = onehot(3, 7);
        let n = m.network().unwrap().node("conv1").unwrap().1.clone();
        let y0 = n.forward(&[&x]).unwrap();
        let y1 = OneHotNormalize.forward(&n, &[&x], &RuleCtx::default()).unwrap();
        let d = (y0 - y1).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
        // ...and changes the zero reference's (to the bias plus the weights' channel means).
        let z = x.zeros_like().unwrap();
        let (w, b) = (n.weight.clone().unwrap(), n.bias.clone().unwrap());
        let expect = (w.mean(1).unwrap().sum(1).unwrap() + b).unwrap().to_vec1::<f32>().unwrap();
        let got = OneHotNormalize.forward(&n, &[&z], &RuleCtx::default()).unwrap().to_vec3::<f32>().unwrap();
        for (c, e) in expect.iter().enumerate() {
            assert!((got[0][c][0] - e).abs() < 1e-5);
        }
    }
}
