//! Feature masks: which input elements move together as one "player". Every method
//! of the pack takes its mask through the same parameters:
//!
//! - `mask=grid cell=R`: r×r cells over the image, row-major (`(y/R)·⌈W/R⌉ + x/R`);
//! - `mask=slic segments=N compactness=C`: SLIC superpixels computed on each input;
//! - `mask=file mask_file=PATH`: integer ids from an 8-bit grey `.png` or a
//!   `.safetensors` tensor, `[H, W]` (shared by the channels) or the input's shape;
//! - `mask=segments length=L`: segments of L positions along a sequence's last axis.
//!
//! A mask covers one example; every channel of a pixel belongs to the pixel's feature.

use crate::slic::slic;
use lumen_core::candle::{DType, Tensor};
use lumen_core::{Error, Result};
use std::sync::Arc;

/// The largest number of features a mask may have (one per pixel of a 256×256 image).
pub const MAX_FEATURES: usize = 65_536;

/// Feature ids of one example's elements: `ids[j]` in `0..n` for element `j` of the
/// flattened example.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMask {
    pub ids: Vec<u32>,
    pub n: usize,
}

impl FeatureMask {
    /// Relabels arbitrary ids to `0..n` in increasing id order.
    pub fn from_ids(raw: &[u32]) -> Result<FeatureMask> {
        let mut uniq: Vec<u32> = raw.to_vec();
        uniq.sort_unstable();
        uniq.dedup();
        if uniq.is_empty() {
            return Err(Error::msg("the feature mask is empty"));
        }
        if uniq.len() > MAX_FEATURES {
            return Err(Error::msg(format!("the feature mask has {} features, more than the limit of {MAX_FEATURES}", uniq.len())));
        }
        let ids = raw.iter().map(|v| uniq.binary_search(v).map(|i| i as u32).unwrap_or(0)).collect();
        Ok(FeatureMask { ids, n: uniq.len() })
    }

    /// Broadcasts a mask of the trailing `spatial` elements over `lead` leading copies
    /// (the channels).
    fn repeat(spatial: &[u32], lead: usize) -> Vec<u32> {
        let mut v = Vec::with_capacity(spatial.len() * lead);
        for _ in 0..lead {
            v.extend_from_slice(spatial);
        }
        v
    }

    /// Per-element values from per-feature values.
    pub fn spread(&self, values: &[f64]) -> Vec<f32> {
        self.ids.iter().map(|&i| values[i as usize] as f32).collect()
    }

    /// The number of elements in each feature.
    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![0; self.n];
        for &i in &self.ids {
            s[i as usize] += 1;
        }
        s
    }
}

/// How features are formed (the `mask` parameter group).
#[derive(Debug, Clone)]
pub enum MaskSpec {
    Grid { cell: usize },
    Slic { segments: usize, compactness: f64 },
    /// Raw integer ids, as loaded.
    File(Arc<Tensor>),
    Segments { length: usize },
}

impl Default for MaskSpec {
    fn default() -> Self {
        MaskSpec::Grid { cell: param::CELL }
    }
}

impl MaskSpec {
    pub fn name(&self) -> &'static str {
        match self {
            MaskSpec::Grid { .. } => "grid",
            MaskSpec::Slic { .. } => "slic",
            MaskSpec::File(_) => "file",
            MaskSpec::Segments { .. } => "segments",
        }
    }

    /// The mask of each example of `xs` `[B, ...]`. Grid, file and segment masks are
    /// one mask shared by the batch; SLIC segments each input.
    pub fn build(&self, method: &str, xs: &Tensor) -> Result<Vec<Arc<FeatureMask>>> {
        let dims = xs.dims();
        let b = dims[0];
        let ex = &dims[1..];
        let unsupported = |why: String| Error::unsupported(method, why);
        match self {
            MaskSpec::Grid { cell } => {
                let [c, h, w] = *ex else {
                    return Err(unsupported(format!(
                        "mask=grid needs images [B, C, H, W], got {dims:?}; use mask=segments for sequences"
                    )));
                };
                let cols = w.div_ceil(*cell);
                let spatial: Vec<u32> =
                    (0..h * w).map(|p| ((p / w / cell) * cols + (p % w) / cell) as u32).collect();
                let m = Arc::new(FeatureMask::from_ids(&FeatureMask::repeat(&spatial, c))?);
                Ok(vec![m; b])
            }
            MaskSpec::Segments { length } => {
                if ex.is_empty() || ex.len() > 2 {
                    return Err(unsupported(format!(
                        "mask=segments needs sequences [B, C, L] or [B, L], got {dims:?}; use mask=grid for images"
                    )));
                }
                let l = *ex.last().unwrap_or(&1);
                let lead = ex.iter().product::<usize>() / l.max(1);
                let spatial: Vec<u32> = (0..l).map(|p| (p / length) as u32).collect();
                let m = Arc::new(FeatureMask::from_ids(&FeatureMask::repeat(&spatial, lead))?);
                Ok(vec![m; b])
            }
            MaskSpec::File(t) => {
                let m = Arc::new(file_mask(method, t, ex)?);
                Ok(vec![m; b])
            }
            MaskSpec::Slic { segments, compactness } => {
                let [c, h, w] = *ex else {
                    return Err(unsupported(format!("mask=slic needs images [B, C, H, W], got {dims:?}")));
                };
                let rows = xs.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                rows.iter()
                    .map(|img| {
                        let s = slic(img, c, h, w, *segments, *compactness, 10)
                            .map_err(|e| Error::bad_param(method, "segments", e))?;
                        Ok(Arc::new(FeatureMask::from_ids(&FeatureMask::repeat(&s.labels, c))?))
                    })
                    .collect()
            }
        }
    }
}

