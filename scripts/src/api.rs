//! Registers lumen's values and functions in a Rhai engine.

use crate::convert::*;
use crate::output;
use crate::sandbox::OutDir;
use crate::types::*;
use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::{DType, Device, Tensor, D};
use lumen_core::data::{load_input, Split};
use lumen_core::{Classifier, Explanation, ParamKind, Params, Registry};
use rhai::{Array, Dynamic, Engine, ImmutableString, Map, FLOAT, INT};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// What every bound function shares during one script run.
pub struct Host {
    pub registry: Arc<Registry>,
    pub device: Device,
    pub out: OutDir,
    pub args: Vec<String>,
    /// The most elements of one tensor a script function may create.
    pub max_tensor_elements: usize,
    /// Models load once per run, however often the script asks.
    models: RefCell<HashMap<String, Arc<dyn Classifier>>>,
    /// The bar `tick()` advances.
    bar: RefCell<Option<ProgressBar>>,
}

impl Host {
    pub fn new(registry: Arc<Registry>, device: Device, out: OutDir, args: Vec<String>) -> Host {
        Host {
            registry,
            device,
            out,
            args,
            max_tensor_elements: crate::Limits::default().max_tensor_elements,
            models: Default::default(),
            bar: Default::default(),
        }
    }

    pub fn with_max_tensor_elements(mut self, n: usize) -> Host {
        self.max_tensor_elements = n;
        self
    }

    /// Refuses a shape whose element count overflows or exceeds the maximum,
    /// before anything is allocated.
    pub fn check_numel(&self, dims: &[usize], what: &str) -> RResult<()> {
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match n {
            Some(n) if n <= self.max_tensor_elements => Ok(()),
            _ => Err(rt(format!(
                "{what}: shape {dims:?} has more than {} elements, the most a script tensor may have (--max-tensor-elements)",
                self.max_tensor_elements
            ))),
        }
    }

    /// [`dims_from`] plus [`Host::check_numel`].
    fn shape(&self, a: &Array, what: &str) -> RResult<Vec<usize>> {
        let dims = dims_from(a, what)?;
        self.check_numel(&dims, what)?;
        Ok(dims)
    }

    fn model(&self, name: &str) -> RResult<ModelValue> {
        if let Some(m) = self.models.borrow().get(name) {
            return Ok(ModelValue(m.clone()));
        }
        let m = lift(self.registry.load_model(name, &self.device))?;
        self.models.borrow_mut().insert(name.to_string(), m.clone());
        Ok(ModelValue(m))
    }

    /// Builds a method through the registry, so parameter errors are the CLI's.
    pub fn method(&self, name: &str, params: Params) -> RResult<MethodSpec> {
        let attributor = lift(self.registry.build_method(name, &params))?;
        Ok(MethodSpec { name: name.to_string(), params, attributor: Arc::from(attributor) })
    }

    /// `wrapper` around `inner`: the inner method goes into the wrapper's method
    /// parameter (the first of kind `method` in its schema).
    fn wrap(&self, wrapper: &str, inner: &MethodSpec, opts: &Map) -> RResult<MethodSpec> {
        let entry = lift(self.registry.method(wrapper))?;
        let slot = entry
            .params()
            .iter()
            .find(|p| p.kind == ParamKind::Method)
            .ok_or_else(|| rt(format!("'{wrapper}' is not a wrapper: it takes no method parameter")))?;
        let mut params = params_from_map(wrapper, opts)?;
        if opts.contains_key(slot.name) {
            return Err(rt(format!(
                "{wrapper}: '{}' is given twice (as the wrapped method and in the options)",
                slot.name
            )));
        }
        add_param(&mut params, wrapper, slot.name, &Dynamic::from(inner.clone()))?;
        self.method(wrapper, params)
    }

