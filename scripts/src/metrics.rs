//! Evaluation metrics in scripts, built through the registry like methods:
//!
//! ```rhai
//! let del = metric("deletion", #{steps: 20});
//! let e = explain(net, xs, method("saliency"), #{target: labels});
//! let r = evaluate(net, xs, e, del);                       // targets from `e`
//! let q = evaluate(net, xs, random(xs.shape, 0), del, #{target: labels});
//! let s = evaluate(net, xs, e, metric("sanity_randomization"), #{method: method("saliency")});
//! print(r.mean);
//! ```
//!
//! `evaluate(model, inputs, explanation_or_map, metric[, options])` returns a map:
//! `metric`, `mean` (of the non-NaN headline scores), `higher_is_better`,
//! `per_example`, `curves` and `curve_x` (or `()`), `layers` (per step: `layer`,
//! `step`, `spearman`, `ssim` as means and `*_per_example`, or `()`), `extra` (name →
//! per-example array) and `notes`. Options: `target` (required with a bare map;
//! default: the explanation's classes), `method` (for metrics that explain again),
//! `masks` (localization), `seed`.
//!
//! `eval_data(kind, n, seed)` draws the examples `lumen eval --data KIND` evaluates
//! (from lumen-eval): a map of `inputs`, `targets` (or `()` for the predicted class),
//! `labels`, `index`, `masks` (ground truth, or `()`) and `description`.
//! `stats(values)` gives the report's `mean`, `std` (sample), `n` and `ci95` of the
//! finite values.

use crate::api::Host;
use crate::convert::{as_usize, lift, params_from_map, rt, target_from, RResult};
use crate::types::{ExplanationValue, MethodSpec, ModelValue, TensorValue};
use lumen_core::candle::Tensor;
use lumen_core::metric::{nan_mean, MetricInput, MetricOutput};
use lumen_core::{Classifier, Metric, Params};
use rhai::{Array, Dynamic, Engine, Map, FLOAT};
use std::rc::Rc;
use std::sync::Arc;

/// A metric with its parameters, checked against its schema.
#[derive(Clone)]
pub struct MetricSpec {
    pub name: String,
    pub metric: Arc<dyn Metric>,
}

fn build(host: &Host, name: &str, params: Params) -> RResult<MetricSpec> {
    let m = lift(host.registry.build_metric(name, &params))?;
    Ok(MetricSpec { name: name.to_string(), metric: Arc::from(m) })
}

fn floats(v: &[f64]) -> Dynamic {
    Dynamic::from_array(v.iter().map(|x| Dynamic::from_float(*x as FLOAT)).collect())
}

/// A metric's output as a script map.
pub fn output_map(out: &MetricOutput, higher_is_better: bool) -> Map {
    let mut m = Map::new();
    m.insert("metric".into(), out.metric.clone().into());
    m.insert("mean".into(), Dynamic::from_float(out.mean()));
    m.insert("higher_is_better".into(), higher_is_better.into());
    m.insert("per_example".into(), floats(&out.per_example));
    let curves = out.curves.as_ref().map(|c| Dynamic::from_array(c.iter().map(|v| floats(v)).collect()));
    m.insert("curves".into(), curves.unwrap_or(Dynamic::UNIT));
    m.insert("curve_x".into(), out.curve_x.as_ref().map(|x| floats(x)).unwrap_or(Dynamic::UNIT));
    let layers = out.layers.as_ref().map(|ls| {
        Dynamic::from_array(
            ls.iter()
                .map(|l| {
                    let mut lm = Map::new();
                    lm.insert("layer".into(), l.layer.clone().into());
                    lm.insert("step".into(), (l.step as rhai::INT).into());
                    lm.insert("spearman".into(), Dynamic::from_float(nan_mean(&l.spearman)));
                    lm.insert("ssim".into(), Dynamic::from_float(nan_mean(&l.ssim)));
                    lm.insert("spearman_per_example".into(), floats(&l.spearman));
                    lm.insert("ssim_per_example".into(), floats(&l.ssim));
                    Dynamic::from_map(lm)
                })
                .collect(),
        )
    });
    m.insert("layers".into(), layers.unwrap_or(Dynamic::UNIT));
    let extra: Map = out.extra.iter().map(|(k, v)| (k.as_str().into(), floats(v))).collect();
    m.insert("extra".into(), extra.into());
    let notes: Array = out.notes.iter().map(|n| n.clone().into()).collect();
    m.insert("notes".into(), notes.into());
    m
}

/// Adds a batch dimension to a single example.
fn batched(model: &dyn Classifier, x: &Tensor) -> RResult<Tensor> {
    let x = x.to_device(model.device()).map_err(rt)?;
    if x.rank() == model.info().input_shape.len() {
        x.unsqueeze(0).map_err(rt)
    } else {
        Ok(x)
    }
}

