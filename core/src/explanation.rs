//! The result of an attribution method.

use crate::target::Target;
use crate::{Error, Result};
use candle_core::Tensor;
use serde_json::Value;
use std::collections::BTreeMap;

/// Named tensors plus everything needed to reproduce and judge them.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// `attribution` (same shape as the input) and method-specific extras.
    pub tensors: BTreeMap<String, Tensor>,
    /// The resolved target.
    pub target: Target,
    pub method: String,
    /// Resolved parameters, as they would be written on a command line.
    pub params: BTreeMap<String, String>,
    pub seed: Option<u64>,
    /// Facts several methods share, typed: what the host reads.
    pub facts: Facts,
    /// Every diagnostic as JSON (sidecar files, scripts): the typed facts, written
    /// through by their builders under their historical keys, plus method-specific extras.
    pub diagnostics: BTreeMap<String, Value>,
}

/// Diagnostics that more than one method reports, typed so hosts need no JSON keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Completeness (Integrated Gradients): attributions sum to `f(x) − f(baseline)`.
    pub completeness: Option<Completeness>,
    /// Summation-to-delta (DeepLIFT): contributions sum to `f(x) − f(reference)`.
    pub summation: Option<SummationToDelta>,
    /// One solver run per example (CDeepEx, xGEMs).
    pub solver_runs: Vec<SolverRun>,
    pub timings: Option<Timings>,
    /// Window-based perturbation (occlusion, PDA).
    pub perturbation: Option<Perturbation>,
}

/// Per example: the attribution sum minus the output difference it should equal.
#[derive(Debug, Clone, PartialEq)]
pub struct Completeness {
    pub delta: Vec<f64>,
    /// `delta / |f(x) − f(baseline)|`.
    pub relative: Vec<f64>,
    /// Target output at the input and (mean) at the baseline.
    pub f_input: Vec<f64>,
    pub f_baseline: Vec<f64>,
}

/// Per example: DeepLIFT's `Δt`, the sum of contributions and their difference.
#[derive(Debug, Clone, PartialEq)]
pub struct SummationToDelta {
    pub delta: Vec<f32>,
    pub sum: Vec<f32>,
    /// `sum − delta`.
    pub error: Vec<f32>,
    /// The largest `|error| / max(|delta|, 1e-6)`.
    pub max_relative_error: f32,
}

/// One step of an iterative contrast solver.
#[derive(Debug, Clone, PartialEq)]
pub struct SolverStep {
    pub llh_true: f64,
    pub llh_probe: f64,
    /// The highest log-likelihood among the other classes, and which class.
    pub llh_other: f64,
    pub other_class: usize,
    pub violation: f64,
    pub penalty: f64,
    pub distance2: f64,
}

/// How a constrained solver ended on one example, with its trace.
#[derive(Debug, Clone, PartialEq)]
pub struct SolverRun {
    /// Feasible within tolerance at the end.
    pub success: bool,
    pub violation: f64,
    pub outer_iters: usize,
    pub inner_iters: u64,
    pub cost_evals: u64,
    pub inner_failures: usize,
    pub last_inner_status: String,
    /// At the solution some class other than the true and the probe class wins.
    pub third_class_wins: bool,
    pub true_class: usize,
    pub probe: usize,
    /// Reconstruction error of the starting point (a generator's inversion).
    pub inversion_mse: f64,
    pub trace: Vec<SolverStep>,
}

impl SolverRun {
    /// The run as JSON, the shape of `diagnostics["examples"][i]`.
    pub fn to_json(&self) -> Value {
        let col = |f: fn(&SolverStep) -> f64| self.trace.iter().map(f).collect::<Vec<_>>();
        serde_json::json!({
            "success": self.success,
            "violation": self.violation,
            "outer_iters": self.outer_iters,
            "inner_iters": self.inner_iters,
            "cost_evals": self.cost_evals,
            "inner_failures": self.inner_failures,
            "last_inner_status": self.last_inner_status,
            "third_class_wins": self.third_class_wins,
            "distance2": self.trace.last().map(|t| t.distance2),
            "trace": {
                "llh_true": col(|t| t.llh_true),
                "llh_probe": col(|t| t.llh_probe),
                "llh_other": col(|t| t.llh_other),
                "other_class": self.trace.iter().map(|t| t.other_class).collect::<Vec<_>>(),
                "violation": col(|t| t.violation),
                "penalty": col(|t| t.penalty),
            },
            "true": self.true_class,
            "probe": self.probe,
            "inversion_mse": self.inversion_mse,
        })
    }
}

