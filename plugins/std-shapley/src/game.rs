//! The cooperative game every method of the pack plays: a coalition of features is
//! kept at the input's values, the rest is set to a fill (the baseline, or another
//! example's values for permutation), and the model's target objective is the
//! coalition's worth. Queries from all examples are evaluated together in
//! `batch_size` chunks, so a batch of examples costs few large forwards.

use crate::mask::{FeatureMask, MaskSpec};
use lumen_core::baseline::Baseline;
use lumen_core::Config;
use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::method::{chunks, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::target::objective;
use lumen_core::{Classifier, Error, Result, Target};
use std::cell::Cell;
use std::sync::Arc;

/// What every method of the family shares: the features, what an absent feature is
/// set to, and how many coalitions go through the model at once.
#[derive(Debug, Clone, Config)]
pub struct Features {
    /// how features are formed: grid, slic, file (mask_file=), segments (sequences)
    #[param(name = "mask", with = crate::mask::param)]
    pub mask: MaskSpec,
    /// what absent features are set to: zero, constant, blur or tensor
    #[param(name = "baseline", with = lumen_core::baseline::param)]
    pub baselines: Vec<Baseline>,
    /// coalitions per forward pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
}

impl Default for Features {
    fn default() -> Self {
        Features { mask: MaskSpec::default(), baselines: vec![Baseline::Zero], batch_size: 256 }
    }
}

impl Features {
    /// Checks what `Config` parsing cannot: one fixed baseline.
    pub fn check(&self, method: &str) -> Result<()> {
        one_baseline(method, &self.baselines).map(|_| ())
    }
}

/// Where an absent feature takes its values from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// The example's baseline.
    Baseline,
    /// Example `j` of the batch (feature permutation).
    Example(usize),
}

/// One coalition of one example.
#[derive(Debug, Clone)]
pub struct Query {
    pub ex: usize,
    /// `present[i]`: feature `i` keeps the input's values.
    pub present: Vec<bool>,
    pub fill: Fill,
}

impl Query {
    pub fn new(ex: usize, present: Vec<bool>) -> Query {
        Query { ex, present, fill: Fill::Baseline }
    }
}

/// A batch of examples with their baselines, masks and resolved target.
pub struct Game<'a> {
    pub model: &'a dyn Classifier,
    /// Resolved, one entry per example.
    pub target: Target,
    pub masks: Vec<Arc<FeatureMask>>,
    /// Examples and baselines, flattened, on the host.
    pub xs: Vec<Vec<f32>>,
    pub bases: Vec<Vec<f32>>,
    /// The shape of one example.
    pub dims: Vec<usize>,
    pub batch_size: usize,
    device: Device,
    evaluations: Cell<usize>,
    progress: indicatif::ProgressBar,
}

