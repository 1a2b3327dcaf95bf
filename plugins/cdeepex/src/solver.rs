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
//!
//! A batch of examples is solved together: every example runs its own solver (its
//! own L-BFGS history, multipliers, penalty and stopping rule) on a worker thread,
//! and each worker's cost evaluations are gathered into one batched forward and
//! backward pass of `D∘G` over all examples that are still running. The rows of that
//! pass do not interact, so each example follows the iterates it would follow alone.

use argmin::core::{CostFunction, Executor, Gradient as ArgGradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use lumen_core::candle::{DType, Tensor, Var, D};
use lumen_core::candle_nn::ops::log_softmax;
use lumen_core::explanation::{SolverRun, SolverStep};
use lumen_core::generator::Generator;
use lumen_core::{Classifier, Config, Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

/// Solver settings shared by CDeepEx and xGEMs (their parameters).
#[derive(Debug, Clone, Config)]
pub struct SolverConfig {
    /// constraint violation accepted as feasible
    pub tol: f64,
    /// augmented-Lagrangian outer iterations
    #[param(positive, max = 1000)]
    pub outer_iters: usize,
    /// L-BFGS iterations per inner minimisation
    #[param(positive, max = 10_000)]
    pub inner_iters: usize,
    /// L-BFGS history length
    #[param(positive, max = 100)]
    pub lbfgs_memory: usize,
    /// initial penalty c
    pub penalty: f64,
    // Applied when the violation did not drop below a quarter of the previous one.
    /// factor on c when the violation stalls
    pub penalty_growth: f64,
    /// largest penalty
    pub penalty_max: f64,
}

impl Default for SolverConfig {
    fn default() -> Self {
        SolverConfig {
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

/// The result for one example: the point `z_e` and the run that found it (the
/// shared typed diagnostic; `inversion_mse` is the caller's to fill in).
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub z: Vec<f64>,
    pub run: SolverRun,
}

/// A solution reads as its run (`s.success`, `s.trace`, ...).
impl std::ops::Deref for Solution {
    type Target = SolverRun;
    fn deref(&self) -> &SolverRun {
        &self.run
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

impl LatentProblem<'_> {
    /// Runs the augmented-Lagrangian method from `z₀` (a batch of one).
    pub fn solve(&self, cfg: &SolverConfig) -> Result<Solution> {
        let batch = LatentBatch {
            gen: self.gen,
            model: self.model,
            delta: self.delta.clone(),
            z0: vec![self.z0.clone()],
            true_class: vec![self.true_class],
            probe: vec![self.probe],
            margin: self.margin,
            inequalities: self.inequalities,
        };
        batch.solve(cfg)?.pop().ok_or_else(|| Error::Solver("no solution".into()))
    }
}

/// Independent contrast problems on one generator and classifier, one per example.
pub struct LatentBatch<'a> {
    pub gen: &'a dyn Generator,
    pub model: &'a dyn Classifier,
    /// `δ = G(z₀) − I` per example, `[B, ...]`.
    pub delta: Tensor,
    pub z0: Vec<Vec<f64>>,
    pub true_class: Vec<usize>,
    pub probe: Vec<usize>,
    pub margin: f64,
    pub inequalities: bool,
}

/// Rows of one batched pass at most; further examples start as earlier ones finish.
const MAX_ROWS: usize = 64;

/// The multipliers and penalty of one inner subproblem.
#[derive(Clone)]
struct Mult {
    lam: f64,
    mu: Vec<f64>,
    c: f64,
}

/// One example's request: values at `z`, and with `mult` the Lagrangian and its gradient.
struct Ask {
    ex: usize,
    z: Vec<f64>,
    mult: Option<Mult>,
    reply: Sender<std::result::Result<Eval, String>>,
}

enum Msg {
    Ask(Ask),
    /// A worker has no more examples.
    Exit,
}

/// The problem's pieces at one `z` of one example.
#[derive(Clone)]
struct Eval {
    f: f64,
    h: f64,
    g: Vec<f64>,
    llh: Vec<f64>,
    /// The augmented Lagrangian and its gradient (asked with multipliers).
    l: f64,
    grad: Vec<f64>,
}

/// Sends `Exit` when a worker ends, also by a panic, so the batcher never waits on it.
struct ExitGuard(Sender<Msg>);
impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = self.0.send(Msg::Exit);
    }
}

impl LatentBatch<'_> {
    fn len(&self) -> usize {
        self.z0.len()
    }

    fn others(&self, ex: usize) -> Vec<usize> {
        let k = self.model.info().num_classes();
        (0..k).filter(|&i| i != self.true_class[ex] && i != self.probe[ex]).collect()
    }

    fn check(&self) -> Result<()> {
        let n = self.len();
        if self.true_class.len() != n || self.probe.len() != n || self.delta.dim(0)? != n {
            return Err(Error::Solver(format!(
                "{n} starting points but {} true classes, {} probes and {} residuals",
                self.true_class.len(),
                self.probe.len(),
                self.delta.dim(0)?
            )));
        }
        for (t, p) in self.true_class.iter().zip(&self.probe) {
            if t == p {
                return Err(Error::BadTarget(format!("true and probe class are both {t}")));
            }
        }
        Ok(())
    }

    /// Solves every example; the result is in example order.
    pub fn solve(&self, cfg: &SolverConfig) -> Result<Vec<Solution>> {
        self.check()?;
        let n = self.len();
        if n == 0 {
            return Ok(vec![]);
        }
        let workers = n.min(MAX_ROWS);
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Solution>>>> = Mutex::new((0..n).map(|_| None).collect());
        let others: Vec<Vec<usize>> = (0..n).map(|i| self.others(i)).collect();
        let (tx, rx) = channel::<Msg>();
        std::thread::scope(|s| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, results, others) = (&next, &results, &others);
                let (z0, trues, probes) = (&self.z0, &self.true_class, &self.probe);
                s.spawn(move || {
                    let _exit = ExitGuard(tx.clone());
                    loop {
                        let ex = next.fetch_add(1, Ordering::SeqCst);
                        if ex >= n {
                            break;
                        }
                        let one = Example {
                            ex,
                            z0: &z0[ex],
                            true_class: trues[ex],
                            probe: probes[ex],
                            others: &others[ex],
                            tx: &tx,
                        };
                        let r = one.solve(cfg);
                        if let Ok(mut slot) = results.lock() {
                            slot[ex] = Some(r);
                        }
                    }
                });
            }
            drop(tx);
            self.serve(rx, workers);
        });
        let results = results.into_inner().map_err(|_| Error::Solver("solver results poisoned".into()))?;
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|| Err(Error::Solver(format!("example {i}: its solver stopped early")))))
            .collect()
    }

    /// Answers the workers' requests: waits until every running worker has asked, then
    /// evaluates all requests in one batched pass.
    fn serve(&self, rx: Receiver<Msg>, mut workers: usize) {
        let mut pending: Vec<Ask> = vec![];
        while workers > 0 {
            if !pending.is_empty() && pending.len() == workers {
                let out = self.evaluate(&pending);
                for (i, ask) in pending.drain(..).enumerate() {
                    let r = match &out {
                        Ok(evals) => Ok(evals[i].clone()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = ask.reply.send(r);
                }
                continue;
            }
            match rx.recv() {
                Ok(Msg::Ask(a)) => pending.push(a),
                Ok(Msg::Exit) => workers -= 1,
                Err(_) => break,
            }
        }
    }

    /// One forward (and, when any request carries multipliers, one backward) pass of
    /// `D∘G` over the requested rows.
    fn evaluate(&self, asks: &[Ask]) -> Result<Vec<Eval>> {
        let n = asks.len();
        let d = asks[0].z.len();
        let dev = self.delta.device();
        let z: Vec<f32> = asks.iter().flat_map(|a| a.z.iter().map(|v| *v as f32)).collect();
        let z = Tensor::from_vec(z, (n, d), dev)?;
        let var = if asks.iter().any(|a| a.mult.is_some()) { Some(Var::from_tensor(&z)?) } else { None };
        let z = var.as_ref().map(|v| v.as_tensor().clone()).unwrap_or(z);
        let u32s = |f: &dyn Fn(&Ask) -> u32| -> Result<Tensor> {
            Ok(Tensor::from_vec(asks.iter().map(f).collect::<Vec<_>>(), (n, 1), dev)?)
        };
        let rows = u32s(&|a: &Ask| a.ex as u32)?.squeeze(1)?;
        let delta = self.delta.index_select(&rows, 0)?;
        let x = (self.gen.generate(&z)? - &delta)?;
        let logits = self.model.forward(&x)?;
        let llh = log_softmax(&logits, D::Minus1)?.to_dtype(DType::F32)?;
        let z0: Vec<f32> = asks.iter().flat_map(|a| self.z0[a.ex].iter().map(|v| *v as f32)).collect();
        let z0 = Tensor::from_vec(z0, (n, d), dev)?;
        let f = (&z - z0)?.sqr()?.sum(1)?;
        let lt = llh.gather(&u32s(&|a: &Ask| self.true_class[a.ex] as u32)?, 1)?;
        let lp = llh.gather(&u32s(&|a: &Ask| self.probe[a.ex] as u32)?, 1)?;
        let h = (&lt - &lp)?.squeeze(1)?;
        let m = self.model.info().num_classes().saturating_sub(2);
        let g = if self.inequalities && m > 0 {
            let idx: Vec<u32> = asks.iter().flat_map(|a| self.others(a.ex)).map(|i| i as u32).collect();
            let lo = llh.gather(&Tensor::from_vec(idx, (n, m), dev)?, 1)?;
            let g1 = (lo.broadcast_sub(&lt)? + self.margin)?;
            let g2 = (lo.broadcast_sub(&lp)? + self.margin)?;
            Some(Tensor::cat(&[g1, g2], 1)?)
        } else {
            None
        };
        let (fv, hv, llhv) = (to_f64(&f)?, to_f64(&h)?, rows_f64(&llh)?);
        let gv = match &g {
            Some(g) => rows_f64(g)?,
            None => vec![vec![]; n],
        };
        let (mut lv, mut gz) = (vec![f64::NAN; n], vec![vec![]; n]);
        if let Some(var) = &var {
            // Rows asked without multipliers get λ = 0, μ = 0, c = 1; their gradient is dropped.
            let mults: Vec<Mult> = asks
                .iter()
                .map(|a| a.mult.clone().unwrap_or(Mult { lam: 0.0, mu: vec![0.0; 2 * m], c: 1.0 }))
                .collect();
            let col = |f: &dyn Fn(&Mult) -> f64| -> Result<Tensor> {
                Ok(Tensor::from_vec(mults.iter().map(|k| f(k) as f32).collect::<Vec<_>>(), n, dev)?)
            };
            let mut l = ((&f + (&h * col(&|k: &Mult| k.lam)?)?)? + (h.sqr()? * col(&|k: &Mult| k.c / 2.0)?)?)?;
            if let Some(g) = &g {
                let mu: Vec<f32> = mults.iter().flat_map(|k| k.mu.iter().map(|v| *v as f32)).collect();
                let mu = Tensor::from_vec(mu, (n, 2 * m), dev)?;
                let s = (g.broadcast_mul(&col(&|k: &Mult| k.c)?.unsqueeze(1)?)? + mu)?.relu()?.sqr()?.sum(1)?;
                let mu2 = col(&|k: &Mult| k.mu.iter().map(|v| v * v).sum())?;
                l = (l + ((s - mu2)? * col(&|k: &Mult| 1.0 / (2.0 * k.c))?)?)?;
            }
            let grads = l.sum_all()?.backward()?;
            lv = to_f64(&l)?;
            gz = rows_f64(&lumen_core::method::grad_or_zeros(&grads, var.as_tensor())?)?;
        }
        let mut out = Vec::with_capacity(n);
        for (i, ((g, llh), grad)) in gv.into_iter().zip(llhv).zip(gz).enumerate() {
            out.push(Eval { f: fv[i], h: hv[i], g, llh, l: lv[i], grad });
        }
        Ok(out)
    }
}

/// One example's solver, run on a worker thread; its evaluations go to the batcher.
struct Example<'a> {
    ex: usize,
    z0: &'a [f64],
    true_class: usize,
    probe: usize,
    others: &'a [usize],
    tx: &'a Sender<Msg>,
}

