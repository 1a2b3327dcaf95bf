//! Neuron conductance (Dhamdhere et al. 2018; Captum's NeuronConductance): the
//! target class attributed to the input features through one hidden unit `n`:
//!
//! `NC_i(x) = (x_i − b_i) · Σ_k w_k · ∂F/∂n(x_{α_k}) · ∂n/∂x_i(x_{α_k})`
//!
//! on the straight path `x_α = b + α(x − b)` with the quadrature of `scheme`. The unit
//! is the parameter `neuron=LAYER:CHANNEL[:Y,X]` (a position is needed on a spatial
//! layer), the class is the explanation's target as for every method. lumen's
//! default scheme is Gauss–Legendre, as for its other path methods; Captum's default
//! for this one method is `riemann_trapezoid` (whose weights sum to `(m − 1)/m`,
//! see `lumen_core::quadrature`), so pass `method="gausslegendre"` there to compare.
//!
//! Captum's other neuron methods are lumen methods with the unit as target,
//! `Target::Hidden` (`--target hidden:LAYER:CHANNEL[:Y,X]`): NeuronGradient is
//! `saliency`, NeuronIntegratedGradients `integrated_gradients`,
//! NeuronGuidedBackprop `guided_backprop`, NeuronDeepLift `deeplift`.

use crate::path::{activations, per_row, points};
use lumen_core::quadrature::{PathConfig, Scheme};
use lumen_core::baseline::Baseline;
use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, gradient, layer_gradient, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};

/// One hidden unit: a channel of a layer, at a position on spatial layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neuron {
    pub layer: String,
    pub channel: usize,
    pub position: Option<Vec<usize>>,
}

impl Neuron {
    /// Parses `LAYER:CHANNEL` or `LAYER:CHANNEL:Y,X` (`LAYER:CHANNEL:L` on 1-D maps).
    pub fn parse(method: &str, s: &str) -> Result<Neuron> {
        let bad = |why: String| Error::bad_param(method, "neuron", why);
        let form = "the form LAYER:CHANNEL or LAYER:CHANNEL:Y,X";
        let parts: Vec<&str> = s.trim().split(':').collect();
        if parts.len() < 2 || parts.len() > 3 || parts[0].is_empty() {
            return Err(bad(format!("'{s}' is not of {form}")));
        }
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad(format!("'{t}' in '{s}' is not a non-negative integer ({form})")));
        let channel = num(parts[1])?;
        let position = match parts.get(2) {
            None => None,
            Some(p) => Some(p.split(',').map(num).collect::<Result<Vec<_>>>()?),
        };
        Ok(Neuron { layer: parts[0].to_string(), channel, position })
    }

    /// The unit as a hidden target (its value is the objective).
    pub fn target(&self) -> Target {
        Target::Hidden { layer: self.layer.clone(), channel: self.channel, position: self.position.clone() }
    }

    /// Checks the unit against the layer's output shape `dims` (`[B, C, ...]`).
    pub fn check(&self, method: &str, dims: &[usize]) -> Result<()> {
        let bad = |why: String| Error::bad_param(method, "neuron", why);
        let l = &self.layer;
        if dims.len() < 2 || self.channel >= dims[1] {
            return Err(bad(format!("layer '{l}' has shape {dims:?}; channel {} is out of range", self.channel)));
        }
        let spatial = &dims[2..];
        match &self.position {
            None if !spatial.is_empty() => {
                Err(bad(format!("layer '{l}' has shape {dims:?}; name a position, {l}:{}:Y,X", self.channel)))
            }
            Some(p) if p.len() != spatial.len() || p.iter().zip(spatial).any(|(p, d)| p >= d) => {
                Err(bad(format!("position {p:?} does not fit layer '{l}' of shape {dims:?}")))
            }
            _ => Ok(()),
        }
    }

    /// The unit's entries of a layer-shaped tensor `[n, C, ...]`, as `[n]`.
    pub fn select(&self, t: &Tensor) -> Result<Tensor> {
        let mut t = t.narrow(1, self.channel, 1)?.squeeze(1)?;
        for p in self.position.iter().flatten() {
            t = t.narrow(1, *p, 1)?.squeeze(1)?;
        }
        Ok(t)
    }
}

