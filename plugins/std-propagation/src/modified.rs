//! Guided Backprop (Springenberg et al. 2015) and Deconvnet (Zeiler & Fergus 2014):
//! the input gradient of the target through the `guided_backprop` / `deconvnet`
//! presets. Both only change the backward of ReLUs (see [`crate::rules`]);
//! max-pools route through their forward switches and convolutions are transposed,
//! which is the ordinary gradient.
//!
//! [`ModifiedGradient`] works with any preset of this pack, so another rule map is
//! exposed as a method with one `submit_method!`.

use lumen_core::candle::Tensor;
use lumen_core::method::{chunks, gradient, prepare};
use lumen_core::model::ForwardOptions;
use lumen_core::params::{ParamKind, ParamSpec};
use crate::rules;
use lumen_core::{Args, Attributor, Classifier, Error, Explanation, MethodProps, Result, Target};
use std::collections::BTreeMap;

/// Configuration of [`ModifiedGradient`].
#[derive(Debug, Clone)]
pub struct ModifiedGradientConfig {
    /// Examples per backward pass.
    pub batch_size: usize,
}

impl Default for ModifiedGradientConfig {
    fn default() -> Self {
        ModifiedGradientConfig { batch_size: 64 }
    }
}

pub static PARAMS: &[ParamSpec] =
    &[ParamSpec::new("batch_size", ParamKind::Int, "64", "examples per backward pass").max(lumen_core::params::MAX_BATCH_SIZE)];

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
    pub fn config_from_args(a: &Args) -> Result<ModifiedGradientConfig> {
        Ok(ModifiedGradientConfig { batch_size: a.positive("batch_size")? })
    }
}

impl Attributor for ModifiedGradient {
    fn name(&self) -> &str {
        self.method
    }
    fn props(&self) -> MethodProps {
        MethodProps { needs_rules: true, ..MethodProps::NONE }
    }
    fn params(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("batch_size".to_string(), self.config.batch_size.to_string())])
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
        let mut parts = vec![];
        for r in chunks(inputs.dim(0)?, self.config.batch_size) {
            let x = inputs.narrow(0, r.start, r.len())?;
            let opts = ForwardOptions { composite: Some(&composite), ..Default::default() };
            parts.push(gradient(model, &x, &target.select(r), opts)?.grad);
        }
        let grad = Tensor::cat(&parts, 0)?;
        Ok(Explanation::new(self.method, grad, target).with_params(self.params()))
    }
}

lumen_core::submit_method!(
    "guided_backprop",
    "Guided Backprop: gradient where ReLUs pass only positive signal at active units",
    PARAMS,
    MethodProps { needs_rules: true, ..MethodProps::NONE },
    |a, _| Ok(Box::new(ModifiedGradient::guided_backprop(ModifiedGradient::config_from_args(a)?))),
);

lumen_core::submit_method!(
    "deconvnet",
    "Deconvnet (Zeiler & Fergus): gradient where ReLUs pass relu(signal), ignoring the forward mask",
    PARAMS,
    MethodProps { needs_rules: true, ..MethodProps::NONE },
    |a, _| Ok(Box::new(ModifiedGradient::deconvnet(ModifiedGradient::config_from_args(a)?))),
);

#[cfg(test)]
mod tests;