    fn set_bar(&self, bar: Option<ProgressBar>) {
        if let Some(old) = self.bar.replace(bar) {
            old.finish_and_clear();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.set_bar(None);
    }
}

type H = Rc<Host>;

fn tensor_err<T>(r: lumen_core::candle::Result<T>) -> RResult<T> {
    r.map_err(|e| rt(lumen_core::Error::from(e)))
}

fn dims_from(a: &Array, what: &str) -> RResult<Vec<usize>> {
    a.iter().map(|d| as_usize(d, what)).collect()
}

/// Flattens nested arrays of numbers, checking that they are rectangular.
fn nested(d: &Dynamic, shape: &mut Vec<usize>, depth: usize, out: &mut Vec<f32>) -> RResult<()> {
    if let Some(a) = d.clone().try_cast::<Array>() {
        if shape.len() == depth {
            shape.push(a.len());
        } else if shape[depth] != a.len() {
            return Err(rt(format!("tensor: ragged array (length {} where {} was expected)", a.len(), shape[depth])));
        }
        for x in &a {
            nested(x, shape, depth + 1, out)?;
        }
        Ok(())
    } else if let Some(f) = as_f64(d) {
        if depth != shape.len() {
            return Err(rt("tensor: ragged array (a number where an array was expected)"));
        }
        out.push(f as f32);
        Ok(())
    } else {
        Err(rt(format!("tensor: expected numbers, got {}", d.type_name())))
    }
}

/// Adds a batch dimension to a single example; says whether it did.
fn batched(model: &dyn Classifier, x: &Tensor) -> RResult<(Tensor, bool)> {
    let x = tensor_err(x.to_device(model.device()))?;
    if x.rank() == model.info().input_shape.len() {
        Ok((tensor_err(x.unsqueeze(0))?, true))
    } else {
        Ok((x, false))
    }
}

fn classes_dynamic(v: Vec<usize>, single: bool) -> Dynamic {
    if single {
        (v[0] as INT).into()
    } else {
        Dynamic::from_array(v.into_iter().map(|c| (c as INT).into()).collect())
    }
}

/// Per example (dim 0 is the batch), a 0/1 mask of the `frac` largest entries.
/// Ties keep the earlier position, so the mask is deterministic.
pub fn top_mask(t: &Tensor, frac: f64) -> RResult<Tensor> {
    if !(0.0..=1.0).contains(&frac) {
        return Err(rt(format!("top_mask: fraction must be in [0, 1], got {frac}")));
    }
    if t.rank() < 1 {
        return Err(rt("top_mask: needs a tensor with a batch dimension"));
    }
    let b = tensor_err(t.dim(0))?;
    let v = TensorValue(t.clone()).values()?;
    let per = if b == 0 { 0 } else { v.len() / b };
    let k = (frac * per as f64).round() as usize;
    let mut mask = vec![0f32; v.len()];
    for i in 0..b {
        let row = &v[i * per..(i + 1) * per];
        let mut order: Vec<usize> = (0..per).collect();
        order.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
        for &j in &order[..k] {
            mask[i * per + j] = 1.0;
        }
    }
    tensor_err(Tensor::from_vec(mask, t.dims(), t.device()))
}

fn pearson(a: &[f32], b: &[f32]) -> RResult<f64> {
    if a.len() != b.len() || a.is_empty() {
        return Err(rt(format!("pearson: sizes differ or are empty ({} vs {})", a.len(), b.len())));
    }
    let n = a.len() as f64;
    let ma = a.iter().map(|x| *x as f64).sum::<f64>() / n;
    let mb = b.iter().map(|x| *x as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (*x as f64 - ma, *y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return Ok(0.0);
    }
    Ok(sab / (saa.sqrt() * sbb.sqrt()))
}

fn register_tensors(engine: &mut Engine, host: &H) {
    engine.register_type_with_name::<TensorValue>("Tensor");
    engine.register_fn("to_string", |t: &mut TensorValue| format!("Tensor{:?}", t.0.dims()));
    engine.register_fn("to_debug", |t: &mut TensorValue| format!("Tensor{:?}", t.0.dims()));
    engine.register_get("shape", |t: &mut TensorValue| -> Array {
        t.shape().into_iter().map(|d| (d as INT).into()).collect()
    });
    engine.register_get("rank", |t: &mut TensorValue| t.0.rank() as INT);
    engine.register_fn("len", |t: &mut TensorValue| t.0.dims().first().copied().unwrap_or(1) as INT);
    engine.register_fn("numel", |t: &mut TensorValue| t.0.elem_count() as INT);
    engine.register_fn("sum", |t: &mut TensorValue| -> RResult<FLOAT> {
        Ok(t.values()?.iter().map(|x| *x as f64).sum())
    });
    engine.register_fn("mean", |t: &mut TensorValue| -> RResult<FLOAT> {
        let v = t.values()?;
        Ok(v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64)
    });
    engine.register_fn("min", |t: &mut TensorValue| -> RResult<FLOAT> {
        Ok(t.values()?.iter().fold(f32::INFINITY, |a, b| a.min(*b)) as f64)
    });
    engine.register_fn("max", |t: &mut TensorValue| -> RResult<FLOAT> {
        Ok(t.values()?.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b)) as f64)
    });
    engine.register_fn("item", |t: &mut TensorValue| -> RResult<FLOAT> {
        let v = t.values()?;
        if v.len() != 1 {
            return Err(rt(format!("item: the tensor has {} elements, not 1", v.len())));
        }
        Ok(v[0] as f64)
    });
    engine.register_fn("to_array", |t: &mut TensorValue| -> RResult<Array> {
        Ok(t.values()?.into_iter().map(|x| (x as FLOAT).into()).collect())
    });
    engine.register_fn("abs", |t: &mut TensorValue| -> RResult<TensorValue> { Ok(TensorValue(tensor_err(t.0.abs())?)) });
    engine.register_fn("relu", |t: &mut TensorValue| -> RResult<TensorValue> { Ok(TensorValue(tensor_err(t.0.relu())?)) });
    engine.register_fn("clamp", |t: &mut TensorValue, lo: FLOAT, hi: FLOAT| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(t.0.clamp(lo as f32, hi as f32))?))
    });
    engine.register_fn("flatten", |t: &mut TensorValue| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(t.0.flatten_all())?))
    });
    let h = host.clone();
    engine.register_fn("reshape", move |t: &mut TensorValue, s: Array| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(t.0.reshape(h.shape(&s, "reshape")?))?))
    });
    engine.register_fn("unsqueeze", |t: &mut TensorValue, d: INT| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(t.0.unsqueeze(as_usize(&d.into(), "unsqueeze")?))?))
    });
    engine.register_fn("squeeze", |t: &mut TensorValue, d: INT| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(t.0.squeeze(as_usize(&d.into(), "squeeze")?))?))
    });
    engine.register_fn("sum_over_batch", |t: &mut TensorValue| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(t.0.flatten_from(1).and_then(|x| x.sum(D::Minus1)))?))
    });
    engine.register_fn("argmax", |t: &mut TensorValue| -> RResult<Dynamic> {
        let idx = tensor_err(t.0.argmax(D::Minus1).and_then(|x| x.to_dtype(DType::U32)).and_then(|x| x.flatten_all()))?;
        let v: Vec<usize> = tensor_err(idx.to_vec1::<u32>())?.into_iter().map(|c| c as usize).collect();
        Ok(classes_dynamic(v, t.0.rank() <= 1))
    });
    engine.register_indexer_get(|t: &mut TensorValue, i: INT| -> RResult<TensorValue> {
        let n = t.0.dims().first().copied().unwrap_or(0) as i64;
        let j = if i < 0 { n + i } else { i };
        if j < 0 || j >= n {
            return Err(rt(format!("index {i} is out of range for a tensor of shape {:?}", t.0.dims())));
        }
        Ok(TensorValue(tensor_err(t.0.get(j as usize))?))
    });
    macro_rules! binop {
        ($op:literal, $bf:ident, $sf:expr, $rf:expr) => {
            let h = host.clone();
            engine.register_fn($op, move |a: TensorValue, b: TensorValue| -> RResult<TensorValue> {
                // Broadcasting can make a result far larger than either operand.
                let shape = tensor_err(a.0.shape().broadcast_shape_binary_op(b.0.shape(), $op))?;
                h.check_numel(shape.dims(), $op)?;
                Ok(TensorValue(tensor_err(a.0.$bf(&b.0))?))
            });
            engine.register_fn($op, |a: TensorValue, s: FLOAT| -> RResult<TensorValue> {
                Ok(TensorValue(tensor_err($sf(&a.0, s))?))
            });
            engine.register_fn($op, |a: TensorValue, s: INT| -> RResult<TensorValue> {
                Ok(TensorValue(tensor_err($sf(&a.0, s as f64))?))
            });
            engine.register_fn($op, |s: FLOAT, a: TensorValue| -> RResult<TensorValue> {
                Ok(TensorValue(tensor_err($rf(&a.0, s))?))
            });
            engine.register_fn($op, |s: INT, a: TensorValue| -> RResult<TensorValue> {
                Ok(TensorValue(tensor_err($rf(&a.0, s as f64))?))
            });
        };
    }
    binop!("+", broadcast_add, |a: &Tensor, s| a.affine(1.0, s), |a: &Tensor, s| a.affine(1.0, s));
    binop!("-", broadcast_sub, |a: &Tensor, s: f64| a.affine(1.0, -s), |a: &Tensor, s| a.affine(-1.0, s));
    binop!("*", broadcast_mul, |a: &Tensor, s| a.affine(s, 0.0), |a: &Tensor, s| a.affine(s, 0.0));
    binop!("/", broadcast_div, |a: &Tensor, s: f64| a.affine(1.0 / s, 0.0), |a: &Tensor, s: f64| a.recip().and_then(|r| r.affine(s, 0.0)));
    engine.register_fn("-", |a: TensorValue| -> RResult<TensorValue> { Ok(TensorValue(tensor_err(a.0.neg())?)) });

    let h = host.clone();
    engine.register_fn("tensor", move |a: Array| -> RResult<TensorValue> {
        let (mut shape, mut data) = (vec![], vec![]);
        nested(&Dynamic::from_array(a), &mut shape, 0, &mut data)?;
        Ok(TensorValue(tensor_err(Tensor::from_vec(data, shape, &h.device))?))
    });
    let h = host.clone();
    engine.register_fn("tensor", move |a: Array, s: Array| -> RResult<TensorValue> {
        let data: Vec<f32> = a
            .iter()
            .map(|d| as_f64(d).map(|f| f as f32).ok_or_else(|| rt(format!("tensor: expected numbers, got {}", d.type_name()))))
            .collect::<RResult<_>>()?;
        Ok(TensorValue(tensor_err(Tensor::from_vec(data, h.shape(&s, "tensor shape")?, &h.device))?))
    });
    let h = host.clone();
    engine.register_fn("zeros", move |s: Array| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(Tensor::zeros(h.shape(&s, "zeros")?, DType::F32, &h.device))?))
    });
    let h = host.clone();
    engine.register_fn("ones", move |s: Array| -> RResult<TensorValue> {
        Ok(TensorValue(tensor_err(Tensor::ones(h.shape(&s, "ones")?, DType::F32, &h.device))?))
    });
    // Uniform [0, 1) noise from a seed (the host draws it: candle's RNG cannot be seeded).
    let h = host.clone();
    engine.register_fn("random", move |s: Array, seed: INT| -> RResult<TensorValue> {
        use rand::{Rng, SeedableRng};
        let dims = h.shape(&s, "random")?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed as u64);
        let data: Vec<f32> = (0..dims.iter().product::<usize>()).map(|_| rng.gen::<f32>()).collect();
        Ok(TensorValue(tensor_err(Tensor::from_vec(data, dims, &h.device))?))
    });
    engine.register_fn("zeros_like", |t: TensorValue| -> RResult<TensorValue> { Ok(TensorValue(tensor_err(t.0.zeros_like())?)) });
    let tensors_of = |a: &Array, what: &str| -> RResult<Vec<Tensor>> {
        a.iter()
            .map(|d| {
                if let Some(t) = d.clone().try_cast::<TensorValue>() {
                    Ok(t.0)
                } else if let Some(s) = d.clone().try_cast::<Sample>() {
                    Ok(s.image)
                } else {
                    Err(rt(format!("{what}: expected tensors, got {}", d.type_name())))
                }
            })
            .collect()
    };
    engine.register_fn("stack", move |a: Array| -> RResult<TensorValue> {
        let ts = tensors_of(&a, "stack")?;
        if ts.is_empty() {
            return Err(rt("stack: the array is empty"));
        }
        Ok(TensorValue(tensor_err(Tensor::stack(&ts, 0))?))
    });
    engine.register_fn("cat", move |a: Array, dim: INT| -> RResult<TensorValue> {
        let ts = tensors_of(&a, "cat")?;
        if ts.is_empty() {
            return Err(rt("cat: the array is empty"));
        }
        Ok(TensorValue(tensor_err(Tensor::cat(&ts, as_usize(&dim.into(), "cat")?))?))
    });
    engine.register_fn("top_mask", |t: TensorValue, frac: FLOAT| -> RResult<TensorValue> { Ok(TensorValue(top_mask(&t.0, frac)?)) });
    engine.register_fn("pearson", |a: TensorValue, b: TensorValue| -> RResult<FLOAT> { pearson(&a.values()?, &b.values()?) });
    engine.register_fn("max_abs_diff", |a: TensorValue, b: TensorValue| -> RResult<FLOAT> {
        let (x, y) = (a.values()?, b.values()?);
        if x.len() != y.len() {
            return Err(rt(format!("max_abs_diff: shapes {:?} and {:?} differ", a.shape(), b.shape())));
        }
        Ok(x.iter().zip(&y).map(|(p, q)| (p - q).abs() as f64).fold(0.0, f64::max))
    });
}

