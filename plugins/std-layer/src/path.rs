//! What the layer and neuron methods share: the layer, its activations, the
//! per-example objective, and the points of the straight path from a baseline in
//! chunks of `batch_size` rows.
//!
//! The path grid has `B · m` rows, example-major: row `i` is example `i / m` at node
//! `i % m`, so a chunk `r` of rows is expanded from the examples `r / m`.

use lumen_core::candle::{DType, Device, Tensor};
use lumen_core::explanation::Completeness;
use lumen_core::method::per_chunk;
use lumen_core::model::{ForwardOptions, Taps};
use lumen_core::{Classifier, Result};
use std::ops::Range;

/// The output of `layer` for `xs` `[B, ...]`, without gradients, `batch_size`
/// examples at a time.
pub fn activations(model: &dyn Classifier, xs: &Tensor, layer: &str, batch_size: usize) -> Result<Tensor> {
    per_chunk(xs, batch_size, |_, x| {
        let opts = ForwardOptions { taps: Taps::Names(vec![layer.to_string()]), ..Default::default() };
        Ok(model.forward_with(&x.detach(), &opts)?.tap(layer)?.detach())
    })
}

pub use lumen_core::method::objective_values;

/// The examples of rows `r` of a grid with `m` rows per example, as u32 indices.
pub fn example_ids(r: &Range<usize>, m: usize, device: &Device) -> Result<Tensor> {
    let ids: Vec<u32> = r.clone().map(|i| (i / m) as u32).collect();
    Ok(Tensor::from_vec(ids, r.len(), device)?)
}

/// One value per row, shaped to broadcast against `like` (`[n, ...]`), in its dtype.
pub fn per_row(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![v.len()];
    shape.resize(like.rank().max(1), 1);
    Ok(Tensor::from_vec(v, shape, like.device())?.to_dtype(like.dtype())?)
}

/// Rows `r` of the path `start + α_k (end − start)` (`diff = end − start`, both
/// `[B, ...]`) at the nodes `alphas` (`m` per example): the example of each row and
/// the points.
pub fn points(start: &Tensor, diff: &Tensor, alphas: &[f64], r: &Range<usize>) -> Result<(Tensor, Tensor)> {
    let m = alphas.len();
    let ids = example_ids(r, m, start.device())?;
    let a = per_row(r.clone().map(|i| alphas[i % m]).collect(), start)?;
    let pts = start.index_select(&ids, 0)?.add(&diff.index_select(&ids, 0)?.broadcast_mul(&a)?)?;
    Ok((ids, pts))
}

/// The completeness fact: `Σφ − (f(x) − f(b))` per example, absolute and relative to
/// `|f(x) − f(b)|`.
pub fn completeness(attr: &Tensor, f_x: Vec<f64>, f_b: Vec<f64>) -> Result<Completeness> {
    let sums = attr.flatten_from(1)?.sum(1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let delta: Vec<f64> = sums.iter().zip(f_x.iter().zip(&f_b)).map(|(s, (fx, fb))| s - (fx - fb)).collect();
    let relative = delta.iter().zip(f_x.iter().zip(&f_b)).map(|(d, (fx, fb))| d / (fx - fb).abs()).collect();
    Ok(Completeness { delta, relative, f_input: f_x, f_baseline: f_b })
}
