//! The gallery's pieces, shared with the evaluation report: running one method on a
//! few examples without stopping on its failure, and the grid of inputs and maps.

use crate::Result;
use lumen_core::candle::{Tensor, D};
use lumen_core::render::{self, Grid, HeatmapOptions};
use lumen_core::{Classifier, Params, Registry, Target};
use std::collections::BTreeMap;
use std::time::Instant;

/// Softmax probabilities of one example's logits, and the top-`k` classes.
pub fn top_k(model: &dyn Classifier, x: &Tensor, k: usize) -> Result<Vec<(usize, f32)>> {
    let logits = model.forward(x)?;
    let p = lumen_core::candle_nn::ops::softmax(&logits, D::Minus1)?.get(0)?.to_vec1::<f32>()?;
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    Ok(idx.into_iter().take(k).map(|i| (i, p[i])).collect())
}

/// `3` or `3 (cat)` when the label is not just the index.
pub fn class_name(labels: &[String], c: usize) -> String {
    match labels.get(c) {
        Some(l) if *l != c.to_string() => format!("{c} ({l})"),
        _ => c.to_string(),
    }
}

/// The outcome of one method on the gallery digits.
#[derive(Debug, Clone)]
pub struct MethodResult {
    pub name: String,
    pub params: BTreeMap<String, String>,
    pub seconds: f64,
    /// One map per digit, or `None` with a note when the method failed.
    pub maps: Option<Vec<Tensor>>,
    pub note: Option<String>,
    /// The model the maps come from, when it is not the gallery's own (a pack's
    /// preset names it for methods that do not apply to every model).
    pub shown_on: Option<String>,
}

/// Runs `method` on `xs` (predicted targets); never fails, errors become notes.
pub fn run_method(reg: &Registry, model: &dyn Classifier, name: &str, params: &Params, xs: &Tensor) -> MethodResult {
    let started = Instant::now();
    let mut res =
        MethodResult { name: name.to_string(), params: BTreeMap::new(), seconds: 0.0, maps: None, note: None, shown_on: None };
    let out = (|| -> Result<Vec<Tensor>> {
        let m = reg.build_method(name, params)?;
        res.params = m.params();
        let e = m.attribute(model, xs, &Target::Predicted)?;
        if !e.params.is_empty() {
            res.params = e.params.clone();
        }
        let a = e.attribution();
        if a.dims() != xs.dims() {
            // e.g. a layer's attribution: the gallery's tiles are input-shaped maps
            return Err(lumen_core::Error::UnsupportedModel {
                method: name.to_string(),
                reason: format!("its attribution has shape {:?}, not the input's {:?} (lumen explain draws it)", a.dims(), xs.dims()),
            }
            .into());
        }
        let n = xs.dim(0)?;
        (0..n).map(|i| Ok(a.get(i)?)).collect()
    })();
    res.seconds = started.elapsed().as_secs_f64();
    match out {
        Ok(maps) => res.maps = Some(maps),
        Err(e) => {
            let refused = matches!(e, crate::Error::Core(lumen_core::Error::UnsupportedModel { .. }));
            res.note = Some(if refused { format!("{NA}{e}") } else { format!("{e}") });
        }
    }
    res
}

/// Prefix of the note of a method that refuses the model (e.g. CLEAR on a model without
/// class kernels): not a failure, the method does not apply.
pub const NA: &str = "does not apply: ";

/// Methods in gallery order: by their packs' preset ranks (families side by side),
/// then the methods without a preset, by name.
pub fn column_order(reg: &Registry, mut names: Vec<String>) -> Vec<String> {
    names.sort_by_key(|m| (lumen_core::present::gallery_preset(reg, m).map(|p| p.rank).unwrap_or(u32::MAX), m.clone()));
    names
}

/// Column caption: break long names at underscores so columns stay narrow.
pub fn caption(name: &str, width: u32) -> String {
    if render::text_width(name, 1) <= width {
        return name.to_string();
    }
    name.replace('_', "_\n")
}

/// Lays out the grid: a row per digit, the input then one column per method.
/// Returns the grid and each tile's cap (`caps[method][digit]`).
pub fn compose(
    title: &str,
    xs: &Tensor,
    labels: &[usize],
    preds: &[Vec<(usize, f32)>],
    names: &[String],
    results: &[MethodResult],
    opts: &HeatmapOptions,
) -> Result<(Grid, Vec<Vec<f32>>)> {
    let n = labels.len();
    let mut grid = Grid::new(n, results.len() + 1);
    grid.title = Some(format!(
        "{title}\n{} maps, each tile capped at the {}th percentile of its |map|{}{}",
        if opts.absolute { "absolute" } else { "signed (red +, blue -)" },
        opts.percentile,
        if opts.times_input { ", times input" } else { "" },
        if opts.overlay { ", over the input" } else { "" },
    ));
    let tile_w = 28 * opts.scale;
    grid.set_col_label(0, "input");
    let mut caps = vec![];
    for r in 0..n {
        let x = xs.get(r)?;
        grid.set(r, 0, render::input_image(&x, opts)?);
        let (p, prob) = preds[r][0];
        grid.set_row_label(r, format!("true {}\npred {}\np={:.2}", class_name(names, labels[r]), class_name(names, p), prob));
    }
    for (c, res) in results.iter().enumerate() {
        let label = match &res.shown_on {
            Some(m) => format!("{}\non {m}", caption(&res.name, tile_w)),
            None => caption(&res.name, tile_w),
        };
        grid.set_col_label(c + 1, label);
        let mut col_caps = vec![];
        if let Some(maps) = &res.maps {
            for (r, m) in maps.iter().enumerate() {
                let hm = render::heatmap(m, Some(&xs.get(r)?), opts)?;
                col_caps.push(hm.cap);
                grid.set(r, c + 1, hm.with_legend(1));
            }
        }
        caps.push(col_caps);
    }
    Ok((grid, caps))
}