fn register_data(engine: &mut Engine, host: &H) {
    engine.register_type_with_name::<Dataset>("Dataset");
    engine.register_type_with_name::<Sample>("Sample");
    engine.register_iterator_result::<Dataset, Sample>();
    engine.register_fn("mnist", |split: &str| -> RResult<Dataset> { Dataset::new(lift(Split::parse(split))?) });
    engine.register_fn("to_string", |d: &mut Dataset| format!("Dataset(mnist:{}, {} images)", d.split.name(), d.len()));
    engine.register_fn("len", |d: &mut Dataset| d.len() as INT);
    engine.register_get("split", |d: &mut Dataset| d.split.name().to_string());
    let h = host.clone();
    engine.register_indexer_get(move |d: &mut Dataset, i: INT| -> RResult<Sample> { d.get(i, &h.device) });
    engine.register_fn("take", |d: &mut Dataset, n: INT| -> RResult<Dataset> {
        let n = as_usize(&n.into(), "take")?.min(d.len());
        Ok(d.subset(d.idx[..n].to_vec()))
    });
    engine.register_fn("skip", |d: &mut Dataset, n: INT| -> RResult<Dataset> {
        let n = as_usize(&n.into(), "skip")?.min(d.len());
        Ok(d.subset(d.idx[n..].to_vec()))
    });
    engine.register_fn("slice", |d: &mut Dataset, a: INT, b: INT| -> RResult<Dataset> {
        let (a, b) = (as_usize(&a.into(), "slice")?.min(d.len()), as_usize(&b.into(), "slice")?.min(d.len()));
        Ok(d.subset(d.idx[a..b.max(a)].to_vec()))
    });
    // The test split is ordered by class, so `take` alone would see only zeros;
    // `spread(n)` takes n images evenly across the whole view.
    engine.register_fn("spread", |d: &mut Dataset, n: INT| -> RResult<Dataset> {
        let n = as_usize(&n.into(), "spread")?.min(d.len());
        Ok(d.subset((0..n).map(|i| d.idx[i * d.len() / n.max(1)]).collect()))
    });
    engine.register_fn("of_class", |d: &mut Dataset, c: INT| -> RResult<Dataset> {
        let labels = d.labels()?;
        Ok(d.subset(d.idx.iter().zip(labels).filter(|(_, l)| *l as INT == c).map(|(i, _)| *i).collect()))
    });
    engine.register_fn("first_of_each_class", |d: &mut Dataset| -> RResult<Dataset> {
        let labels = d.labels()?;
        let mut seen = std::collections::BTreeMap::new();
        for (i, l) in d.idx.iter().zip(labels) {
            seen.entry(l).or_insert(*i);
        }
        Ok(d.subset(seen.into_values().collect()))
    });
    let h = host.clone();
    engine.register_fn("images", move |d: &mut Dataset| -> RResult<TensorValue> { Ok(TensorValue(d.images(&h.device)?)) });
    engine.register_fn("labels", |d: &mut Dataset| -> RResult<Array> {
        Ok(d.labels()?.into_iter().map(|l| (l as INT).into()).collect())
    });
    engine.register_get("image", |s: &mut Sample| TensorValue(s.image.clone()));
    engine.register_get("label", |s: &mut Sample| s.label);
    engine.register_get("index", |s: &mut Sample| s.index);
    engine.register_fn("to_string", |s: &mut Sample| format!("Sample(index {}, label {})", s.index, s.label));

    let h = host.clone();
    engine.register_fn("load_image", move |path: &str| -> RResult<TensorValue> {
        Ok(TensorValue(lift(load_input(path, &h.device))?.tensor))
    });
}

