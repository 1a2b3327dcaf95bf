//! The latent contrast problem (CDeepEx eq. 2) and its augmented-Lagrangian solver
//! (Bertsekas, Nonlinear Programming, §4.2).
//!
//! Problem, for one example with residual `δ = G(z₀) − I` and
//! `llh = log_softmax(D(G(z) − δ))`:
//!
//! ```text
//! min_z ‖z − z₀‖²
//! s.t.  h(z)    = llh_t − llh_p                 = 0
//!       g_i(z)  = llh_i − llh_t + margin        ≤ 0   (every i ∉ {t, p})
//!       g'_i(z) = llh_i − llh_p + margin        ≤ 0
//! ```
//!
//! xGEMs keeps only `h`. The augmented Lagrangian is
//! `L_c = f + λh + (c/2)h² + (1/2c) Σ_j (max(0, μ_j + c g_j)² − μ_j²)`;
//! each inner minimisation over `z` is solved by argmin's L-BFGS (Moré–Thuente
//! line search) with cost and gradient from candle autograd through `D∘G`. The outer
//! loop updates `λ ← λ + c h`, `μ_j ← max(0, μ_j + c g_j)` and multiplies `c` when
//! the violation did not shrink enough.

use argmin::core::{CostFunction, Executor, Gradient as ArgGradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use lumen_core::candle::{DType, Tensor, Var, D};
use lumen_core::candle_nn::ops::log_softmax;
use lumen_core::generator::Generator;
use lumen_core::{Classifier, Error, Result};
use std::sync::Mutex;

/// Solver settings shared by CDeepEx and xGEMs.
#[derive(Debug, Clone)]
pub struct SolverConfig {
    /// Keep the inequality constraints (CDeepEx) or drop them (xGEMs).
    pub inequalities: bool,
    /// How far below `llh_t` and `llh_p` every other class must stay.
    pub margin: f64,
    /// Constraint violation accepted as feasible.
    pub tol: f64,
    pub outer_iters: usize,
    /// L-BFGS iterations per inner minimisation.
    pub inner_iters: usize,
    pub lbfgs_memory: usize,
    /// Initial penalty `c`.
    pub penalty: f64,
    /// Factor applied to `c` when the violation did not drop below a quarter.
    pub penalty_growth: f64,
    pub penalty_max: f64,
}

impl Default for SolverConfig {
    fn default() -> Self {
        SolverConfig {
            inequalities: true,
            margin: 0.1,
            tol: 1e-3,
            outer_iters: 20,
            inner_iters: 25,
            lbfgs_memory: 7,
            penalty: 1.0,
            penalty_growth: 5.0,
            penalty_max: 1e5,
        }
    }
}

/// One point of the solver trace (after each outer iteration; index 0 is `z₀`).
#[derive(Debug, Clone)]
pub struct TracePoint {
    pub llh_true: f64,
    pub llh_probe: f64,
    /// The highest log-likelihood among the other classes, and which class.
    pub llh_other: f64,
    pub other: usize,
    pub violation: f64,
    pub penalty: f64,
    pub distance2: f64,
}

/// The result for one example.
#[derive(Debug, Clone)]
pub struct Solution {
    pub z: Vec<f64>,
    /// Feasible within `tol` at the end.
    pub success: bool,
    pub violation: f64,
    pub outer_iters: usize,
    pub inner_iters: u64,
    pub cost_evals: u64,
    /// Inner runs that stopped on an argmin error (kept the previous point).
    pub inner_failures: usize,
    /// How the last inner L-BFGS run ended (argmin's termination status).
    pub last_inner_status: String,
    /// At `z_e` some class other than true and probe has the highest likelihood.
    pub third_class_wins: bool,
    pub trace: Vec<TracePoint>,
}

impl Solution {
    /// The run as the shared typed solver diagnostic.
    pub fn to_run(&self, true_class: usize, probe: usize, inversion_mse: f64) -> lumen_core::explanation::SolverRun {
        lumen_core::explanation::SolverRun {
            success: self.success,
            violation: self.violation,
            outer_iters: self.outer_iters,
            inner_iters: self.inner_iters,
            cost_evals: self.cost_evals,
            inner_failures: self.inner_failures,
            last_inner_status: self.last_inner_status.clone(),
            third_class_wins: self.third_class_wins,
            true_class,
            probe,
            inversion_mse,
            trace: self
                .trace
                .iter()
                .map(|t| lumen_core::explanation::SolverStep {
                    llh_true: t.llh_true,
                    llh_probe: t.llh_probe,
                    llh_other: t.llh_other,
                    other_class: t.other,
                    violation: t.violation,
                    penalty: t.penalty,
                    distance2: t.distance2,
                })
                .collect(),
        }
    }
}

/// The contrast problem for one example.
pub struct LatentProblem<'a> {
    pub gen: &'a dyn Generator,
    pub model: &'a dyn Classifier,
    /// `δ = G(z₀) − I`, `[1, ...]`.
    pub delta: Tensor,
    pub z0: Vec<f64>,
    pub true_class: usize,
    pub probe: usize,
    pub margin: f64,
    pub inequalities: bool,
}

