//! Evaluation metrics: the [`Metric`] trait, its input and output, and the registry
//! entry a pack declares with [`submit_metric!`](crate::submit_metric).
//!
//! A metric judges attributions that were already computed: it gets the model, a
//! batch of inputs, one target class per example and the maps ([`MetricInput`]), and
//! returns one headline score per example plus optional curves, per-layer scores and
//! secondary per-example scores ([`MetricOutput`]). Metrics that must explain again
//! (max-sensitivity, the randomization sanity check) use `MetricInput::method`;
//! localization uses `MetricInput::masks`.
//!
//! Everything in a [`MetricOutput`] is per example, so outputs of consecutive chunks
//! of a data set concatenate ([`MetricOutput::concat`]) into the output of the whole:
//! an evaluation can be written and resumed chunk by chunk. Stochastic metrics draw
//! from `StdRng::seed_from_u64(seed)`; a resumable caller passes a seed per chunk.
//!
//! Metrics are registry items like methods: `Registry::build_metric(name, &params)`
//! builds one (checking the parameters against the entry's schema, and containing
//! panics of the pack), `Registry::metrics()` lists them.

use crate::method::Attributor;
use crate::model::Classifier;
use crate::params::{Args, ParamSpec};
use crate::{Error, Result};
use candle_core::Tensor;
use std::collections::BTreeMap;

/// What a metric judges: one chunk of examples and their maps.
#[derive(Clone, Copy)]
pub struct MetricInput<'a> {
    pub model: &'a dyn Classifier,
    /// `[B, ...]`, the model's input shape.
    pub inputs: &'a Tensor,
    /// The explained class of each example (`B` entries).
    pub targets: &'a [usize],
    /// The maps, same shape as `inputs`.
    pub attributions: &'a Tensor,
    /// The method that produced the maps, for metrics that explain again.
    pub method: Option<&'a dyn Attributor>,
    /// Ground-truth masks for localization: the shape of `inputs`, or `[B, H, W]`
    /// (or `[B, L]` for sequences) shared by all channels; nonzero = inside.
    pub masks: Option<&'a Tensor>,
    /// Seed of the metric's own randomness (noise, random fill, re-initialisation).
    pub seed: u64,
}

impl<'a> MetricInput<'a> {
    /// The input with no method, masks, and seed 0.
    pub fn new(model: &'a dyn Classifier, inputs: &'a Tensor, targets: &'a [usize], attributions: &'a Tensor) -> Self {
        MetricInput { model, inputs, targets, attributions, method: None, masks: None, seed: 0 }
    }
    pub fn with_method(mut self, m: &'a dyn Attributor) -> Self {
        self.method = Some(m);
        self
    }
    pub fn with_masks(mut self, m: &'a Tensor) -> Self {
        self.masks = Some(m);
        self
    }
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Checks that inputs, targets and attributions agree with each other and with
    /// the model; the common first step of every metric.
    pub fn check(&self, metric: &str) -> Result<()> {
        self.model.info().check_input(self.inputs)?;
        let b = self.inputs.dim(0)?;
        if b == 0 {
            return Err(Error::shape("a batch of at least one example", format!("{:?}", self.inputs.dims())));
        }
        if self.targets.len() != b {
            return Err(Error::BadTarget(format!("{metric}: {} targets for a batch of {b}", self.targets.len())));
        }
        let k = self.model.info().num_classes();
        if let Some(c) = self.targets.iter().find(|c| **c >= k) {
            return Err(Error::BadTarget(format!("{metric}: class {c} is out of range for a model with {k} classes")));
        }
        if self.attributions.dims() != self.inputs.dims() {
            return Err(Error::shape(
                format!("{metric}: attributions of the input's shape {:?}", self.inputs.dims()),
                format!("{:?}", self.attributions.dims()),
            ));
        }
        Ok(())
    }

    /// The method, or a clear error naming the metric.
    pub fn require_method(&self, metric: &str) -> Result<&'a dyn Attributor> {
        self.method.ok_or_else(|| Error::msg(format!("{metric} explains again and needs the method (none given)")))
    }

    /// The masks, or a clear error naming the metric.
    pub fn require_masks(&self, metric: &str) -> Result<&'a Tensor> {
        self.masks.ok_or_else(|| Error::msg(format!("{metric} needs ground-truth masks (none given)")))
    }
}

/// Scores of one randomization step of the sanity check (or any per-layer score).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerScore {
    /// The layer randomized at this step (cumulative with the steps before it);
    /// `"none"` for step 0, the trained model.
    pub layer: String,
    /// 0 = trained model, 1 = top layer randomized, ...
    pub step: usize,
    /// Spearman rank correlation of |map| with the trained model's |map|, per example.
    pub spearman: Vec<f64>,
    /// SSIM of the two normalised |maps|, per example.
    pub ssim: Vec<f64>,
}

/// What a metric found for a chunk of examples. Every vector has one entry per
/// example, so chunks concatenate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricOutput {
    pub metric: String,
    /// The headline score per example; NaN where it does not apply.
    pub per_example: Vec<f64>,
    /// Per example, a curve (deletion: the target probability after each step).
    pub curves: Option<Vec<Vec<f64>>>,
    /// The x values of the curves (deletion: fraction of pixels removed), shared.
    pub curve_x: Option<Vec<f64>>,
    /// Per-layer scores (sanity check), one entry per step.
    pub layers: Option<Vec<LayerScore>>,
    /// Secondary per-example scores by name (`rank_accuracy`, `relative`, ...).
    pub extra: BTreeMap<String, Vec<f64>>,
    /// Why some scores are NaN, and other remarks for the report.
    pub notes: Vec<String>,
}