fn register_models(engine: &mut Engine, host: &H) {
    engine.register_type_with_name::<ModelValue>("Model");
    let h = host.clone();
    engine.register_fn("model", move |name: &str| h.model(name));
    let h = host.clone();
    engine.register_fn("model_from", move |path: &str| -> RResult<ModelValue> {
        Ok(ModelValue(lift(lumen_core::model::load_card_model(path, &h.device))?))
    });
    engine.register_fn("to_string", |m: &mut ModelValue| format!("Model({})", m.0.info().name));
    engine.register_get("name", |m: &mut ModelValue| m.0.info().name.clone());
    engine.register_get("labels", |m: &mut ModelValue| -> Array {
        m.0.info().labels.iter().map(|l| l.clone().into()).collect()
    });
    engine.register_get("num_classes", |m: &mut ModelValue| m.0.info().num_classes() as INT);
    engine.register_get("input_shape", |m: &mut ModelValue| -> Array {
        m.0.info().input_shape.iter().map(|d| (*d as INT).into()).collect()
    });
    engine.register_get("card", |m: &mut ModelValue| -> Dynamic {
        match &m.0.info().card {
            Some(c) => json_to_dynamic(&serde_json::to_value(c).unwrap_or_default()),
            None => Dynamic::UNIT,
        }
    });
    engine.register_fn("logits", |m: &mut ModelValue, x: TensorValue| -> RResult<TensorValue> {
        let (xs, single) = batched(&*m.0, &x.0)?;
        let y = lift(m.0.forward(&xs))?;
        Ok(TensorValue(if single { tensor_err(y.squeeze(0))? } else { y }))
    });
    engine.register_fn("probs", |m: &mut ModelValue, x: TensorValue| -> RResult<TensorValue> {
        let (xs, single) = batched(&*m.0, &x.0)?;
        let y = lift(m.0.forward(&xs))?;
        let p = tensor_err(lumen_core::candle_nn::ops::softmax(&y, D::Minus1))?;
        Ok(TensorValue(if single { tensor_err(p.squeeze(0))? } else { p }))
    });
    engine.register_fn("predict", |m: &mut ModelValue, x: TensorValue| -> RResult<Dynamic> {
        let (xs, single) = batched(&*m.0, &x.0)?;
        Ok(classes_dynamic(lift(lumen_core::target::predict(&*m.0, &xs))?, single))
    });
    engine.register_fn("accuracy", |m: &mut ModelValue, x: TensorValue, labels: Array| -> RResult<FLOAT> {
        let (xs, _) = batched(&*m.0, &x.0)?;
        let labels = usize_list(&Dynamic::from_array(labels), "accuracy labels")?;
        let pred = lift(lumen_core::target::predict(&*m.0, &xs))?;
        if pred.len() != labels.len() {
            return Err(rt(format!("accuracy: {} images but {} labels", pred.len(), labels.len())));
        }
        let ok = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
        Ok(ok as f64 / labels.len().max(1) as f64)
    });
}