/// Runs `metric` on `inputs` and the map (a tensor, or an explanation's attribution).
pub fn evaluate(model: &ModelValue, x: &Tensor, explained: &Dynamic, spec: &MetricSpec, opts: &Map) -> RResult<Map> {
    const KNOWN: &[&str] = &["target", "method", "masks", "seed"];
    if let Some(k) = opts.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(rt(format!("evaluate: unknown option '{k}' (known: {})", KNOWN.join(", "))));
    }
    let model = &*model.0;
    let xs = batched(model, x)?;
    let b = xs.dim(0).map_err(rt)?;
    let (attr, from_expl) = if let Some(e) = explained.clone().try_cast::<ExplanationValue>() {
        (e.0.attribution().clone(), Some(e.0.target.clone()))
    } else if let Some(t) = explained.clone().try_cast::<TensorValue>() {
        (t.0, None)
    } else {
        return Err(rt(format!("evaluate: expected an explanation or a tensor, got {}", explained.type_name())));
    };
    let attr = batched(model, &attr)?;
    let target = match (opts.get("target"), from_expl) {
        (Some(t), _) => target_from(t, b)?,
        (None, Some(t)) => t,
        (None, None) => return Err(rt("evaluate: a bare map needs #{target: ...} (classes or \"predicted\")")),
    };
    let target = lift(target.resolve(model, &xs))?;
    let classes = target
        .classes()
        .ok_or_else(|| rt("evaluate: metrics judge class targets; this explanation has a hidden-unit target"))?
        .to_vec();
    let method = match opts.get("method") {
        Some(d) => Some(
            d.clone()
                .try_cast::<MethodSpec>()
                .ok_or_else(|| rt(format!("evaluate: 'method' must be a method, got {}", d.type_name())))?,
        ),
        None => None,
    };
    let masks = match opts.get("masks") {
        Some(d) => Some(
            d.clone()
                .try_cast::<TensorValue>()
                .ok_or_else(|| rt(format!("evaluate: 'masks' must be a tensor, got {}", d.type_name())))?
                .0,
        ),
        None => None,
    };
    let seed = match opts.get("seed") {
        Some(d) => as_usize(d, "seed")? as u64,
        None => 0,
    };
    let mut input = MetricInput::new(model, &xs, &classes, &attr).with_seed(seed);
    if let Some(m) = &method {
        input = input.with_method(&*m.attributor);
    }
    if let Some(m) = &masks {
        input = input.with_masks(m);
    }
    let out = lift(spec.metric.evaluate(&input))?;
    Ok(output_map(&out, spec.metric.higher_is_better()))
}

fn ints(v: &[usize]) -> Dynamic {
    Dynamic::from_array(v.iter().map(|x| Dynamic::from_int(*x as rhai::INT)).collect())
}

/// `eval_data(kind, n, seed)`: the evaluation's data set, with masks where it has them.
pub fn eval_data(host: &Host, kind: &str, n: usize, seed: u64) -> RResult<Map> {
    let d = lumen_eval::data::load(kind, n, seed, &host.device).map_err(|e| rt(format!("eval_data: {e}")))?;
    if d.xs.elem_count() > host.max_tensor_elements {
        return Err(rt(format!("eval_data: {n} examples exceed the tensor size limit of {}", host.max_tensor_elements)));
    }
    let mut m = Map::new();
    m.insert("inputs".into(), Dynamic::from(TensorValue(d.xs)));
    m.insert("targets".into(), d.targets.as_deref().map(ints).unwrap_or(Dynamic::UNIT));
    m.insert("labels".into(), ints(&d.labels));
    m.insert("index".into(), ints(&d.index));
    m.insert("masks".into(), d.masks.map(|t| Dynamic::from(TensorValue(t))).unwrap_or(Dynamic::UNIT));
    m.insert("description".into(), d.description.into());
    Ok(m)
}

/// `stats(values)`: the report's summary of the finite values.
pub fn stats_map(values: &Array) -> RResult<Map> {
    let v: Vec<f64> = values
        .iter()
        .map(|x| x.as_float().or_else(|_| x.as_int().map(|i| i as FLOAT)).map_err(|t| rt(format!("stats: {t} is not a number"))))
        .collect::<RResult<_>>()?;
    let s = lumen_eval::report::stats(&v);
    let mut m = Map::new();
    m.insert("mean".into(), Dynamic::from_float(s.mean));
    m.insert("std".into(), Dynamic::from_float(s.std));
    m.insert("n".into(), Dynamic::from_int(s.n as rhai::INT));
    m.insert("ci95".into(), Dynamic::from_float(s.ci95()));
    Ok(m)
}

pub fn register(engine: &mut Engine, host: &Rc<Host>) {
    engine.register_type_with_name::<MetricSpec>("Metric");
    let h = host.clone();
    engine.register_fn("eval_data", move |kind: &str, n: rhai::INT, seed: rhai::INT| -> RResult<Map> {
        let n = as_usize(&n.into(), "eval_data")?;
        let seed = as_usize(&seed.into(), "eval_data")? as u64;
        eval_data(&h, kind, n, seed)
    });
    engine.register_fn("stats", |values: Array| stats_map(&values));
    let h = host.clone();
    engine.register_fn("metric", move |name: &str| build(&h, name, Params::new()));
    let h = host.clone();
    engine.register_fn("metric", move |name: &str, p: Map| build(&h, name, params_from_map(name, &p)?));
    engine.register_fn("to_string", |m: &mut MetricSpec| format!("Metric({})", m.name));
    engine.register_get("name", |m: &mut MetricSpec| m.name.clone());
    engine.register_get("params", |m: &mut MetricSpec| -> Map {
        m.metric.params().into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    });
    let h = host.clone();
    engine.register_fn("metrics", move || -> Array { h.registry.metric_names().into_iter().map(Into::into).collect() });
    let h = host.clone();
    engine.register_fn("has_metric", move |name: &str| h.registry.metric(name).is_ok());
    engine.register_fn("evaluate", |m: ModelValue, x: TensorValue, e: Dynamic, s: MetricSpec| {
        evaluate(&m, &x.0, &e, &s, &Map::new())
    });
    engine.register_fn("evaluate", |m: ModelValue, x: TensorValue, e: Dynamic, s: MetricSpec, o: Map| {
        evaluate(&m, &x.0, &e, &s, &o)
    });
}