impl MetricOutput {
    pub fn new(metric: impl Into<String>, per_example: Vec<f64>) -> Self {
        MetricOutput { metric: metric.into(), per_example, ..Default::default() }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.per_example.len()
    }
    pub fn is_empty(&self) -> bool {
        self.per_example.is_empty()
    }

    /// Mean of the headline score over the examples where it is not NaN.
    pub fn mean(&self) -> f64 {
        nan_mean(&self.per_example)
    }

    /// Joins the outputs of consecutive chunks (in order) into one.
    pub fn concat(parts: &[MetricOutput]) -> Result<MetricOutput> {
        let Some(first) = parts.first() else {
            return Err(Error::msg("no metric outputs to concatenate"));
        };
        let mut out = MetricOutput { metric: first.metric.clone(), curve_x: first.curve_x.clone(), ..Default::default() };
        let mismatch = |what: &str| Error::msg(format!("metric outputs of '{}' disagree in {what}", first.metric));
        for p in parts {
            if p.metric != first.metric {
                return Err(mismatch("name"));
            }
            if p.curve_x != first.curve_x || p.curves.is_some() != first.curves.is_some() {
                return Err(mismatch("curves"));
            }
            if p.extra.keys().ne(first.extra.keys()) {
                return Err(mismatch("extra scores"));
            }
            out.per_example.extend_from_slice(&p.per_example);
            if let Some(c) = &p.curves {
                out.curves.get_or_insert_with(Vec::new).extend(c.iter().cloned());
            }
            for (k, v) in &p.extra {
                out.extra.entry(k.clone()).or_default().extend_from_slice(v);
            }
            match (&mut out.layers, &p.layers) {
                (_, None) if first.layers.is_none() => {}
                (None, Some(l)) => out.layers = Some(l.clone()),
                (Some(acc), Some(l)) if acc.len() == l.len() => {
                    for (a, b) in acc.iter_mut().zip(l) {
                        if a.layer != b.layer {
                            return Err(mismatch("layers"));
                        }
                        a.spearman.extend_from_slice(&b.spearman);
                        a.ssim.extend_from_slice(&b.ssim);
                    }
                }
                _ => return Err(mismatch("layers")),
            }
            for n in &p.notes {
                if !out.notes.contains(n) {
                    out.notes.push(n.clone());
                }
            }
        }
        Ok(out)
    }
}

/// Mean of the finite values (NaN if there are none).
pub fn nan_mean(v: &[f64]) -> f64 {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

/// An evaluation metric. One required call: `evaluate`.
pub trait Metric: Send + Sync {
    fn name(&self) -> &str;
    /// The metric's resolved parameters, as strings (for records and reports).
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Whether a larger headline score is better (deletion AUC: no).
    fn higher_is_better(&self) -> bool;
    /// Scores one chunk of examples.
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput>;
}

/// What a metric needs besides model, inputs, targets and maps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricNeeds {
    /// Explains again: `MetricInput::method` must be set.
    pub method: bool,
    /// Ground truth: `MetricInput::masks` must be set.
    pub masks: bool,
    /// Needs a model built from the explainable layer vocabulary.
    pub network: bool,
}

impl MetricNeeds {
    pub const NONE: MetricNeeds = MetricNeeds { method: false, masks: false, network: false };
}

/// A metric that a pack provides.
pub struct MetricEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    pub params: &'static [ParamSpec],
    pub higher_is_better: bool,
    pub needs: MetricNeeds,
    pub build: fn(&Args) -> Result<Box<dyn Metric>>,
}
crate::entry_kind!(MetricEntry, "metric", 50);

/// Declares a metric in the calling pack:
/// `submit_metric!(NAME, SUMMARY, PARAMS, higher_is_better, NEEDS, |args| ...)`.
#[macro_export]
macro_rules! submit_metric {
    ($name:expr, $summary:expr, $params:expr, $higher:expr, $needs:expr, $build:expr $(,)?) => {
        $crate::submit_entry!($crate::metric::MetricEntry {
            name: $name,
            summary: $summary,
            params: $params,
            higher_is_better: $higher,
            needs: $needs,
            build: $build,
        });
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_concatenate() {
        let mut a = MetricOutput::new("m", vec![1.0, f64::NAN]);
        a.curves = Some(vec![vec![1.0, 0.5], vec![1.0, 0.0]]);
        a.curve_x = Some(vec![0.0, 1.0]);
        a.extra.insert("x".into(), vec![3.0, 4.0]);
        a.layers = Some(vec![LayerScore { layer: "fc".into(), step: 1, spearman: vec![0.1, 0.2], ssim: vec![0.3, 0.4] }]);
        let mut b = MetricOutput::new("m", vec![3.0]);
        b.curves = Some(vec![vec![0.7, 0.2]]);
        b.curve_x = Some(vec![0.0, 1.0]);
        b.extra.insert("x".into(), vec![5.0]);
        b.layers = Some(vec![LayerScore { layer: "fc".into(), step: 1, spearman: vec![0.5], ssim: vec![0.6] }]);
        let c = MetricOutput::concat(&[a.clone(), b]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.extra["x"], vec![3.0, 4.0, 5.0]);
        assert_eq!(c.curves.as_ref().unwrap().len(), 3);
        assert_eq!(c.layers.as_ref().unwrap()[0].spearman, vec![0.1, 0.2, 0.5]);
        assert_eq!(c.mean(), 2.0);
        let other = MetricOutput::new("n", vec![1.0]);
        assert!(MetricOutput::concat(&[a, other]).is_err());
    }
}