fn method_info(reg: &Registry, name: &str) -> RResult<Map> {
    let e = lift(reg.method(name))?;
    let mut m = Map::new();
    m.insert("name".into(), e.name.into());
    m.insert("pack".into(), e.pack.into());
    m.insert("summary".into(), e.summary.into());
    let params: Array = e
        .params()
        .iter()
        .map(|p| {
            let mut pm = Map::new();
            pm.insert("name".into(), p.name.into());
            pm.insert("type".into(), p.kind.to_string().into());
            pm.insert("default".into(), p.default.into());
            pm.insert("doc".into(), p.doc.into());
            Dynamic::from_map(pm)
        })
        .collect();
    m.insert("params".into(), params.into());
    // The props the method declares for its default config.
    let props = e.props();
    m.insert("multiplies_input".into(), props.multiplies_input.into());
    m.insert("completeness".into(), props.completeness.into());
    m.insert("needs_rules".into(), props.needs_rules.into());
    m.insert("stochastic".into(), props.stochastic.into());
    m.insert("wrapper".into(), props.wrapper.into());
    Ok(m)
}

fn register_methods(engine: &mut Engine, host: &H) {
    engine.register_type_with_name::<MethodSpec>("Method");
    let h = host.clone();
    engine.register_fn("method", move |name: &str| h.method(name, Params::new()));
    let h = host.clone();
    engine.register_fn("method", move |name: &str, p: Map| h.method(name, params_from_map(name, &p)?));
    let h = host.clone();
    engine.register_fn("with", move |m: &mut MethodSpec, p: Map| -> RResult<MethodSpec> {
        let mut params = m.params.clone();
        for (k, v) in &p {
            add_param(&mut params, &m.name, k.as_str(), v)?;
        }
        h.method(&m.name, params)
    });
    let h = host.clone();
    engine.register_fn("smoothgrad", move |inner: MethodSpec| h.wrap("smoothgrad", &inner, &Map::new()));
    let h = host.clone();
    engine.register_fn("smoothgrad", move |inner: MethodSpec, p: Map| h.wrap("smoothgrad", &inner, &p));
    let h = host.clone();
    engine.register_fn("wrap", move |name: &str, inner: MethodSpec| h.wrap(name, &inner, &Map::new()));
    let h = host.clone();
    engine.register_fn("wrap", move |name: &str, inner: MethodSpec, p: Map| h.wrap(name, &inner, &p));
    engine.register_fn("to_string", |m: &mut MethodSpec| {
        let p: Vec<String> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if p.is_empty() {
            format!("Method({})", m.name)
        } else {
            format!("Method({} {})", m.name, p.join(" "))
        }
    });
    engine.register_get("name", |m: &mut MethodSpec| m.name.clone());
    engine.register_get("params", |m: &mut MethodSpec| -> Map {
        m.resolved().into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    });
    let h = host.clone();
    engine.register_get("info", move |m: &mut MethodSpec| method_info(&h.registry, &m.name));
    let h = host.clone();
    engine.register_fn("method_info", move |name: &str| method_info(&h.registry, name));
    let h = host.clone();
    engine.register_fn("methods", move || -> Array { h.registry.method_names().into_iter().map(Into::into).collect() });
    let h = host.clone();
    engine.register_fn("has_method", move |name: &str| h.registry.method(name).is_ok());
    let h = host.clone();
    engine.register_fn("models", move || -> Array { h.registry.models().map(|(e, _)| e.name.into()).collect() });
    let h = host.clone();
    engine.register_fn("has_model", move |name: &str| h.registry.models().any(|(e, _)| e.name == name));
    let h = host.clone();
    engine.register_fn("generators", move || -> Array { h.registry.generators().map(|(e, _)| e.name.into()).collect() });
    engine.register_fn("contrast", |a: INT, b: INT| -> Map {
        let mut m = Map::new();
        m.insert("a".into(), a.into());
        m.insert("b".into(), b.into());
        m
    });
}

