//! Model-randomization sanity check (Adebayo et al. 2018, cascading randomization).
//!
//! The parametric layers (convolutions and linear layers) are re-initialised one at
//! a time from the output side, cumulatively, with seeded PyTorch-style values
//! `U(±1/√fan_in)` for weights and biases. After each step the method explains the
//! same inputs on the randomized copy, and the new map is compared with the map
//! under evaluation by
//!
//! - the Spearman rank correlation of the absolute maps (`Σ_c |φ|` per position):
//!   the paper reports both signed and absolute; absolute is the one that does not
//!   reward a sign flip, so that is the one kept here;
//! - SSIM of the same absolute maps, each divided by its maximum (data range 1,
//!   7×7 uniform window; rows of 1×7 for sequences).
//!
//! Step 0 re-explains the unmodified copy, so its scores check the copy itself (1 for
//! a deterministic method). The headline is the Spearman correlation after every
//! layer is randomized: a method that depends on the model scores low (lower is
//! better); `ssim_final` is in `extra`.

use crate::util::{abs_pixel_maps, host, hw, spearman, ssim, Layout};
use lumen_core::candle::Tensor;
use lumen_core::metric::{LayerScore, MetricInput, MetricNeeds, MetricOutput};
use lumen_core::model::network::fan_in;
use lumen_core::model::LayerKind;
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Classifier, Error, Metric, NetworkModel, Result, Target};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// Configuration of [`SanityRandomization`].
#[derive(Debug, Clone)]
pub struct SanityConfig {
    /// Randomize at most this many layers from the top (0 = all).
    pub max_layers: usize,
    /// SSIM window side.
    pub ssim_window: usize,
}

impl Default for SanityConfig {
    fn default() -> Self {
        SanityConfig { max_layers: 0, ssim_window: 7 }
    }
}

pub static SANITY_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("max_layers", ParamKind::Int, "0", "randomize at most this many parametric layers from the top (0 = all)").max(10_000),
    ParamSpec::new("ssim_window", ParamKind::Int, "7", "side of the uniform SSIM window").max(255),
];

#[derive(Debug, Clone, Default)]
pub struct SanityRandomization {
    pub config: SanityConfig,
}

impl SanityRandomization {
    pub fn new(config: SanityConfig) -> Self {
        SanityRandomization { config }
    }
    pub fn from_args(a: &Args) -> Result<Self> {
        Ok(SanityRandomization::new(SanityConfig {
            max_layers: a.usize("max_layers")?,
            ssim_window: a.positive("ssim_window")?,
        }))
    }
}

fn is_parametric(k: &LayerKind) -> bool {
    matches!(k, LayerKind::Conv1d { .. } | LayerKind::Conv2d { .. } | LayerKind::Linear { .. })
}

/// `t`'s shape filled with `U(±bound)` draws.
fn uniform_like(t: &Tensor, bound: f32, rng: &mut rand::rngs::StdRng) -> Result<Tensor> {
    let n = t.elem_count();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Ok(Tensor::from_vec(v, t.dims(), t.device())?.to_dtype(t.dtype())?)
}

impl Metric for SanityRandomization {
    fn name(&self) -> &str {
        "sanity_randomization"
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("max_layers".to_string(), self.config.max_layers.to_string()),
            ("ssim_window".to_string(), self.config.ssim_window.to_string()),
        ])
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        let name = "sanity_randomization";
        input.check(name)?;
        let method = input.require_method(name)?;
        let model = input.model;
        let net = model.network().ok_or_else(|| {
            Error::unsupported(
                name,
                format!("model '{}' is not built from the explainable layer vocabulary, so its layers cannot be re-initialised", model.info().name),
            )
        })?;
        let mut net = net.clone();
        let mut layers: Vec<usize> =
            net.nodes().iter().enumerate().filter(|(_, n)| is_parametric(&n.kind)).map(|(i, _)| i).rev().collect();
        if self.config.max_layers > 0 {
            layers.truncate(self.config.max_layers);
        }
        let l = Layout::of(input.inputs.dims())?;
        let (h, w) = hw(&l.spatial);
        let reference = abs_pixel_maps(&host(input.attributions)?, &l);
        let target = Target::Classes(input.targets.to_vec());
        let win = self.config.ssim_window;
        let compare = |m: &NetworkModel| -> Result<(Vec<f64>, Vec<f64>)> {
            let e = method.attribute(m as &dyn Classifier, input.inputs, &target)?;
            let maps = abs_pixel_maps(&host(e.attribution())?, &l);
            let mut rho = vec![];
            let mut s = vec![];
            for (a, b) in reference.iter().zip(&maps) {
                rho.push(spearman(a, b));
                s.push(ssim(&unit_max(a), &unit_max(b), h, w, win, 1.0));
            }
            Ok((rho, s))
        };
        let rebuild = |net: &lumen_core::Network| NetworkModel::new(model.info().clone(), net.clone(), model.device());
        let mut rng = rand::rngs::StdRng::seed_from_u64(input.seed);
        let (rho, s) = compare(&rebuild(&net)?)?;
        let mut steps = vec![LayerScore { layer: "none".into(), step: 0, spearman: rho, ssim: s }];
        for (k, &idx) in layers.iter().enumerate() {
            let node = &mut net.nodes_mut()[idx];
            let bound = 1.0 / (fan_in(&node.kind) as f32).sqrt();
            if let Some(wt) = &node.weight {
                node.weight = Some(uniform_like(wt, bound, &mut rng)?);
            }
            if let Some(b) = &node.bias {
                node.bias = Some(uniform_like(b, bound, &mut rng)?);
            }
            let layer = node.name.clone();
            let (rho, s) = compare(&rebuild(&net)?)?;
            steps.push(LayerScore { layer, step: k + 1, spearman: rho, ssim: s });
        }
        let last = steps.last().cloned().unwrap_or_else(|| steps[0].clone());
        let mut out = MetricOutput::new(name, last.spearman.clone());
        out.extra.insert("ssim_final".into(), last.ssim.clone());
        if layers.is_empty() {
            out.notes.push("the model has no convolution or linear layer to randomize".into());
        }
        out.layers = Some(steps);
        Ok(out)
    }
}

/// The map divided by its maximum (an all-zero map stays zero).
fn unit_max(v: &[f64]) -> Vec<f64> {
    let m = v.iter().cloned().fold(0.0, f64::max);
    if m > 0.0 {
        v.iter().map(|x| x / m).collect()
    } else {
        v.to_vec()
    }
}

lumen_core::submit_metric!(
    "sanity_randomization",
    "Adebayo et al.: cascading layer randomization from the top; Spearman (|maps|) and SSIM per step (lower is better)",
    SANITY_PARAMS,
    false,
    MetricNeeds { method: true, masks: false, network: true },
    |a| Ok(Box::new(SanityRandomization::from_args(a)?)),
);