/// Configuration of [`NeuronConductance`]: the unit and core's path parameters
/// (`steps`, `scheme`, `baseline`, `seed`, `batch_size`).
#[derive(Debug, Clone, Default, Config)]
pub struct NeuronConductanceConfig {
    /// the hidden unit, LAYER:CHANNEL or LAYER:CHANNEL:Y,X (required)
    pub neuron: String,
    #[param(flatten)]
    pub path: PathConfig,
}

/// Neuron conductance: the target class through one hidden unit, on the input.
#[derive(Debug, Clone)]
pub struct NeuronConductance {
    pub config: NeuronConductanceConfig,
    pub neuron: Neuron,
}

impl Method for NeuronConductance {
    const NAME: &'static str = "neuron_conductance";
    const SUMMARY: &'static str =
        "neuron conductance: the target attributed to the input through one hidden unit (Captum's NeuronConductance)";
    type Config = NeuronConductanceConfig;
    const PROPS: MethodProps = MethodProps { needs_rules: true, multiplies_input: true, ..MethodProps::NONE };
    fn new(config: NeuronConductanceConfig) -> Result<Self> {
        if config.neuron.trim().is_empty() {
            return Err(Error::bad_param(Self::NAME, "neuron", "is required: the hidden unit, LAYER:CHANNEL or LAYER:CHANNEL:Y,X"));
        }
        if config.path.baselines.is_empty() {
            return Err(Error::bad_param(Self::NAME, "baseline", "no baseline given"));
        }
        if config.path.scheme == Scheme::Trapezoid && config.path.steps < 2 {
            return Err(Error::bad_param(Self::NAME, "steps", "the trapezoid rule needs at least 2 steps"));
        }
        let neuron = Neuron::parse(Self::NAME, &config.neuron)?;
        Ok(NeuronConductance { config, neuron })
    }
    fn config(&self) -> &NeuronConductanceConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let c = &self.config;
        let n = &self.neuron;
        let inputs = inputs.detach();
        let net = model.network().ok_or_else(|| {
            Error::msg(format!(
                "{} needs a model built from the explainable layer vocabulary (it reads a hidden unit); '{}' is not",
                Self::NAME,
                model.info().name
            ))
        })?;
        net.node(&n.layer)?;
        let dims = activations(model, &inputs.narrow(0, 0, 1)?, &n.layer, 1)?.dims().to_vec();
        n.check(Self::NAME, &dims)?;
        let unit = n.target();
        let (alphas, weights) = c.path.scheme.nodes(Self::NAME, c.path.steps)?;
        let m = alphas.len();
        let b = inputs.dim(0)?;
        let mut total: Option<Tensor> = None;
        for (j, base) in c.path.baselines.iter().enumerate() {
            let bl = base.materialize(model, &inputs, c.path.seed, j as u64)?.detach();
            let diff = (&inputs - &bl)?;
            let mut acc = inputs.zeros_like()?;
            for r in chunks(b * m, c.path.batch_size) {
                let (ids, pts) = points(&bl, &diff, &alphas, &r)?;
                let t = target.select_repeated(m, r.clone());
                // ∂F/∂n from the layer's gradient, ∂n/∂x from the unit's input gradient.
                let lg = layer_gradient(model, &pts, &t, &n.layer, None, ForwardOptions::default())?;
                let dfdn = n.select(&lg.grad)?.to_dtype(lumen_core::candle::DType::F64)?.to_vec1::<f64>()?;
                let dndx = gradient(model, &pts, &unit, ForwardOptions::default())?.grad;
                let s: Vec<f64> = r.clone().zip(&dfdn).map(|(i, d)| d * weights[i % m]).collect();
                acc = acc.index_add(&ids, &dndx.broadcast_mul(&per_row(s, &dndx)?)?, 0)?;
            }
            let attr = (diff * acc)?;
            total = Some(match total {
                None => attr,
                Some(t) => (t + attr)?,
            });
        }
        let nb = c.path.baselines.len();
        let mut attr = total.ok_or_else(|| Error::bad_param(Self::NAME, "baseline", "no baseline given"))?;
        if nb > 1 {
            attr = attr.affine(1.0 / nb as f64, 0.0)?;
        }
        let mut e = Explanation::new(Self::NAME, attr, target)
            .with_params(self.params())
            .with_diag("layer", n.layer.as_str())
            .with_diag("neuron", c.neuron.trim());
        if c.path.baselines.iter().any(|b| matches!(b, Baseline::Uniform)) {
            e.seed = Some(c.path.seed);
        }
        Ok(e)
    }
}

lumen_core::submit_method!(NeuronConductance);
