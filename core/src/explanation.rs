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
    /// Diagnostics: completeness delta, solver traces, timings...
    pub diagnostics: BTreeMap<String, Value>,
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