/// The pieces of the problem at one `z`, as tensors (differentiable in `z`).
struct Terms {
    f: Tensor,
    h: Tensor,
    /// `[m]` inequality values, `None` when there are none.
    g: Option<Tensor>,
    llh: Tensor,
}

impl LatentProblem<'_> {
    fn others(&self) -> Vec<usize> {
        let k = self.model.info().num_classes();
        (0..k).filter(|&i| i != self.true_class && i != self.probe).collect()
    }

    fn z_tensor(&self, z: &[f64]) -> Result<Tensor> {
        let v: Vec<f32> = z.iter().map(|x| *x as f32).collect();
        Ok(Tensor::from_vec(v, (1, z.len()), self.delta.device())?)
    }

    fn terms(&self, z: &Tensor) -> Result<Terms> {
        let x = (self.gen.generate(z)? - &self.delta)?;
        let logits = self.model.forward(&x)?;
        let llh = log_softmax(&logits, D::Minus1)?.squeeze(0)?.to_dtype(DType::F32)?;
        let z0 = self.z_tensor(&self.z0)?;
        let f = (z - z0)?.sqr()?.sum_all()?;
        let lt = llh.narrow(0, self.true_class, 1)?;
        let lp = llh.narrow(0, self.probe, 1)?;
        let h = (&lt - &lp)?.squeeze(0)?;
        let others = self.others();
        let g = if self.inequalities && !others.is_empty() {
            let idx = Tensor::from_vec(others.iter().map(|&i| i as u32).collect::<Vec<_>>(), others.len(), llh.device())?;
            let lo = llh.index_select(&idx, 0)?;
            let g1 = (lo.broadcast_sub(&lt)? + self.margin)?;
            let g2 = (lo.broadcast_sub(&lp)? + self.margin)?;
            Some(Tensor::cat(&[g1, g2], 0)?)
        } else {
            None
        };
        Ok(Terms { f, h, g, llh })
    }

    /// Values at `z`: (f, h, g, llh).
    pub fn values(&self, z: &[f64]) -> Result<(f64, f64, Vec<f64>, Vec<f64>)> {
        let t = self.terms(&self.z_tensor(z)?)?;
        let g = match &t.g {
            Some(g) => to_f64(g)?,
            None => vec![],
        };
        Ok((scalar(&t.f)?, scalar(&t.h)?, g, to_f64(&t.llh)?))
    }

    /// The augmented Lagrangian and its gradient in `z`.
    fn lagrangian(&self, z: &[f64], lam: f64, mu: &[f64], c: f64) -> Result<(f64, Vec<f64>)> {
        let var = Var::from_tensor(&self.z_tensor(z)?)?;
        let t = self.terms(var.as_tensor())?;
        let mut l = ((&t.f + (&t.h * lam)?)? + (t.h.sqr()? * (c / 2.0))?)?;
        if let Some(g) = &t.g {
            let mu_t = Tensor::from_vec(mu.iter().map(|m| *m as f32).collect::<Vec<_>>(), mu.len(), g.device())?;
            let s = ((g * c)? + &mu_t)?.relu()?.sqr()?.sum_all()?;
            let mu2: f64 = mu.iter().map(|m| m * m).sum();
            l = (l + ((s - mu2)? * (1.0 / (2.0 * c)))?)?;
        }
        let grads = l.backward()?;
        let gz = to_f64(&lumen_core::method::grad_or_zeros(&grads, var.as_tensor())?)?;
        Ok((scalar(&l)?, gz))
    }

    fn violation(&self, h: f64, g: &[f64]) -> f64 {
        g.iter().fold(h.abs(), |v, gi| v.max(gi.max(0.0)))
    }

    fn trace_point(&self, z: &[f64], penalty: f64) -> Result<(TracePoint, f64, Vec<f64>)> {
        let (f, h, g, llh) = self.values(z)?;
        let (other, llh_other) = self
            .others()
            .into_iter()
            .map(|i| (i, llh[i]))
            .fold((usize::MAX, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let tp = TracePoint {
            llh_true: llh[self.true_class],
            llh_probe: llh[self.probe],
            llh_other,
            other,
            violation: self.violation(h, &g),
            penalty,
            distance2: f,
        };
        Ok((tp, h, g))
    }

    /// Runs the augmented-Lagrangian method from `z₀`.
    pub fn solve(&self, cfg: &SolverConfig) -> Result<Solution> {
        if self.true_class == self.probe {
            return Err(Error::BadTarget(format!("true and probe class are both {}", self.true_class)));
        }
        let mut z = self.z0.clone();
        let (tp, mut h, mut g) = self.trace_point(&z, cfg.penalty)?;
        let mut trace = vec![tp];
        let mut lam = 0.0;
        let mut mu = vec![0.0; g.len()];
        let mut c = cfg.penalty;
        let mut prev_v = f64::INFINITY;
        let (mut inner_iters, mut cost_evals, mut failures, mut outer) = (0u64, 0u64, 0usize, 0usize);
        let mut last_status = String::new();
        for k in 0..cfg.outer_iters {
            outer = k + 1;
            let inner = Inner { p: self, lam, mu: mu.clone(), c, cache: Mutex::new(None), evals: Mutex::new(0) };
            let ls = MoreThuenteLineSearch::new();
            let solver = LBFGS::new(ls, cfg.lbfgs_memory.max(1))
                .with_tolerance_grad(1e-7)
                .and_then(|s| s.with_tolerance_cost(1e-12))
                .map_err(|e| Error::Solver(e.to_string()))?;
            let start = z.clone();
            let res = Executor::new(inner, solver)
                .configure(|s| s.param(start).max_iters(cfg.inner_iters as u64))
                .run();
            match res {
                Ok(r) => {
                    inner_iters += r.state().get_iter();
                    last_status = format!("{:?}", r.state().get_termination_status());
                    if let Some(p) = r.problem.problem.as_ref() {
                        cost_evals += *p.evals.lock().map_err(|_| Error::Solver("poisoned".into()))?;
                    }
                    if let Some(best) = r.state().get_best_param() {
                        if best.iter().all(|v| v.is_finite()) {
                            z = best.clone();
                        }
                    }
                }
                // A failed line search leaves the point unchanged; the multiplier and
                // penalty updates below still change the next subproblem.
                Err(e) => {
                    failures += 1;
                    last_status = format!("error: {e}");
                }
            }
            let (tp, hh, gg) = self.trace_point(&z, c)?;
            h = hh;
            g = gg;
            let v = tp.violation;
            trace.push(tp);
            lam += c * h;
            for (m, gi) in mu.iter_mut().zip(&g) {
                *m = (*m + c * gi).max(0.0);
            }
            let moved = trace.len() >= 2 && {
                let a = &trace[trace.len() - 2];
                let b = &trace[trace.len() - 1];
                (a.distance2 - b.distance2).abs() > 1e-6 * (1.0 + b.distance2)
            };
            if v <= cfg.tol && !moved {
                break;
            }
            if v > 0.25 * prev_v {
                c = (c * cfg.penalty_growth).min(cfg.penalty_max);
            }
            prev_v = v;
        }
        let violation = self.violation(h, &g);
        let last = trace.last().ok_or_else(|| Error::Solver("empty trace".into()))?;
        let third = last.llh_other > last.llh_true.max(last.llh_probe);
        Ok(Solution {
            z,
            success: violation <= cfg.tol,
            violation,
            outer_iters: outer,
            inner_iters,
            cost_evals,
            inner_failures: failures,
            last_inner_status: last_status,
            third_class_wins: third,
            trace,
        })
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0])
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// One inner subproblem for argmin. Cost and gradient come from one forward and
/// backward pass; the line search asks for both at each trial point, so the
/// gradient is cached with its parameter.
struct Inner<'a> {
    p: &'a LatentProblem<'a>,
    lam: f64,
    mu: Vec<f64>,
    c: f64,
    cache: Mutex<Option<(Vec<f64>, f64, Vec<f64>)>>,
    evals: Mutex<u64>,
}