/// Runs a method; a single example (no batch dimension) comes back without one.
pub fn explain(model: &ModelValue, x: &Tensor, m: &MethodSpec, opts: &Map) -> RResult<ExplanationValue> {
    if let Some(k) = opts.keys().find(|k| k.as_str() != "target") {
        return Err(rt(format!("explain: unknown option '{k}' (known: target; method parameters go in method(...))")));
    }
    let (xs, single) = batched(&*model.0, x)?;
    let b = tensor_err(xs.dim(0))?;
    let target = target_from(opts.get("target").unwrap_or(&Dynamic::UNIT), b)?;
    let mut e: Explanation = lift(m.attributor.attribute(&*model.0, &xs, &target))?;
    if single {
        for t in e.tensors.values_mut() {
            if t.rank() > 0 && t.dim(0).ok() == Some(1) {
                *t = tensor_err(t.squeeze(0))?;
            }
        }
    }
    Ok(ExplanationValue(Arc::new(e)))
}

fn register_explain(engine: &mut Engine) {
    engine.register_type_with_name::<ExplanationValue>("Explanation");
    engine.register_fn("explain", |m: ModelValue, x: TensorValue, me: MethodSpec| explain(&m, &x.0, &me, &Map::new()));
    engine.register_fn("explain", |m: ModelValue, x: TensorValue, me: MethodSpec, o: Map| explain(&m, &x.0, &me, &o));
    engine.register_fn("explain", |m: ModelValue, s: Sample, me: MethodSpec| explain(&m, &s.image, &me, &Map::new()));
    engine.register_fn("explain", |m: ModelValue, s: Sample, me: MethodSpec, o: Map| explain(&m, &s.image, &me, &o));
    engine.register_fn("to_string", |e: &mut ExplanationValue| {
        format!("Explanation({}, target {}, {:?})", e.0.method, target_string(&e.0.target), e.0.attribution().dims())
    });
    engine.register_get("attribution", |e: &mut ExplanationValue| TensorValue(e.0.attribution().clone()));
    engine.register_fn("tensor", |e: &mut ExplanationValue, name: &str| -> RResult<TensorValue> {
        Ok(TensorValue(lift(e.0.tensor(name))?.clone()))
    });
    engine.register_fn("has", |e: &mut ExplanationValue, name: &str| e.0.tensors.contains_key(name));
    engine.register_get("tensors", |e: &mut ExplanationValue| -> Array { e.0.tensors.keys().map(|k| k.clone().into()).collect() });
    engine.register_get("diagnostics", |e: &mut ExplanationValue| -> Map {
        e.0.diagnostics.iter().map(|(k, v)| (k.into(), json_to_dynamic(v))).collect()
    });
    engine.register_get("method", |e: &mut ExplanationValue| e.0.method.clone());
    engine.register_get("params", |e: &mut ExplanationValue| -> Map {
        e.0.params.iter().map(|(k, v)| (k.into(), v.clone().into())).collect()
    });
    engine.register_get("seed", |e: &mut ExplanationValue| -> Dynamic {
        e.0.seed.map(|s| Dynamic::from(s as INT)).unwrap_or(Dynamic::UNIT)
    });
    engine.register_get("target", |e: &mut ExplanationValue| target_string(&e.0.target));
    engine.register_get("classes", |e: &mut ExplanationValue| -> Array {
        e.0.target.classes().unwrap_or(&[]).iter().map(|c| (*c as INT).into()).collect()
    });
    engine.register_fn("summary", |e: &mut ExplanationValue| json_to_dynamic(&e.0.summary_json()));
}

