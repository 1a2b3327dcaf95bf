//! Localization against a ground-truth mask (Arras et al., CLEVR-XAI): relevance
//! mass accuracy and relevance rank accuracy, plus the masks of lumen's synthetic
//! sets with known truth (the biased-8 square, the genomic motifs).
//!
//! Relevance per position is the map summed over channels. Mass accuracy is the
//! positive relevance inside the mask over all positive relevance (`relevance =
//! absolute`: |relevance| instead); rank accuracy is the share of the `K` most
//! relevant positions that lie inside the mask, `K` = the mask's size. Both are in
//! [0, 1], higher is better; NaN for an empty mask or a map without positive mass.

use crate::util::{host, order_desc, pixel_relevance, Layout};
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::biased::BiasSquare;
use lumen_core::data::genomics::Genomics;
use lumen_core::metric::{MetricInput, MetricNeeds, MetricOutput};
use lumen_core::params::{ParamKind, ParamSpec};
use lumen_core::{Args, Error, Metric, Result};
use std::collections::BTreeMap;

/// Which relevance counts as mass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mass {
    #[default]
    Positive,
    Absolute,
}

#[derive(Debug, Clone, Default)]
pub struct LocalizationConfig {
    pub mass: Mass,
}

pub static LOCALIZATION_PARAMS: &[ParamSpec] = &[ParamSpec::new(
    "relevance",
    ParamKind::Choice(&["positive", "absolute"]),
    "positive",
    "mass and ranks from positive relevance, or from |relevance|",
)];

#[derive(Debug, Clone, Default)]
pub struct Localization {
    pub config: LocalizationConfig,
}

impl Localization {
    pub fn new(config: LocalizationConfig) -> Self {
        Localization { config }
    }
    pub fn from_args(a: &Args) -> Result<Self> {
        let mass = if a.string("relevance")? == "absolute" { Mass::Absolute } else { Mass::Positive };
        Ok(Localization::new(LocalizationConfig { mass }))
    }
}

/// Per example, per position: inside the mask? Masks are the input's shape (inside
/// if any channel is nonzero) or the input's shape without channels; a batch of one
/// mask is shared by every example.
pub fn position_masks(masks: &Tensor, l: &Layout) -> Result<Vec<Vec<bool>>> {
    let dims = masks.dims();
    let p = l.p();
    let per = |n_ex: usize| -> Result<Vec<Vec<bool>>> {
        let v = host(masks)?;
        let stride = v.len() / n_ex;
        let ch = stride / p;
        Ok((0..n_ex)
            .map(|i| (0..p).map(|j| (0..ch).any(|c| v[i * stride + c * p + j] != 0.0)).collect())
            .collect())
    };
    let with_c: Vec<usize> = std::iter::once(l.c).chain(l.spatial.iter().copied()).collect();
    let rest = &dims[1.min(dims.len())..];
    let fits = dims.len() >= 2 && (rest == &l.spatial[..] || (rest == &with_c[..] && l.c > 0));
    if !fits || (dims[0] != l.b && dims[0] != 1) {
        return Err(Error::shape(
            format!("masks [B or 1, {:?}] or [B or 1, C, ...] matching the input", l.spatial),
            format!("{dims:?}"),
        ));
    }
    let m = per(dims[0])?;
    Ok(if dims[0] == 1 && l.b > 1 { vec![m[0].clone(); l.b] } else { m })
}

impl Metric for Localization {
    fn name(&self) -> &str {
        "localization"
    }
    fn higher_is_better(&self) -> bool {
        true
    }
    fn params(&self) -> BTreeMap<String, String> {
        let r = match self.config.mass {
            Mass::Positive => "positive",
            Mass::Absolute => "absolute",
        };
        BTreeMap::from([("relevance".to_string(), r.to_string())])
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        input.check("localization")?;
        let l = Layout::of(input.inputs.dims())?;
        let masks = position_masks(input.require_masks("localization")?, &l)?;
        let rel = pixel_relevance(&host(input.attributions)?, &l);
        let mut mass_acc = vec![];
        let mut rank_acc = vec![];
        for (r, m) in rel.iter().zip(&masks) {
            let v: Vec<f64> = r
                .iter()
                .map(|x| match self.config.mass {
                    Mass::Positive => x.max(0.0),
                    Mass::Absolute => x.abs(),
                })
                .collect();
            let total: f64 = v.iter().sum();
            let inside: f64 = v.iter().zip(m).filter(|(_, &k)| k).map(|(x, _)| x).sum();
            let k = m.iter().filter(|&&b| b).count();
            mass_acc.push(if total > 0.0 && k > 0 { inside / total } else { f64::NAN });
            // Rank by the signed relevance (or |relevance|), most relevant first.
            let key = if self.config.mass == Mass::Absolute { v.clone() } else { r.clone() };
            let top = order_desc(&key);
            rank_acc.push(if k > 0 { top[..k].iter().filter(|&&j| m[j]).count() as f64 / k as f64 } else { f64::NAN });
        }
        let mut out = MetricOutput::new("localization", mass_acc);
        out.extra.insert("rank_accuracy".into(), rank_acc);
        Ok(out)
    }
}

/// The biased-8 square's region for `b` images of `h × w`: `[b, h, w]`.
pub fn biased_square_masks(square: &BiasSquare, b: usize, h: usize, w: usize, device: &Device) -> Result<Tensor> {
    let m = square.mask(h, w, device)?; // [1, h, w]
    Ok(m.broadcast_as((b, h, w))?.contiguous()?)
}

/// The planted motifs of sequences `idx` (every motif, both kinds): `[B, L]`.
pub fn motif_masks(g: &Genomics, idx: &[usize], device: &Device) -> Result<Tensor> {
    let len = g.config.length;
    let mut v = vec![0f32; idx.len() * len];
    for (b, &i) in idx.iter().enumerate() {
        let s = g.seqs.get(i).ok_or_else(|| Error::Data(format!("sequence {i} of {}", g.seqs.len())))?;
        for m in &s.motifs {
            v[b * len + m.range().start..b * len + m.range().end].fill(1.0);
        }
    }
    Ok(Tensor::from_vec(v, (idx.len(), len), device)?)
}

lumen_core::submit_metric!(
    "localization",
    "relevance mass inside a ground-truth mask (headline) and relevance rank accuracy (higher is better)",
    LOCALIZATION_PARAMS,
    true,
    MetricNeeds { method: false, masks: true, network: false },
    |a| Ok(Box::new(Localization::from_args(a)?)),
);