impl Inner<'_> {
    fn eval(&self, z: &Vec<f64>) -> std::result::Result<(f64, Vec<f64>), argmin::core::Error> {
        let mut cache = self.cache.lock().map_err(|_| argmin::core::Error::msg("cache poisoned"))?;
        if let Some((p, v, g)) = cache.as_ref() {
            if p == z {
                return Ok((*v, g.clone()));
            }
        }
        let (v, g) = self.p.lagrangian(z, self.lam, &self.mu, self.c).map_err(|e| argmin::core::Error::msg(e.to_string()))?;
        // Dividing by c keeps L-BFGS's first unit step (along −∇L) short as the
        // penalty grows; the minimiser is unchanged.
        let s = 1.0 / self.c.max(1.0);
        let (v, g) = if v.is_finite() && g.iter().all(|x| x.is_finite()) {
            (v * s, g.into_iter().map(|x| x * s).collect())
        } else {
            // A step that overflowed the networks: a large finite cost makes the
            // line search shrink the step instead of aborting.
            (1e30, vec![0.0; z.len()])
        };
        if let Ok(mut n) = self.evals.lock() {
            *n += 1;
        }
        *cache = Some((z.clone(), v, g.clone()));
        Ok((v, g))
    }
}

impl CostFunction for Inner<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, z: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.eval(z)?.0)
    }
}

impl ArgGradient for Inner<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, z: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(z)?.1)
    }
}
