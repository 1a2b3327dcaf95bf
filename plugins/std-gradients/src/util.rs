//! Helpers shared by the pack's expanding methods.

use indicatif::{ProgressBar, ProgressStyle};
use lumen_core::candle::Tensor;
use lumen_core::Result;
use rand::rngs::StdRng;
use rand::SeedableRng;

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

/// One random stream per example, derived from the seed and the example's values
/// (not its position), so an example's noise is the same alone or in any batch.
pub fn example_rngs(xs: &Tensor, seed: u64, stream: u64) -> Result<Vec<StdRng>> {
    let b = xs.dim(0)?;
    let flat = xs.flatten_from(1)?.to_dtype(lumen_core::candle::DType::F32)?.to_vec2::<f32>()?;
    debug_assert_eq!(flat.len(), b);
    Ok(flat
        .iter()
        .map(|row| {
            // FNV-1a over the example's bits, mixed with the seed and stream.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream.rotate_left(32);
            for v in row {
                h ^= v.to_bits() as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            StdRng::seed_from_u64(h)
        })
        .collect())
}

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
