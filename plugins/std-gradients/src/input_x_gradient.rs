//! Input × Gradient (Shrikumar et al. 2016): the gradient multiplied element-wise by
//! the input.

use lumen_core::candle::Tensor;
use lumen_core::method::{gradient, per_chunk, prepare, Batched};
use lumen_core::model::ForwardOptions;
use lumen_core::{Attributor, Classifier, Explanation, Method, MethodProps, Result, Target};

/// Configuration of [`InputXGradient`]: `batch_size`, examples per backward pass.
pub type InputXGradientConfig = Batched;

pub const PROPS: MethodProps = MethodProps { multiplies_input: true, ..MethodProps::NONE };

#[derive(Debug, Clone, Default)]
pub struct InputXGradient {
    pub config: InputXGradientConfig,
}

impl InputXGradient {
    pub fn new(config: InputXGradientConfig) -> Self {
        InputXGradient { config }
    }
}

impl Method for InputXGradient {
    const NAME: &'static str = "input_x_gradient";
    const SUMMARY: &'static str = "input × gradient: the gradient multiplied element-wise by the input";
    type Config = InputXGradientConfig;
    const PROPS: MethodProps = PROPS;
    fn new(config: InputXGradientConfig) -> Result<Self> {
        Ok(InputXGradient { config })
    }
    fn config(&self) -> &InputXGradientConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let attr = per_chunk(inputs, self.config.batch_size, |r, x| {
            let g = gradient(model, x, &target.select(r), ForwardOptions::default())?.grad;
            Ok((g * x)?)
        })?;
        Ok(Explanation::new(Self::NAME, attr, target).with_params(self.params()))
    }
}

lumen_core::submit_method!(InputXGradient);