impl<'a> Game<'a> {
    /// Checks the input, resolves the target, builds the masks and the baseline.
    pub fn new(
        method: &str,
        model: &'a dyn Classifier,
        inputs: &Tensor,
        target: &Target,
        features: &Features,
    ) -> Result<Game<'a>> {
        let target = prepare(model, inputs, target)?;
        let xs_t = inputs.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let masks = features.mask.build(method, &xs_t)?;
        let base = one_baseline(method, &features.baselines)?.materialize(model, &xs_t, 0, 0)?;
        let batch_size = features.batch_size;
        let rows = |t: &Tensor| -> Result<Vec<Vec<f32>>> { Ok(t.flatten_from(1)?.to_vec2::<f32>()?) };
        Ok(Game {
            model,
            target,
            masks,
            xs: rows(&xs_t)?,
            bases: rows(&base)?,
            dims: inputs.dims()[1..].to_vec(),
            batch_size,
            device: model.device().clone(),
            evaluations: Cell::new(0),
            progress: indicatif::ProgressBar::hidden(),
        })
    }

    pub fn len(&self) -> usize {
        self.xs.len()
    }

    /// Forward passes (coalitions evaluated) so far.
    pub fn evaluations(&self) -> usize {
        self.evaluations.get()
    }

    /// Shows a progress bar of `total` coalitions (hidden when short or not a terminal).
    pub fn show_progress(&mut self, total: usize, what: &str) {
        if total >= 2048 {
            let pb = indicatif::ProgressBar::new(total as u64);
            if let Ok(s) = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} forwards ({eta}) {msg}") {
                pb.set_style(s);
            }
            pb.set_prefix(what.to_string());
            self.progress = pb;
        }
    }

    pub fn progress(&self) -> &indicatif::ProgressBar {
        &self.progress
    }

    /// The worth of each query: the target objective of the composed input.
    pub fn eval(&self, queries: &[Query]) -> Result<Vec<f64>> {
        let d: usize = self.dims.iter().product();
        let mut out = Vec::with_capacity(queries.len());
        for r in chunks(queries.len(), self.batch_size) {
            let qs = &queries[r];
            let mut data = Vec::with_capacity(qs.len() * d);
            for q in qs {
                let x = &self.xs[q.ex];
                let fill = match q.fill {
                    Fill::Baseline => &self.bases[q.ex],
                    Fill::Example(j) => &self.xs[j],
                };
                let ids = &self.masks[q.ex].ids;
                data.extend(ids.iter().enumerate().map(|(j, &f)| if q.present[f as usize] { x[j] } else { fill[j] }));
            }
            let exs: Vec<usize> = qs.iter().map(|q| q.ex).collect();
            out.extend(self.eval_rows(&exs, data)?);
        }
        Ok(out)
    }

    /// The objective of composed inputs `data` (`exs.len()` examples, flattened, at
    /// most `batch_size`), row `i` scored for example `exs[i]`'s target.
    pub fn eval_rows(&self, exs: &[usize], data: Vec<f32>) -> Result<Vec<f64>> {
        let mut shape = vec![exs.len()];
        shape.extend(&self.dims);
        let t = Tensor::from_vec(data, shape, &Device::Cpu)?.to_device(&self.device)?;
        let (obj, _) = objective(self.model, &t, &self.rows_target(exs.iter().copied()), ForwardOptions::default())?;
        let v = obj.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::msg(format!("model '{}': the objective is NaN or infinite", self.model.info().name)));
        }
        self.evaluations.set(self.evaluations.get() + exs.len());
        self.progress.inc(exs.len() as u64);
        Ok(v)
    }

    /// The worths of coalition sets, one set per example (`sets[ex]`), evaluated
    /// together with a progress bar and split back per example.
    pub fn eval_sets(&mut self, what: &str, sets: &[Vec<Vec<bool>>]) -> Result<Vec<Vec<f64>>> {
        let qs: Vec<Query> =
            sets.iter().enumerate().flat_map(|(ex, zs)| zs.iter().map(move |z| Query::new(ex, z.clone()))).collect();
        self.show_progress(qs.len(), what);
        let v = self.eval(&qs)?;
        self.progress.finish_and_clear();
        let mut rest = v.as_slice();
        Ok(sets
            .iter()
            .map(|zs| {
                let (head, tail) = rest.split_at(zs.len());
                rest = tail;
                head.to_vec()
            })
            .collect())
    }

    /// `f(x)` and `f(baseline)` of every example.
    pub fn endpoints(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut qs = vec![];
        for (ex, m) in self.masks.iter().enumerate() {
            qs.push(Query::new(ex, vec![true; m.n]));
            qs.push(Query::new(ex, vec![false; m.n]));
        }
        let v = self.eval(&qs)?;
        Ok((v.iter().step_by(2).copied().collect(), v.iter().skip(1).step_by(2).copied().collect()))
    }

    /// The target of rows that belong to examples `exs`.
    fn rows_target(&self, exs: impl Iterator<Item = usize>) -> Target {
        let exs: Vec<usize> = exs.collect();
        match &self.target {
            Target::Classes(v) => Target::Classes(exs.iter().map(|&e| v[e]).collect()),
            Target::Contrast { a, b } => {
                Target::Contrast { a: exs.iter().map(|&e| a[e]).collect(), b: exs.iter().map(|&e| b[e]).collect() }
            }
            other => other.clone(),
        }
    }

    /// The attribution tensor `[B, ...]` from per-example feature values, and the
    /// mask as a tensor of ids (for rendering).
    pub fn assemble(&self, inputs: &Tensor, values: &[Vec<f64>]) -> Result<(Tensor, Tensor)> {
        let mut attr = Vec::with_capacity(self.xs.len() * self.xs[0].len());
        let mut ids = Vec::with_capacity(attr.capacity());
        for (m, v) in self.masks.iter().zip(values) {
            attr.extend(m.spread(v));
            ids.extend(m.ids.iter().map(|&i| i as f32));
        }
        let a = Tensor::from_vec(attr, inputs.shape(), &Device::Cpu)?.to_device(inputs.device())?;
        let m = Tensor::from_vec(ids, inputs.shape(), &Device::Cpu)?;
        Ok((a, m))
    }
}

/// The one baseline a Shapley-family method takes.
pub fn one_baseline(method: &str, b: &[Baseline]) -> Result<Baseline> {
    match b {
        [one] if !matches!(one, Baseline::Uniform) => Ok(one.clone()),
        [Baseline::Uniform] => Err(Error::bad_param(method, "baseline", "'uniform' is not a fixed baseline; use zero, constant, blur or tensor")),
        _ => Err(Error::bad_param(method, "baseline", format!("takes one baseline, got {}", b.len()))),
    }
}

/// Per-example diagnostics shared by the family, as JSON arrays.
pub fn efficiency_gaps(values: &[Vec<f64>], f_x: &[f64], f_b: &[f64]) -> Vec<f64> {
    values.iter().zip(f_x.iter().zip(f_b)).map(|(v, (fx, fb))| v.iter().sum::<f64>() - (fx - fb)).collect()
}
