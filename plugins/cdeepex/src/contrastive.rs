//! `contrastive`: "why A and not B" for any gradient-type method, as the difference
//! of the two class maps after scaling each to a common range (the baseline of
//! SmoothGrad Fig. 6 and CDeepEx §4.1). Positive values support A over B.

use crate::cdeepex::true_and_probe;
use lumen_core::candle::{Tensor, D};
use lumen_core::method::prepare;
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Attributor, Classifier, Error, Explanation, MethodProps, Registry, Result, Target};
use std::collections::BTreeMap;

/// How each class map is scaled before the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Divide by the map's largest absolute value.
    MaxAbs,
    /// Divide by the map's L2 norm.
    L2,
    /// No scaling (the plain difference).
    None,
}

impl Scale {
    pub fn parse(s: &str) -> Option<Scale> {
        match s {
            "maxabs" => Some(Scale::MaxAbs),
            "l2" => Some(Scale::L2),
            "none" => Some(Scale::None),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Scale::MaxAbs => "maxabs",
            Scale::L2 => "l2",
            Scale::None => "none",
        }
    }
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

pub static PARAMS: &[ParamSpec] = &[
    ParamSpec::new("inner", ParamKind::Method, "saliency", "the gradient-type method giving each class map"),
    ParamSpec::new("scale", ParamKind::Choice(&["maxabs", "l2", "none"]), "maxabs", "scaling of each class map"),
];

pub struct Contrastive {
    pub inner: Box<dyn Attributor>,
    pub scale: Scale,
}

impl Contrastive {
    pub fn from_args(a: &Args, reg: &Registry) -> Result<Self> {
        let inner_name = a.string("inner")?;
        if inner_name == "contrastive" {
            return Err(Error::bad_param("contrastive", "inner", "cannot wrap itself"));
        }
        let inner = reg.build_method(&inner_name, &a.sub("inner"))?;
        let s = a.string("scale")?;
        let scale = Scale::parse(&s).ok_or_else(|| Error::bad_param("contrastive", "scale", format!("'{s}'")))?;
        Ok(Contrastive { inner, scale })
    }
}

impl Attributor for Contrastive {
    fn name(&self) -> &str {
        "contrastive"
    }
    fn props(&self) -> MethodProps {
        MethodProps { wrapper: true, ..self.inner.props() }
    }
    fn params(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::from([
            ("inner".to_string(), self.inner.name().to_string()),
            ("scale".to_string(), self.scale.name().to_string()),
        ]);
        for (k, v) in self.inner.params() {
            m.insert(format!("inner.{k}"), v);
        }
        m
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let target = prepare(model, inputs, target)?;
        let (a, b) = true_and_probe(model, inputs, &target)?;
        let ma = self.inner.attribute(model, inputs, &Target::Classes(a.clone()))?;
        let mb = self.inner.attribute(model, inputs, &Target::Classes(b.clone()))?;
        let diff = (self.scale.apply(ma.attribution())? - self.scale.apply(mb.attribution())?)?;
        let mut e = Explanation::new("contrastive", diff, Target::Contrast { a, b })
            .with_tensor("map_a", ma.attribution().clone())
            .with_tensor("map_b", mb.attribution().clone())
            .with_params(self.params());
        e.seed = ma.seed;
        Ok(e)
    }
}

lumen_core::submit_method!(
    "contrastive",
    "why A not B: scaled map of A minus scaled map of B, for any gradient-type method",
    PARAMS,
    MethodProps { wrapper: true, ..MethodProps::NONE },
    |a, reg| Ok(Box::new(Contrastive::from_args(a, reg)?)),
);