/// A user mask: integer ids, of the example's shape or of its trailing dims.
fn file_mask(method: &str, t: &Tensor, ex: &[usize]) -> Result<FeatureMask> {
    let mut dims = t.dims().to_vec();
    // A grey PNG loads as [1, H, W]: leading 1s are a shared mask.
    if dims[..] != ex[..] {
        while dims.len() > 1 && dims[0] == 1 {
            dims.remove(0);
        }
    }
    let fits = dims.len() <= ex.len() && ex[ex.len() - dims.len()..] == dims[..];
    if !fits || dims.is_empty() {
        return Err(Error::shape(
            format!("a feature mask of the input's shape {ex:?} or of its trailing dims {:?}", &ex[1.min(ex.len())..]),
            format!("{:?}", t.dims()),
        ));
    }
    let vals = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    // A PNG's grey levels arrive as v/255.
    let png_like = t.dtype() == DType::F32 && vals.iter().all(|v| (0.0..=1.0).contains(v));
    let mut raw = Vec::with_capacity(vals.len());
    for v in vals {
        let id = if png_like { v * 255.0 } else { v };
        if !(id.is_finite() && id >= 0.0 && (id - id.round()).abs() < 1e-3 && id < u32::MAX as f64) {
            return Err(Error::bad_param(method, "mask_file", format!("feature ids must be integers ≥ 0, found {v}")));
        }
        raw.push(id.round() as u32);
    }
    let lead = ex.iter().product::<usize>() / raw.len().max(1);
    FeatureMask::from_ids(&FeatureMask::repeat(&raw, lead))
}

/// The `mask` words and the parameters they read (`cell`, `segments`,
/// `compactness`, `mask_file`, `length`): one config field, six parameters.
/// Use as `#[param(name = "mask", with = crate::mask::param)]`.
pub mod param {
    use super::MaskSpec;
    use lumen_core::candle::Device;
    use lumen_core::config::{leak, Builder};
    use lumen_core::params::{Args, ParamKind, ParamSpec};
    use lumen_core::{Error, Result};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    pub const CELL: usize = 7;
    const SEGMENTS: usize = 50;
    const COMPACTNESS: f64 = 0.3;
    const LENGTH: usize = 10;
    const WORDS: &[&str] = &["grid", "slic", "file", "segments"];

    pub fn specs(name: &'static str, doc: &'static str, default: &MaskSpec) -> Vec<ParamSpec> {
        let mut cell = ParamSpec::new("cell", ParamKind::Int, leak(Some(CELL.to_string())), "mask=grid: cell side in pixels");
        cell.max = Some(4096);
        let mut segs =
            ParamSpec::new("segments", ParamKind::Int, leak(Some(SEGMENTS.to_string())), "mask=slic: number of superpixels wanted");
        segs.max = Some(super::MAX_FEATURES as i64);
        let mut len = ParamSpec::new("length", ParamKind::Int, leak(Some(LENGTH.to_string())), "mask=segments: positions per segment");
        len.max = Some(1 << 20);
        vec![
            ParamSpec::new(name, ParamKind::Choice(WORDS), default.name(), doc),
            cell,
            segs,
            ParamSpec::new(
                "compactness",
                ParamKind::Float,
                leak(Some(COMPACTNESS.to_string())),
                "mask=slic: weight of distance against colour (in the input's value units)",
            ),
            ParamSpec::new("mask_file", ParamKind::Tensor, "", "mask=file: integer feature ids (.png grey levels or .safetensors)"),
            len,
        ]
    }