fn register_progress(engine: &mut Engine, host: &H) {
    #[derive(Clone)]
    struct Progress(ProgressBar);
    engine.register_type_with_name::<Progress>("Progress");
    let start = |h: &Host, n: INT, msg: &str| -> Progress {
        let bar = ProgressBar::new(n.max(0) as u64);
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(msg.to_string());
        h.set_bar(Some(bar.clone()));
        Progress(bar)
    };
    let h = host.clone();
    engine.register_fn("progress", move |n: INT| start(&h, n, ""));
    let h = host.clone();
    engine.register_fn("progress", move |n: INT, msg: &str| start(&h, n, msg));
    engine.register_fn("tick", |p: &mut Progress| p.0.inc(1));
    engine.register_fn("finish", |p: &mut Progress| p.0.finish_and_clear());
    let h = host.clone();
    engine.register_fn("tick", move || {
        if let Some(b) = h.bar.borrow().as_ref() {
            b.inc(1);
        }
    });
}

fn register_args(engine: &mut Engine, host: &H) {
    // `arg("n", 200)`: the value of `n=...` (or `--n=...`) among the script's
    // arguments, parsed like the default; the default when absent.
    let h = host.clone();
    engine.register_fn("arg", move |name: &str, default: Dynamic| -> RResult<Dynamic> {
        let found = h.args.iter().find_map(|a| {
            let a = a.trim_start_matches("--");
            a.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        });
        let Some(v) = found else { return Ok(default) };
        let bad = |what: &str| rt(format!("argument '{name}': expected {what}, got '{v}'"));
        Ok(if default.is::<INT>() {
            v.parse::<INT>().map_err(|_| bad("an integer"))?.into()
        } else if default.is::<FLOAT>() {
            v.parse::<FLOAT>().map_err(|_| bad("a number"))?.into()
        } else if default.is::<bool>() {
            v.parse::<bool>().map_err(|_| bad("true or false"))?.into()
        } else {
            v.into()
        })
    });
}

/// Registers everything a lumen script can call.
pub fn register_all(engine: &mut Engine, host: &H) {
    register_tensors(engine, host);
    register_data(engine, host);
    register_models(engine, host);
    register_methods(engine, host);
    register_explain(engine);
    crate::metrics::register(engine, host);
    register_progress(engine, host);
    register_args(engine, host);
    output::register(engine, host);
    crate::render::register(engine, host);
}

pub fn string_list(v: &[String]) -> Array {
    v.iter().map(|s| ImmutableString::from(s.as_str()).into()).collect()
}
