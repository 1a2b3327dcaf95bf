//! Completeness (summation to delta): `|Σ φ − (f(x) − f(b))|` for methods whose
//! props claim it (integrated gradients, DeepLIFT, ...), with `f` the target logit
//! and `b` a constant baseline image.
//!
//! The headline is the relative error `|Σφ − Δ| / |Δ|` (NaN when `Δ = 0`); the
//! absolute error, `Σφ` and `Δ` are in `extra`. For a method that does not claim
//! completeness every score is NaN and a note says why. Without a method the check
//! runs anyway. `baseline=auto` takes the method's `zero` / `constant` baseline
//! (`baseline_value`) and falls back to 0 with a note for any other baseline;
//! `baseline=constant` uses the metric's own `baseline_value`.

use crate::util::{host, scores, Layout, Score};
use lumen_core::metric::{MetricInput, MetricNeeds, MetricOutput};
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Metric, Result};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct CompletenessConfig {
    /// The constant baseline value; `None` = ask the method.
    pub baseline: Option<f64>,
    pub batch_size: usize,
}

impl Default for CompletenessConfig {
    fn default() -> Self {
        CompletenessConfig { baseline: None, batch_size: 256 }
    }
}

pub static COMPLETENESS_PARAMS: &[ParamSpec] = &[
    ParamSpec::new("baseline", ParamKind::Choice(&["auto", "constant"]), "auto", "auto: the method's zero/constant baseline; constant: baseline_value"),
    ParamSpec::new("baseline_value", ParamKind::Float, "0", "value of the constant baseline"),
    ParamSpec::new("batch_size", ParamKind::Int, "256", "images per forward pass").max(lumen_core::params::MAX_BATCH_SIZE),
];

#[derive(Debug, Clone, Default)]
pub struct Completeness {
    pub config: CompletenessConfig,
}

impl Completeness {
    pub fn new(config: CompletenessConfig) -> Self {
        Completeness { config }
    }
    pub fn from_args(a: &Args) -> Result<Self> {
        let baseline = match a.string("baseline")?.as_str() {
            "constant" => Some(a.f64("baseline_value")?),
            _ => None,
        };
        Ok(Completeness::new(CompletenessConfig { baseline, batch_size: a.positive("batch_size")? }))
    }
}

impl Metric for Completeness {
    fn name(&self) -> &str {
        "completeness"
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("baseline".to_string(), if self.config.baseline.is_some() { "constant" } else { "auto" }.to_string()),
            ("baseline_value".to_string(), self.config.baseline.unwrap_or(0.0).to_string()),
            ("batch_size".to_string(), self.config.batch_size.to_string()),
        ])
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        input.check("completeness")?;
        let b = input.len();
        let mut notes = vec![];
        if let Some(m) = input.method {
            if !m.props().completeness {
                let mut out = MetricOutput::new("completeness", vec![f64::NAN; b]);
                for k in ["absolute", "sum", "delta"] {
                    out.extra.insert(k.into(), vec![f64::NAN; b]);
                }
                out.notes.push(format!("not applicable: {} does not claim completeness", m.name()));
                return Ok(out);
            }
        }
        let base = match (self.config.baseline, input.method) {
            (Some(v), _) => v,
            (None, Some(m)) => {
                let p = m.params();
                match p.get("baseline").map(|s| s.as_str()) {
                    Some("zero") => 0.0,
                    Some("constant") => p.get("baseline_value").and_then(|v| v.parse().ok()).unwrap_or(0.0),
                    other => {
                        notes.push(format!(
                            "the method's baseline ({}) is not a constant; Δ uses a zero baseline",
                            other.unwrap_or("unnamed")
                        ));
                        0.0
                    }
                }
            }
            (None, None) => 0.0,
        };
        let l = Layout::of(input.inputs.dims())?;
        let n = l.n();
        let shape = &input.inputs.dims()[1..];
        let xs = host(input.inputs)?;
        let fx = scores(input.model, &xs, shape, input.targets, Score::Logit, self.config.batch_size)?;
        let fb = scores(input.model, &vec![base as f32; b * n], shape, input.targets, Score::Logit, self.config.batch_size)?;
        let attr = host(input.attributions)?;
        let (mut rel, mut abs, mut sums, mut deltas) = (vec![], vec![], vec![], vec![]);
        for i in 0..b {
            let s: f64 = attr[i * n..(i + 1) * n].iter().map(|v| *v as f64).sum();
            let d = fx[i] - fb[i];
            let e = (s - d).abs();
            abs.push(e);
            rel.push(if d != 0.0 { e / d.abs() } else { f64::NAN });
            sums.push(s);
            deltas.push(d);
        }
        let mut out = MetricOutput::new("completeness", rel);
        out.extra.insert("absolute".into(), abs);
        out.extra.insert("sum".into(), sums);
        out.extra.insert("delta".into(), deltas);
        out.notes = notes;
        Ok(out)
    }
}

lumen_core::submit_metric!(
    "completeness",
    "|Σφ − (f(x) − f(baseline))| / |f(x) − f(baseline)| for methods that claim completeness (lower is better)",
    COMPLETENESS_PARAMS,
    false,
    MetricNeeds::NONE,
    |a| Ok(Box::new(Completeness::from_args(a)?)),
);