    pub fn read(a: &Args, name: &'static str, _: &dyn Builder) -> Result<MaskSpec> {
        let bad = |p: &str, r: String| Error::bad_param(a.method(), p, r);
        let file = a.tensor("mask_file", &Device::Cpu)?;
        let word = if !a.is_set(name) && file.is_some() { "file".to_string() } else { a.string(name)? };
        Ok(match word.as_str() {
            "grid" => MaskSpec::Grid { cell: a.positive("cell")? },
            "segments" => MaskSpec::Segments { length: a.positive("length")? },
            "slic" => {
                let compactness = a.f64("compactness")?;
                if !(compactness.is_finite() && compactness > 0.0) {
                    return Err(bad("compactness", format!("must be a positive number, got {compactness}")));
                }
                MaskSpec::Slic { segments: a.positive("segments")?, compactness }
            }
            "file" => MaskSpec::File(Arc::new(file.ok_or_else(|| bad("mask", "'file' needs mask_file=PATH".into()))?)),
            other => return Err(bad(name, format!("'{other}' is not one of {}", WORDS.join(", ")))),
        })
    }

    pub fn write(m: &MaskSpec, name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), m.name().to_string());
        match m {
            MaskSpec::Grid { cell } => {
                out.insert("cell".into(), cell.to_string());
            }
            MaskSpec::Slic { segments, compactness } => {
                out.insert("segments".into(), segments.to_string());
                out.insert("compactness".into(), compactness.to_string());
            }
            MaskSpec::File(t) => {
                out.insert("mask_file".into(), format!("<tensor {:?}>", t.dims()));
            }
            MaskSpec::Segments { length } => {
                out.insert("length".into(), length.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_core::candle::Device;

    #[test]
    fn grid_ids_are_row_major_cells_shared_by_channels() {
        let xs = Tensor::zeros((2, 2, 5, 5), DType::F32, &Device::Cpu).unwrap();
        let m = MaskSpec::Grid { cell: 2 }.build("t", &xs).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].n, 9);
        // Pixel (y=4, x=3) is in cell row 2, column 1 of a 3-column grid.
        assert_eq!(m[0].ids[4 * 5 + 3], 7);
        assert_eq!(m[0].ids[25 + 4 * 5 + 3], 7);
        assert_eq!(m[0].sizes()[8], 2); // the 1×1 corner cell, in two channels
    }

    #[test]
    fn segments_and_wrong_ranks() {
        let xs = Tensor::zeros((1, 4, 25), DType::F32, &Device::Cpu).unwrap();
        let m = MaskSpec::Segments { length: 10 }.build("t", &xs).unwrap();
        assert_eq!(m[0].n, 3);
        assert_eq!(m[0].ids[25 + 24], 2);
        assert!(MaskSpec::Grid { cell: 2 }.build("t", &xs).unwrap_err().to_string().contains("mask=segments"));
        let img = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(MaskSpec::Segments { length: 2 }.build("t", &img).is_err());
    }

    #[test]
    fn file_masks_relabel_and_check_shape() {
        let raw = Tensor::new(&[[5i64, 5, 9], [9, 2, 2]], &Device::Cpu).unwrap();
        let xs = Tensor::zeros((1, 3, 2, 3), DType::F32, &Device::Cpu).unwrap();
        let m = MaskSpec::File(Arc::new(raw)).build("t", &xs).unwrap();
        assert_eq!(m[0].n, 3);
        assert_eq!(&m[0].ids[..6], &[1, 1, 2, 2, 0, 0]);
        assert_eq!(&m[0].ids[12..], &[1, 1, 2, 2, 0, 0]);
        let png = Tensor::new(&[[[0f32, 1.0 / 255.0, 2.0 / 255.0], [0.0, 0.0, 0.0]]], &Device::Cpu).unwrap();
        let m = MaskSpec::File(Arc::new(png)).build("t", &xs).unwrap();
        assert_eq!(&m[0].ids[..3], &[0, 1, 2]);
        let wrong = Tensor::zeros((3, 3), DType::I64, &Device::Cpu).unwrap();
        let e = MaskSpec::File(Arc::new(wrong)).build("t", &xs).unwrap_err().to_string();
        assert!(e.contains("feature mask"), "{e}");
        let frac = Tensor::new(&[[1.5f64, 2.0, 3.0], [1.0, 1.0, 1.0]], &Device::Cpu).unwrap();
        assert!(MaskSpec::File(Arc::new(frac)).build("t", &xs).unwrap_err().to_string().contains("integers"));
    }
}
