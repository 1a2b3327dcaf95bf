//! Helpers shared by the pack's expanding methods.

use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::Tensor;
use lumen_core::Result;

/// A progress bar over `n` chunks; hidden for short runs and when stderr is not a
/// terminal (indicatif's default).
pub fn progress(n: usize, what: &str) -> ProgressBar {
    if n < 8 {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks ({eta})") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}

pub use lumen_core::baseline::example_rngs;

/// Row indices `[start, end)` of an expanded batch, mapped to their example
/// (`row / per_example`), as a u32 tensor for `index_select`/`index_add`.
pub fn example_ids(r: &std::ops::Range<usize>, per_example: usize, device: &lumen_core::candle::Device) -> Result<Tensor> {
    let ids: Vec<u32> = r.clone().map(|i| (i / per_example) as u32).collect();
    Ok(Tensor::from_vec(ids, r.len(), device)?)
}

/// A `[n]` vector reshaped to broadcast against `[n, ...]` of rank `rank`.
pub fn per_row(v: Vec<f32>, rank: usize, device: &lumen_core::candle::Device) -> Result<Tensor> {
    let mut shape = vec![v.len()];
    shape.resize(rank.max(1), 1);
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// The targets of examples `idx` (in that order) of a resolved per-example target.
pub fn pick_targets(t: &lumen_core::Target, idx: &[usize]) -> lumen_core::Target {
    use lumen_core::Target;
    let pick = |v: &Vec<usize>| idx.iter().map(|&i| v[i]).collect();
    match t {
        Target::Classes(v) => Target::Classes(pick(v)),
        Target::Contrast { a, b } => Target::Contrast { a: pick(a), b: pick(b) },
        other => other.clone(),
    }
}

/// The completeness fact of a path method: `Σφ − (f(x) − f(b))` per example, absolute
/// and relative to `|f(x) − f(b)|`.
pub fn completeness(attr: &Tensor, f_x: Vec<f64>, f_b: Vec<f64>) -> Result<lumen_core::explanation::Completeness> {
    let sums = attr.flatten_from(1)?.sum(1)?.to_dtype(lumen_core::candle::DType::F64)?.to_vec1::<f64>()?;
    let delta: Vec<f64> = sums.iter().zip(f_x.iter().zip(&f_b)).map(|(s, (fx, fb))| s - (fx - fb)).collect();
    let relative = delta.iter().zip(f_x.iter().zip(&f_b)).map(|(d, (fx, fb))| d / (fx - fb).abs()).collect();
    Ok(lumen_core::explanation::Completeness { delta, relative, f_input: f_x, f_baseline: f_b })
}
