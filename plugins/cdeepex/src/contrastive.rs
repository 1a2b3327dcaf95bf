//! `contrastive`: "why A and not B" for any gradient-type method, as the difference
//! of the two class maps after scaling each to a common range (the baseline of
//! SmoothGrad Fig. 6 and CDeepEx §4.1). Positive values support A over B.

use crate::cdeepex::true_and_probe;
use lumen_core::candle::{Tensor, D};
use lumen_core::method::prepare;
use lumen_core::{Attributor, Choice, Classifier, Config, Error, Explanation, Method, MethodProps, Nested, Result, Target};

/// How each class map is scaled before the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Choice)]
pub enum Scale {
    /// Divide by the map's largest absolute value.
    #[choice(name = "maxabs")]
    MaxAbs,
    /// Divide by the map's L2 norm.
    L2,
    /// No scaling (the plain difference).
    None,
}

impl Scale {
    /// Scales every example of `m` (`[B, ...]`) on its own.
    pub fn apply(self, m: &Tensor) -> Result<Tensor> {
        let flat = m.flatten_from(1)?;
        let s = match self {
            Scale::None => return Ok(m.clone()),
            Scale::MaxAbs => flat.abs()?.max_keepdim(D::Minus1)?,
            Scale::L2 => flat.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?,
        };
        // An all-zero map stays zero.
        let s = s.maximum(1e-12)?;
        Ok(flat.broadcast_div(&s)?.reshape(m.dims())?)
    }
}

/// Configuration of [`Contrastive`].
#[derive(Debug, Clone, Config)]
pub struct ContrastiveConfig {
    /// the gradient-type method giving each class map
    pub inner: Nested,
    /// scaling of each class map
    pub scale: Scale,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        ContrastiveConfig { inner: Nested::named("saliency"), scale: Scale::MaxAbs }
    }
}

pub struct Contrastive {
    pub config: ContrastiveConfig,
}

impl Method for Contrastive {
    const NAME: &'static str = "contrastive";
    const SUMMARY: &'static str = "why A not B: scaled map of A minus scaled map of B, for any gradient-type method";
    type Config = ContrastiveConfig;
    fn props_of(c: &ContrastiveConfig) -> MethodProps {
        MethodProps { wrapper: true, ..c.inner.props() }
    }
    fn new(config: ContrastiveConfig) -> Result<Self> {
        if config.inner.name() == Self::NAME {
            return Err(Error::bad_param("contrastive", "inner", "cannot wrap itself"));
        }
        config.inner.get()?;
        Ok(Contrastive { config })
    }
    fn config(&self) -> &ContrastiveConfig {
        &self.config
    }
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let inner = self.config.inner.get()?;
        let scale = self.config.scale;
        let target = prepare(model, inputs, target)?;
        let (a, b) = true_and_probe(model, inputs, &target)?;
        let ma = inner.attribute(model, inputs, &Target::Classes(a.clone()))?;
        let mb = inner.attribute(model, inputs, &Target::Classes(b.clone()))?;
        let diff = (scale.apply(ma.attribution())? - scale.apply(mb.attribution())?)?;
        let mut e = Explanation::new("contrastive", diff, Target::Contrast { a, b })
            .with_tensor("map_a", ma.attribution().clone())
            .with_tensor("map_b", mb.attribution().clone())
            .with_params(self.params());
        e.seed = ma.seed;
        Ok(e)
    }
}

lumen_core::submit_method!(Contrastive);
