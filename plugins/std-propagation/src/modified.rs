//! Guided Backprop (Springenberg et al. 2015) and Deconvnet (Zeiler & Fergus 2014):
//! the input gradient of the target through the `guided_backprop` / `deconvnet`
//! presets. Both only change the backward of ReLUs (see [`crate::rules`]);
//! max-pools route through their forward switches and convolutions are transposed,
//! which is the ordinary gradient.
//!
//! [`ModifiedGradient`] works with any preset of this pack, so another rule map is
//! exposed as a method with one `submit_method!`.

use lumen_core::candle::Tensor;
use lumen_core::method::{gradient, per_chunk, prepare, Batched};
use lumen_core::model::ForwardOptions;
use crate::rules;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};
use std::collections::BTreeMap;

/// Configuration of [`ModifiedGradient`]: `batch_size`, examples per backward pass.
pub type ModifiedGradientConfig = Batched;

const PROPS: MethodProps = MethodProps { needs_rules: true, ..MethodProps::NONE };

/// The input gradient through a composite preset.
#[derive(Debug, Clone)]
pub struct ModifiedGradient {
    method: &'static str,
    preset: &'static str,
    pub config: ModifiedGradientConfig,
}

impl ModifiedGradient {
    /// `method` is the name reported in explanations; `preset` one of this pack's composites.
    pub fn new(method: &'static str, preset: &'static str, config: ModifiedGradientConfig) -> Self {
        ModifiedGradient { method, preset, config }
    }
    pub fn guided_backprop(config: ModifiedGradientConfig) -> Self {
        Self::new("guided_backprop", "guided_backprop", config)
    }
    pub fn deconvnet(config: ModifiedGradientConfig) -> Self {
        Self::new("deconvnet", "deconvnet", config)
    }
}

impl Attributor for ModifiedGradient {
    fn name(&self) -> &str {
        self.method
    }
    fn props(&self) -> MethodProps {
        PROPS
    }
    fn params(&self) -> BTreeMap<String, String> {
        self.config.to_params()
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        if model.network().is_none() {
            return Err(Error::unsupported(
                self.method,
                format!(
                    "model '{}' is not built from the explainable layer vocabulary, so its ReLU rules cannot be set",
                    model.info().name
                ),
            ));
        }
        let target = prepare(model, inputs, target)?;
        let composite = rules::preset(self.preset)?;
        let grad = per_chunk(inputs, self.config.batch_size, |r, x| {
            let opts = ForwardOptions { composite: Some(&composite), ..Default::default() };
            Ok(gradient(model, x, &target.select(r), opts)?.grad)
        })?;
        Ok(Explanation::new(self.method, grad, target).with_params(self.params()))
    }
}

/// Declares a registered method that is [`ModifiedGradient`] through one preset.
macro_rules! preset_method {
    ($ty:ident, $name:literal, $summary:literal) => {
        #[doc = $summary]
        pub struct $ty(pub ModifiedGradient);
        impl Method for $ty {
            const NAME: &'static str = $name;
            const SUMMARY: &'static str = $summary;
            type Config = ModifiedGradientConfig;
            const PROPS: MethodProps = PROPS;
            fn new(config: ModifiedGradientConfig) -> Result<Self> {
                Ok($ty(ModifiedGradient::new($name, $name, config)))
            }
            fn config(&self) -> &ModifiedGradientConfig {
                &self.0.config
            }
            fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
                self.0.attribute(model, inputs, target)
            }
        }
        lumen_core::submit_method!($ty);
    };
}

preset_method!(GuidedBackprop, "guided_backprop", "Guided Backprop: gradient where ReLUs pass only positive signal at active units");
preset_method!(Deconvnet, "deconvnet", "Deconvnet (Zeiler & Fergus): gradient where ReLUs pass relu(signal), ignoring the forward mask");

#[cfg(test)]
mod tests;