impl Example<'_> {
    fn ask(&self, z: &[f64], mult: Option<Mult>) -> Result<Eval> {
        let (reply, answer) = channel();
        self.tx
            .send(Msg::Ask(Ask { ex: self.ex, z: z.to_vec(), mult, reply }))
            .map_err(|_| Error::Solver("the batched evaluator stopped".into()))?;
        answer.recv().map_err(|_| Error::Solver("the batched evaluator stopped".into()))?.map_err(Error::Solver)
    }

    fn violation(h: f64, g: &[f64]) -> f64 {
        g.iter().fold(h.abs(), |v, gi| v.max(gi.max(0.0)))
    }

    fn trace_point(&self, z: &[f64], penalty: f64) -> Result<(SolverStep, f64, Vec<f64>)> {
        let e = self.ask(z, None)?;
        let (other_class, llh_other) = self
            .others
            .iter()
            .map(|&i| (i, e.llh[i]))
            .fold((usize::MAX, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let tp = SolverStep {
            llh_true: e.llh[self.true_class],
            llh_probe: e.llh[self.probe],
            llh_other,
            other_class,
            violation: Self::violation(e.h, &e.g),
            penalty,
            distance2: e.f,
        };
        Ok((tp, e.h, e.g))
    }

    /// The augmented-Lagrangian method from `z₀`.
    fn solve(&self, cfg: &SolverConfig) -> Result<Solution> {
        let mut z = self.z0.to_vec();
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
            let inner = Inner { p: self, mult: Mult { lam, mu: mu.clone(), c }, cache: Mutex::new(None), evals: Mutex::new(0) };
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
        let violation = Self::violation(h, &g);
        let last = trace.last().ok_or_else(|| Error::Solver("empty trace".into()))?;
        let third = last.llh_other > last.llh_true.max(last.llh_probe);
        Ok(Solution {
            z,
            run: SolverRun {
                success: violation <= cfg.tol,
                violation,
                outer_iters: outer,
                inner_iters,
                cost_evals,
                inner_failures: failures,
                last_inner_status: last_status,
                third_class_wins: third,
                true_class: self.true_class,
                probe: self.probe,
                inversion_mse: 0.0,
                trace,
            },
        })
    }
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

fn rows_f64(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// One inner subproblem for argmin. Cost and gradient come from one forward and
/// backward pass; the line search asks for both at each trial point, so the
/// gradient is cached with its parameter.
struct Inner<'a> {
    p: &'a Example<'a>,
    mult: Mult,
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
        let e = self.p.ask(z, Some(self.mult.clone())).map_err(|e| argmin::core::Error::msg(e.to_string()))?;
        let (v, g) = (e.l, e.grad);
        let c = self.mult.c;
        // Dividing by c keeps L-BFGS's first unit step (along −∇L) short as the
        // penalty grows; the minimiser is unchanged.
        let s = 1.0 / c.max(1.0);
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