/// Wall-clock time of a call, split into named phases where the method measures them.
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    pub seconds: f64,
    /// `(phase, seconds)`, written as `{phase}_seconds`.
    pub phases: Vec<(String, f64)>,
    /// Examples through the model.
    pub forward_passes: Option<usize>,
}

/// A sliding-window perturbation.
#[derive(Debug, Clone, PartialEq)]
pub struct Perturbation {
    pub windows: usize,
    /// Samples per window (PDA).
    pub samples: Option<usize>,
    /// The model's probability of the target class at each input.
    pub p_target: Option<Vec<f64>>,
}

impl Explanation {
    pub fn new(method: impl Into<String>, attribution: Tensor, target: Target) -> Self {
        let mut tensors = BTreeMap::new();
        tensors.insert("attribution".to_string(), attribution);
        Explanation {
            tensors,
            target,
            method: method.into(),
            params: BTreeMap::new(),
            seed: None,
            facts: Facts::default(),
            diagnostics: BTreeMap::new(),
        }
    }

    pub fn attribution(&self) -> &Tensor {
        &self.tensors["attribution"]
    }

    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| Error::Unknown {
            kind: "explanation tensor",
            name: name.into(),
            known: self.tensors.keys().cloned().collect(),
        })
    }

    pub fn with_tensor(mut self, name: &str, t: Tensor) -> Self {
        self.tensors.insert(name.into(), t);
        self
    }

    pub fn with_params(mut self, p: BTreeMap<String, String>) -> Self {
        self.params = p;
        self
    }

    pub fn with_diag(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.diagnostics.insert(key.into(), v.into());
        self
    }

    /// Sets the completeness fact (and its diagnostics).
    pub fn with_completeness(mut self, c: Completeness) -> Self {
        self = self
            .with_diag("completeness_delta", c.delta.clone())
            .with_diag("completeness_delta_relative", c.relative.clone())
            .with_diag("f_input", c.f_input.clone())
            .with_diag("f_baseline", c.f_baseline.clone());
        self.facts.completeness = Some(c);
        self
    }

    /// Sets the summation-to-delta fact (and its diagnostics).
    pub fn with_summation(mut self, s: SummationToDelta) -> Self {
        self = self
            .with_diag("delta", s.delta.clone())
            .with_diag("sum_contributions", s.sum.clone())
            .with_diag("summation_to_delta", s.error.clone())
            .with_diag("max_relative_summation_error", s.max_relative_error);
        self.facts.summation = Some(s);
        self
    }

    /// Sets the per-example solver runs (diagnostics `examples`).
    pub fn with_solver_runs(mut self, runs: Vec<SolverRun>) -> Self {
        self = self.with_diag("examples", Value::Array(runs.iter().map(SolverRun::to_json).collect()));
        self.facts.solver_runs = runs;
        self
    }

    /// Sets the timings (diagnostics `seconds`, `{phase}_seconds`, `forward_passes`).
    pub fn with_timings(mut self, t: Timings) -> Self {
        if let Some(n) = t.forward_passes {
            self = self.with_diag("forward_passes", n);
        }
        self = self.with_diag("seconds", t.seconds);
        for (phase, s) in &t.phases {
            self = self.with_diag(&format!("{phase}_seconds"), *s);
        }
        self.facts.timings = Some(t);
        self
    }

    /// Sets the perturbation fact (diagnostics `windows`, `samples`, `p_target`).
    pub fn with_perturbation(mut self, p: Perturbation) -> Self {
        self = self.with_diag("windows", p.windows);
        if let Some(s) = p.samples {
            self = self.with_diag("samples", s);
        }
        if let Some(pt) = &p.p_target {
            self = self.with_diag("p_target", pt.clone());
        }
        self.facts.perturbation = Some(p);
        self
    }

    /// A JSON summary (no tensors) for reports and sidecar files.
    pub fn summary_json(&self) -> Value {
        serde_json::json!({
            "method": self.method,
            "params": self.params,
            "seed": self.seed,
            "target": serde_json::to_value(&self.target).unwrap_or(Value::Null),
            "tensors": self.tensors.iter().map(|(k, t)| (k.clone(), Value::from(format!("{:?}", t.dims())))).collect::<serde_json::Map<_, _>>(),
            "diagnostics": self.diagnostics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::{DType, Device};

    fn expl() -> Explanation {
        let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        Explanation::new("m", t, Target::Classes(vec![0, 1]))
    }

    /// The typed facts are what the JSON diagnostics say, under the historical keys.
    #[test]
    fn typed_facts_are_written_through_to_the_diagnostics() {
        let c = Completeness { delta: vec![0.5, -0.25], relative: vec![0.1, 0.2], f_input: vec![1.0, 2.0], f_baseline: vec![0.0, 1.0] };
        let e = expl().with_completeness(c.clone());
        assert_eq!(e.facts.completeness.as_ref(), Some(&c));
        assert_eq!(e.diagnostics["completeness_delta"], serde_json::json!([0.5, -0.25]));
        assert_eq!(e.diagnostics["f_baseline"], serde_json::json!([0.0, 1.0]));

        let s = SummationToDelta { delta: vec![1.5], sum: vec![1.25], error: vec![-0.25], max_relative_error: 0.5 };
        let e = e.with_summation(s);
        assert_eq!(e.diagnostics["summation_to_delta"], serde_json::json!([-0.25]));
        assert_eq!(e.diagnostics["max_relative_summation_error"], serde_json::json!(0.5));

        let t = Timings { seconds: 2.0, phases: vec![("forward".into(), 1.5)], forward_passes: Some(7) };
        let p = Perturbation { windows: 4, samples: None, p_target: Some(vec![0.75]) };
        let e = e.with_timings(t).with_perturbation(p);
        assert_eq!(e.diagnostics["forward_seconds"], serde_json::json!(1.5));
        assert_eq!(e.diagnostics["forward_passes"], serde_json::json!(7));
        assert_eq!(e.diagnostics["windows"], serde_json::json!(4));
        assert!(!e.diagnostics.contains_key("samples"));
        assert_eq!(e.summary_json()["diagnostics"]["p_target"], serde_json::json!([0.75]));
    }

    #[test]
    fn solver_runs_serialise_their_trace_by_column() {
        let step = |v: f64| SolverStep {
            llh_true: -v,
            llh_probe: v,
            llh_other: 0.0,
            other_class: 3,
            violation: v / 2.0,
            penalty: 1.0,
            distance2: v * v,
        };
        let run = SolverRun {
            success: true,
            violation: 0.0,
            outer_iters: 2,
            inner_iters: 9,
            cost_evals: 20,
            inner_failures: 0,
            last_inner_status: "converged".into(),
            third_class_wins: false,
            true_class: 1,
            probe: 7,
            inversion_mse: 0.25,
            trace: vec![step(1.0), step(2.0)],
        };
        let e = expl().with_solver_runs(vec![run.clone()]);
        assert_eq!(e.facts.solver_runs, vec![run]);
        let j = &e.diagnostics["examples"][0];
        assert_eq!(j["trace"]["llh_probe"], serde_json::json!([1.0, 2.0]));
        assert_eq!(j["trace"]["other_class"], serde_json::json!([3, 3]));
        assert_eq!((j["distance2"].clone(), j["true"].clone(), j["probe"].clone()), (4.0.into(), 1.into(), 7.into()));
    }
}
