//! The typed values a script handles: models, data sets, samples, tensors, method
//! specifications and explanations.

use crate::convert::{lift, rt, RResult};
use lumen_core::candle::{DType, Tensor};
use lumen_core::data::{Mnist, Split};
use lumen_core::{Attributor, Classifier, Explanation, Params};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A classifier (`model("mnist-cnn")`, `model_from("card.toml")`).
#[derive(Clone)]
pub struct ModelValue(pub Arc<dyn Classifier>);

/// A tensor (`f32`).
#[derive(Clone, Debug)]
pub struct TensorValue(pub Tensor);

/// A method with its parameters, already checked against the method's schema.
#[derive(Clone)]
pub struct MethodSpec {
    pub name: String,
    /// The parameters as given (flat, nested ones under `inner.`).
    pub params: Params,
    pub attributor: Arc<dyn Attributor>,
}

impl MethodSpec {
    pub fn resolved(&self) -> BTreeMap<String, String> {
        self.attributor.params()
    }
}

/// The result of `explain`.
#[derive(Clone)]
pub struct ExplanationValue(pub Arc<Explanation>);

/// A view of a bundled MNIST split: the positions of its images within the split.
#[derive(Clone)]
pub struct Dataset {
    pub split: Split,
    pub idx: Arc<Vec<usize>>,
}

/// One image of a data set with its label.
#[derive(Clone)]
pub struct Sample {
    /// `[1, 28, 28]`.
    pub image: Tensor,
    pub label: i64,
    /// Position within the split (`mnist:test:INDEX`).
    pub index: i64,
}

impl Dataset {
    pub fn new(split: Split) -> RResult<Dataset> {
        let m = lift(Mnist::load())?;
        Ok(Dataset { split, idx: Arc::new((0..m.len(split)).collect()) })
    }

    pub fn len(&self) -> usize {
        self.idx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    pub fn subset(&self, idx: Vec<usize>) -> Dataset {
        Dataset { split: self.split, idx: Arc::new(idx) }
    }

    pub fn get(&self, i: i64, device: &lumen_core::candle::Device) -> RResult<Sample> {
        let n = self.len() as i64;
        let j = if i < 0 { n + i } else { i };
        if j < 0 || j >= n {
            return Err(rt(format!("index {i} is out of range for a data set of {n} images")));
        }
        let pos = self.idx[j as usize];
        let m = lift(Mnist::load())?;
        let (image, label) = lift(m.get(self.split, pos, device))?;
        Ok(Sample { image, label: label as i64, index: pos as i64 })
    }

    pub fn labels(&self) -> RResult<Vec<usize>> {
        let m = lift(Mnist::load())?;
        let ids = m.indices(self.split);
        Ok(self.idx.iter().map(|&p| m.labels[ids[p]] as usize).collect())
    }

    pub fn images(&self, device: &lumen_core::candle::Device) -> RResult<Tensor> {
        let m = lift(Mnist::load())?;
        Ok(lift(m.batch(self.split, &self.idx, device))?.0)
    }
}

/// Iterates a data set, yielding samples (errors end the loop with a message).
pub struct DatasetIter {
    ds: Dataset,
    pos: usize,
    device: lumen_core::candle::Device,
}

impl Iterator for DatasetIter {
    type Item = RResult<Sample>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.ds.len() {
            return None;
        }
        self.pos += 1;
        Some(self.ds.get(self.pos as i64 - 1, &self.device))
    }
}


impl IntoIterator for Dataset {
    type Item = RResult<Sample>;
    type IntoIter = DatasetIter;
    fn into_iter(self) -> DatasetIter {
        // Samples are host tensors; `explain` moves them to the model's device.
        DatasetIter { ds: self, pos: 0, device: lumen_core::candle::Device::Cpu }
    }
}

impl TensorValue {
    pub fn f32(t: Tensor) -> RResult<TensorValue> {
        Ok(TensorValue(lift(t.to_dtype(DType::F32).map_err(Into::into))?))
    }

    pub fn shape(&self) -> Vec<usize> {
        self.0.dims().to_vec()
    }

    pub fn values(&self) -> RResult<Vec<f32>> {
        lift(self.0.flatten_all().and_then(|t| t.to_dtype(DType::F32)).and_then(|t| t.to_vec1::<f32>()).map_err(Into::into))
    }

    /// Small tensors as nested arrays; larger ones as a summary.
    pub fn to_json(&self) -> RResult<serde_json::Value> {
        let v = self.values()?;
        if v.len() > 4096 {
            return Ok(serde_json::json!({"shape": self.shape(), "elements": v.len()}));
        }
        fn nest(v: &[f32], shape: &[usize]) -> serde_json::Value {
            if shape.len() <= 1 {
                return serde_json::Value::Array(v.iter().map(|x| serde_json::json!(*x as f64)).collect());
            }
            let step = v.len() / shape[0].max(1);
            serde_json::Value::Array((0..shape[0]).map(|i| nest(&v[i * step..(i + 1) * step], &shape[1..])).collect())
        }
        Ok(nest(&v, self.0.dims()))
    }
}
