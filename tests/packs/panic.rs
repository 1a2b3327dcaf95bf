//! Test fixture: a pack whose method panics when asked to (`panic=true`), and
//! otherwise returns an all-zero map, and a model whose forward pass panics. Each
//! panic must reach the host as `PluginPanicked`, and the next call must work.

use lumen_core::candle::{Device, Tensor};
use lumen_core::model::ModelInfo;
use std::sync::Arc;
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::registry::{MethodEntry, ModelEntry};
use lumen_core::{Attributor, Classifier, Explanation, MethodProps, Result, Target};

lumen_dylib::declare_pack!("fixture-panic");

struct Panicky {
    panic: bool,
}

impl Attributor for Panicky {
    fn name(&self) -> &str {
        "fixture_panic"
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        if self.panic {
            panic!("deliberate panic inside the fixture pack");
        }
        let target = lumen_core::method::prepare(model, inputs, target)?;
        Ok(Explanation::new("fixture_panic", inputs.zeros_like()?, target))
    }
}

static PARAMS: &[ParamSpec] = &[ParamSpec::new("panic", ParamKind::Bool, "true", "panic inside attribute")];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_panic",
        pack: "fixture-panic",
        summary: "panics on request (test fixture)",
        schema: || PARAMS,
        props: || MethodProps::NONE,
        build: |a, _| Ok(Box::new(Panicky { panic: a.bool("panic")? })),
    }
}

struct PanickyModel {
    info: ModelInfo,
    device: Device,
}

impl Classifier for PanickyModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn forward(&self, _xs: &Tensor) -> Result<Tensor> {
        panic!("deliberate panic in a pack model's forward pass");
    }
}

lumen_core::inventory::submit! {
    ModelEntry {
        name: "fixture-panic-model",
        pack: "fixture-panic",
        summary: "forward panics (test fixture)",
        load: |d| {
            let info = ModelInfo {
                name: "fixture-panic-model".into(),
                input_shape: vec![1, 28, 28],
                labels: (0..10).map(|c| c.to_string()).collect(),
                input_range: (0.0, 1.0),
                card: None,
            };
            Ok(Arc::new(PanickyModel { info, device: d.clone() }))
        },
    }
}

/// A generator whose decoder panics; its latent size and shape still answer.
struct PanickyGenerator;

impl lumen_core::generator::Generator for PanickyGenerator {
    fn name(&self) -> &str {
        "fixture-panic-generator"
    }
    fn latent_dim(&self) -> usize {
        4
    }
    fn output_shape(&self) -> &[usize] {
        &[1, 28, 28]
    }
    fn generate(&self, _z: &Tensor) -> Result<Tensor> {
        panic!("deliberate panic in a pack generator");
    }
    fn encode(&self, _x: &Tensor) -> Option<Result<Tensor>> {
        panic!("deliberate panic in a pack encoder");
    }
}

lumen_core::inventory::submit! {
    lumen_core::registry::GeneratorEntry {
        name: "fixture-panic-generator",
        pack: "fixture-panic",
        summary: "generate and encode panic (test fixture)",
        load: |_| Ok(Arc::new(PanickyGenerator)),
    }
}

/// A sampler whose draws panic.
struct PanickySampler;

impl lumen_core::sampler::Sampler for PanickySampler {
    fn name(&self) -> &str {
        "fixture-panic-sampler"
    }
    fn sample_windows(
        &self,
        _image: &lumen_core::sampler::HostImage,
        _wins: &[lumen_core::sampler::Window],
        _n: usize,
        _rng: &mut rand::rngs::StdRng,
        _out: &mut Vec<f32>,
    ) -> Result<()> {
        panic!("deliberate panic in a pack sampler");
    }
    fn save(&self, _path: &std::path::Path) -> Result<()> {
        panic!("deliberate panic while saving a pack sampler");
    }
}

lumen_core::inventory::submit! {
    lumen_core::registry::SamplerEntry {
        name: "fixture-panic-sampler",
        pack: "fixture-panic",
        summary: "draws panic (test fixture)",
        params: &[],
        build: |_, _| Ok(Box::new(PanickySampler)),
        load: |_, _| Ok(Box::new(PanickySampler)),
    }
}

/// A method whose accessors panic: `name()` (when `which = "name"`), `params()` or
/// `props()`. The host reads them once under its guard, when it builds the method.
struct PanickyAccessors {
    which: String,
}

impl Attributor for PanickyAccessors {
    fn name(&self) -> &str {
        if self.which == "name" {
            panic!("deliberate panic in name()");
        }
        "fixture_panic_accessors"
    }
    fn params(&self) -> std::collections::BTreeMap<String, String> {
        if self.which == "params" {
            panic!("deliberate panic in params()");
        }
        Default::default()
    }
    fn props(&self) -> MethodProps {
        if self.which == "props" {
            panic!("deliberate panic in props()");
        }
        MethodProps::NONE
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = lumen_core::method::prepare(model, inputs, target)?;
        Ok(Explanation::new("fixture_panic_accessors", inputs.zeros_like()?, target))
    }
}

static ACCESSOR_PARAMS: &[ParamSpec] =
    &[ParamSpec::new("which", ParamKind::Str, "name", "the accessor that panics: name, params, props or none")];

lumen_core::inventory::submit! {
    MethodEntry {
        name: "fixture_panic_accessors",
        pack: "fixture-panic",
        summary: "an accessor panics (test fixture)",
        schema: || ACCESSOR_PARAMS,
        props: || MethodProps::NONE,
        build: |a, _| Ok(Box::new(PanickyAccessors { which: a.string("which")? })),
    }
}

/// A model whose `info()` panics.
struct PanickyInfo {
    device: Device,
}

impl Classifier for PanickyInfo {
    fn info(&self) -> &ModelInfo {
        panic!("deliberate panic in info()");
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.flatten_from(1)?.narrow(1, 0, 10)?)
    }
}

lumen_core::inventory::submit! {
    ModelEntry {
        name: "fixture-panic-info",
        pack: "fixture-panic",
        summary: "info() panics (test fixture)",
        load: |d| Ok(Arc::new(PanickyInfo { device: d.clone() })),
    }
}
