//! The sliding-window machinery that occlusion and PDA share: window positions,
//! per-pixel coverage counts, and averaging window scores back onto pixels.

use lumen_core::sampler::Window;
use lumen_core::{Error, Result};

/// Start positions `0, s, 2s, …` along one axis of length `n` for windows of size
/// `k`, plus `n − k` when the stride skips it, so every pixel is covered.
pub fn starts(n: usize, k: usize, stride: usize) -> Result<Vec<usize>> {
    if k == 0 || k > n {
        return Err(Error::msg(format!("a window of {k} does not fit in {n} pixels")));
    }
    if stride == 0 {
        return Err(Error::msg("the stride must be ≥ 1"));
    }
    let last = n - k;
    let mut v: Vec<usize> = (0..=last).step_by(stride).collect();
    if v.last() != Some(&last) {
        v.push(last);
    }
    Ok(v)
}

/// Every window of size `kh × kw` with strides `(sy, sx)` over an `h × w` image, in
/// row-major order. All windows lie fully inside the image.
pub fn grid(h: usize, w: usize, (kh, kw): (usize, usize), (sy, sx): (usize, usize)) -> Result<Vec<Window>> {
    let ys = starts(h, kh, sy)?;
    let xs = starts(w, kw, sx)?;
    Ok(ys.iter().flat_map(|&y| xs.iter().map(move |&x| Window { y, x, h: kh, w: kw })).collect())
}

/// How many windows cover each pixel, `[h * w]`.
pub fn counts(h: usize, w: usize, wins: &[Window]) -> Vec<u32> {
    let mut c = vec![0u32; h * w];
    for win in wins {
        for y in win.y..win.y + win.h {
            for x in win.x..win.x + win.w {
                c[y * w + x] += 1;
            }
        }
    }
    c
}

/// Adds each window's score to the pixels it covers, then divides by the coverage
/// count: the per-pixel average over covering windows, `[h * w]`.
pub fn average(h: usize, w: usize, wins: &[Window], scores: &[f64]) -> Vec<f64> {
    let mut sum = vec![0f64; h * w];
    for (win, s) in wins.iter().zip(scores) {
        for y in win.y..win.y + win.h {
            for x in win.x..win.x + win.w {
                sum[y * w + x] += s;
            }
        }
    }
    let c = counts(h, w, wins);
    sum.iter().zip(&c).map(|(s, &n)| if n == 0 { 0.0 } else { s / n as f64 }).collect()
}

/// Repeats a per-pixel map over `c` channels: `[c * h * w]` as f32.
pub fn broadcast_channels(map: &[f64], c: usize) -> Vec<f32> {
    (0..c).flat_map(|_| map.iter().map(|v| *v as f32)).collect()
}

/// Builds `n` copies of `image` (`[C, H, W]`) with `win` replaced by each of the
/// `n` patches in `patches` (`[n, C, h, w]`), appended to `out`.
pub fn paste(image: &[f32], c: usize, h: usize, w: usize, win: &Window, patches: &[f32], n: usize, out: &mut Vec<f32>) {
    let plane = win.h * win.w;
    for s in 0..n {
        let start = out.len();
        out.extend_from_slice(image);
        let dst = &mut out[start..];
        let src = &patches[s * c * plane..(s + 1) * c * plane];
        for ch in 0..c {
            for dy in 0..win.h {
                let row = (ch * h + win.y + dy) * w + win.x;
                let srow = (ch * win.h + dy) * win.w;
                dst[row..row + win.w].copy_from_slice(&src[srow..srow + win.w]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test 3: each pixel's count is the number of windows covering it, counted
    /// independently from the window list, for several sizes and strides.
    #[test]
    fn counts_equal_windows_covering_each_pixel() {
        for &(h, w, k, s) in &[(6, 5, 2, 1), (7, 7, 3, 2), (28, 28, 4, 1), (10, 9, 4, 3), (5, 5, 5, 1)] {
            let wins = grid(h, w, (k, k), (s, s)).unwrap();
            let c = counts(h, w, &wins);
            for y in 0..h {
                for x in 0..w {
                    let n = wins.iter().filter(|v| y >= v.y && y < v.y + k && x >= v.x && x < v.x + k).count();
                    assert_eq!(c[y * w + x] as usize, n, "pixel ({y},{x}) of {h}×{w}, k={k}, s={s}");
                    assert!(n >= 1, "every pixel is covered");
                }
            }
            assert!(wins.iter().all(|v| v.fits(h, w)));
        }
        // Stride 1 on 28×28 with k=4: a corner pixel is covered once, an inner one k² times.
        let wins = grid(28, 28, (4, 4), (1, 1)).unwrap();
        assert_eq!(wins.len(), 625);
        let c = counts(28, 28, &wins);
        assert_eq!((c[0], c[28 + 1], c[14 * 28 + 14], c[27 * 28 + 27]), (1, 4, 16, 1));
        // Averaging a constant score gives the constant; the count divides the sum.
        let avg = average(28, 28, &wins, &vec![2.5; wins.len()]);
        assert!(avg.iter().all(|v| (v - 2.5).abs() < 1e-12));
    }

    #[test]
    fn starts_cover_the_last_pixel_and_reject_bad_sizes() {
        assert_eq!(starts(10, 4, 3).unwrap(), vec![0, 3, 6]);
        assert_eq!(starts(10, 4, 4).unwrap(), vec![0, 4, 6]);
        assert_eq!(starts(4, 4, 1).unwrap(), vec![0]);
        assert!(starts(3, 4, 1).is_err());
        assert!(starts(3, 0, 1).is_err());
        assert!(starts(3, 1, 0).is_err());
    }

    #[test]
    fn paste_replaces_only_the_window() {
        let img: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32).collect();
        let win = Window { y: 1, x: 2, h: 2, w: 2 };
        let patch = vec![-1f32; 2 * 4];
        let mut out = vec![];
        paste(&img, 2, 3, 4, &win, &patch, 1, &mut out);
        for ch in 0..2 {
            for y in 0..3 {
                for x in 0..4 {
                    let i = (ch * 3 + y) * 4 + x;
                    let inside = (1..3).contains(&y) && (2..4).contains(&x);
                    assert_eq!(out[i], if inside { -1.0 } else { img[i] }, "{ch},{y},{x}");
                }
            }
        }
    }
}
