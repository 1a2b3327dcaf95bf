//! Input × Gradient (Shrikumar et al. 2016): the gradient multiplied element-wise by
//! the input.

use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, gradient, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Attributor, Classifier, Explanation, MethodProps, Result, Target};
use std::collections::BTreeMap;

/// Configuration of [`InputXGradient`].
#[derive(Debug, Clone)]
pub struct InputXGradientConfig {
    /// Examples per backward pass.
    pub batch_size: usize,
}

impl Default for InputXGradientConfig {
    fn default() -> Self {
        InputXGradientConfig { batch_size: 64 }
    }
}

pub static PARAMS: &[ParamSpec] =
    &[ParamSpec::new("batch_size", ParamKind::Int, "64", "examples per backward pass").max(lumen_core::params::MAX_BATCH_SIZE)];

pub const PROPS: MethodProps = MethodProps { multiplies_input: true, ..MethodProps::NONE };

#[derive(Debug, Clone, Default)]
pub struct InputXGradient {
    pub config: InputXGradientConfig,
}

impl InputXGradient {
    pub fn new(config: InputXGradientConfig) -> Self {
        InputXGradient { config }
    }
    pub fn from_args(a: &Args) -> Result<Self> {
        Ok(Self::new(InputXGradientConfig { batch_size: a.positive("batch_size")? }))
    }
}

impl Attributor for InputXGradient {
    fn name(&self) -> &str {
        "input_x_gradient"
    }
    fn props(&self) -> MethodProps {
        PROPS
    }
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("batch_size".to_string(), self.config.batch_size.to_string())])
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let mut parts = vec![];
        for r in chunks(inputs.dim(0)?, self.config.batch_size) {
            let x = inputs.narrow(0, r.start, r.len())?;
            let g = gradient(model, &x, &target.select(r), ForwardOptions::default())?.grad;
            parts.push((g * x)?);
        }
        let attr = Tensor::cat(&parts, 0)?;
        Ok(Explanation::new("input_x_gradient", attr, target).with_params(self.params()))
    }
}

lumen_core::submit_method!(
    "input_x_gradient",
    "input × gradient: the gradient multiplied element-wise by the input",
    PARAMS,
    PROPS,
    |a, _| Ok(Box::new(InputXGradient::from_args(a)?)),
);
