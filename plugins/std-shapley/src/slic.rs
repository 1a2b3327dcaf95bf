//! SLIC superpixels (Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel Methods",
//! TPAMI 2012): k-means in (colour, y, x) restricted to a local window, followed by a connectivity pass.

use std::collections::{BTreeMap, BTreeSet};

/// A label image: `labels[y * w + x]` in `0..count`, numbered in row-major order of first appearance.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    pub labels: Vec<u32>,
    pub count: usize,
}

/// Labels `0..k` (row-major `[h*w]`) for an image given channel-major as `[c, h, w]` f32 values.
///
/// The distance is `D = sqrt(d_c² + (d_s / S)² · m²)` with `S = round(sqrt(h*w / n_segments))` and
/// `m = compactness`. Colour is used in whatever range the input has, so `compactness` is relative to that
/// scale: skimage's default of 10 assumes Lab in 0–100; for [0,1] data (e.g. MNIST) pass roughly 0.1–1.
/// `n_segments` is clamped to `h*w`. Centres start on a grid of about `n_segments` near-square cells (a
/// pure S-spaced grid would give a single centre for, say, 2 segments on a square image), each moved to
/// the lowest-gradient pixel of its 3×3 neighbourhood within its cell. Each iteration searches a 2S×2S
/// window around every centre; it stops after `max_iter` iterations or when no label changes. Finally
/// every label is made one 4-connected region: fragments smaller than a quarter of the mean cell size
/// merge into the neighbour sharing the longest border, larger disconnected parts get their own label.
/// Deterministic: ties go to the lowest index.
pub fn slic(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    n_segments: usize,
    compactness: f64,
    max_iter: usize,
) -> Result<Segmentation, String> {
    if c == 0 || h == 0 || w == 0 {
        return Err(format!("slic: zero-sized image (c={c}, h={h}, w={w})"));
    }
    let expected = c.checked_mul(h).and_then(|x| x.checked_mul(w));
    if expected != Some(img.len()) {
        return Err(format!("slic: image has {} values, expected c*h*w = {c}*{h}*{w}", img.len()));
    }
    if n_segments == 0 {
        return Err("slic: n_segments must be at least 1".to_string());
    }
    if !compactness.is_finite() || compactness <= 0.0 {
        return Err(format!("slic: compactness must be finite and > 0, got {compactness}"));
    }
    if let Some(i) = img.iter().position(|v| !v.is_finite()) {
        return Err(format!("slic: non-finite pixel value {} at index {i}", img[i]));
    }
    let n = h * w;
    let n_seg = n_segments.min(n);
    let step = ((n as f64 / n_seg as f64).sqrt().round() as usize).max(1);
    // Pixel-major copy so that one pixel's channels are contiguous.
    let mut pix = vec![0f64; n * c];
    for ch in 0..c {
        for p in 0..n {
            pix[p * c + ch] = img[ch * n + p] as f64;
        }
    }
    let (ny, nx) = grid_shape(h, w, n_seg);
    let centres = init_centres(&pix, c, h, w, ny, nx);
    let labels = kmeans(&pix, c, h, w, ny, nx, centres, step as f64, compactness, max_iter);
    let (labels, count) = enforce_connectivity(&labels, h, w, ny * nx);
    Ok(Segmentation { labels, count })
}

/// Grid of `ny × nx` cells: pick the shape whose cell count is closest to `n_seg` (weighted double) and
/// whose cells are closest to square, in log terms; ties go to the smaller `ny`.
fn grid_shape(h: usize, w: usize, n_seg: usize) -> (usize, usize) {
    let mut best = (1, 1);
    let mut best_cost = f64::INFINITY;
    for ny in 1..=h {
        let nx = ((n_seg as f64 / ny as f64).round() as usize).clamp(1, w);
        let count_cost = ((ny * nx) as f64 / n_seg as f64).ln().abs();
        let aspect_cost = ((h as f64 / ny as f64) / (w as f64 / nx as f64)).ln().abs();
        let cost = 2.0 * count_cost + aspect_cost;
        if cost < best_cost {
            best_cost = cost;
            best = (ny, nx);
        }
    }
    best
}

/// Inclusive pixel range `[lo, hi]` of cell `j` when `len` pixels are split into `cells` (`y*cells/len == j`).
fn cell_range(j: usize, cells: usize, len: usize) -> (usize, usize) {
    let lo = (j * len).div_ceil(cells);
    let hi = ((j + 1) * len).div_ceil(cells) - 1;
    (lo, hi)
}

/// Squared central-difference gradient magnitude summed over channels (borders clamped).
fn gradient(pix: &[f64], c: usize, h: usize, w: usize, y: usize, x: usize) -> f64 {
    let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
    let (u, d) = (y.saturating_sub(1), (y + 1).min(h - 1));
    (0..c)
        .map(|ch| {
            let gx = pix[(y * w + r) * c + ch] - pix[(y * w + l) * c + ch];
            let gy = pix[(d * w + x) * c + ch] - pix[(u * w + x) * c + ch];
            gx * gx + gy * gy
        })
        .sum()
}

/// Centres as flat records `[y, x, colour...]`, one per cell, moved off edges; staying inside the cell keeps
/// centres distinct when cells are tiny.
fn init_centres(pix: &[f64], c: usize, h: usize, w: usize, ny: usize, nx: usize) -> Vec<f64> {
    let mut centres = Vec::with_capacity(ny * nx * (c + 2));
    for j in 0..ny {
        let (y_lo, y_hi) = cell_range(j, ny, h);
        for i in 0..nx {
            let (x_lo, x_hi) = cell_range(i, nx, w);
            let (cy, cx) = ((y_lo + y_hi) / 2, (x_lo + x_hi) / 2);
            let mut best = (cy, cx);
            let mut best_g = gradient(pix, c, h, w, cy, cx);
            for y in cy.saturating_sub(1).max(y_lo)..=(cy + 1).min(y_hi) {
                for x in cx.saturating_sub(1).max(x_lo)..=(cx + 1).min(x_hi) {
                    let g = gradient(pix, c, h, w, y, x);
                    if g < best_g {
                        best_g = g;
                        best = (y, x);
                    }
                }
            }
            centres.push(best.0 as f64);
            centres.push(best.1 as f64);
            let p = best.0 * w + best.1;
            centres.extend_from_slice(&pix[p * c..(p + 1) * c]);
        }
    }
    centres
}

/// Local k-means. Labels start as the grid cells; a pixel no window reaches keeps its previous label.
#[allow(clippy::too_many_arguments)]
fn kmeans(
    pix: &[f64],
    c: usize,
    h: usize,
    w: usize,
    ny: usize,
    nx: usize,
    mut centres: Vec<f64>,
    s: f64,
    m: f64,
    max_iter: usize,
) -> Vec<usize> {
    let n = h * w;
    let stride = c + 2;
    let k = ny * nx;
    let mut labels: Vec<usize> = (0..n).map(|p| ((p / w) * ny / h) * nx + (p % w) * nx / w).collect();
    let spatial = (m / s) * (m / s);
    let mut dist = vec![f64::INFINITY; n];
    for _ in 0..max_iter {
        dist.fill(f64::INFINITY);
        let mut next = labels.clone();
        for (ki, cen) in centres.chunks(stride).enumerate() {
            let (cy, cx) = (cen[0], cen[1]);
            let y0 = (cy - s).ceil().max(0.0) as usize;
            let y1 = ((cy + s).floor() as usize).min(h - 1);
            let x0 = (cx - s).ceil().max(0.0) as usize;
            let x1 = ((cx + s).floor() as usize).min(w - 1);
            for y in y0..=y1 {
                let dy = y as f64 - cy;
                for x in x0..=x1 {
                    let p = y * w + x;
                    let dx = x as f64 - cx;
                    let dc: f64 = (0..c).map(|ch| (pix[p * c + ch] - cen[2 + ch]).powi(2)).sum();
                    let d = dc + (dy * dy + dx * dx) * spatial;
                    if d < dist[p] {
                        dist[p] = d;
                        next[p] = ki;
                    }
                }
            }
        }
        let changed = next != labels;
        labels = next;
        let mut sums = vec![0f64; k * stride];
        let mut counts = vec![0usize; k];
        for (p, &l) in labels.iter().enumerate() {
            let rec = &mut sums[l * stride..(l + 1) * stride];
            rec[0] += (p / w) as f64;
            rec[1] += (p % w) as f64;
            for ch in 0..c {
                rec[2 + ch] += pix[p * c + ch];
            }
            counts[l] += 1;
        }
        for (ki, &cnt) in counts.iter().enumerate() {
            if cnt > 0 {
                for j in 0..stride {
                    centres[ki * stride + j] = sums[ki * stride + j] / cnt as f64;
                }
            }
        }
        if !changed {
            break;
        }
    }
    labels
}

/// 4-connected components of `labels`; components under a quarter of the mean cell size (`n / k`) merge,
/// smallest first, into the neighbour sharing the longest border; then contiguous row-major relabelling.
fn enforce_connectivity(labels: &[usize], h: usize, w: usize, k: usize) -> (Vec<u32>, usize) {
    let n = h * w;
    let mut comp = vec![usize::MAX; n];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..n {
        if comp[start] != usize::MAX {
            continue;
        }
        let id = sizes.len();
        let mut size = 0;
        comp[start] = id;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (y, x) = (p / w, p % w);
            let mut visit = |q: usize| {
                if comp[q] == usize::MAX && labels[q] == labels[p] {
                    comp[q] = id;
                    stack.push(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < w {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - w);
            }
            if y + 1 < h {
                visit(p + w);
            }
        }
        sizes.push(size);
    }
    let ncomp = sizes.len();
    let mut border: Vec<BTreeMap<usize, usize>> = vec![BTreeMap::new(); ncomp];
    for p in 0..n {
        let right = (p % w + 1 < w).then_some(p + 1);
        let down = (p + w < n).then_some(p + w);
        for q in [right, down].into_iter().flatten() {
            let (a, b) = (comp[p], comp[q]);
            if a != b {
                *border[a].entry(b).or_insert(0) += 1;
                *border[b].entry(a).or_insert(0) += 1;
            }
        }
    }
    let small = |s: usize| s * 4 * k < n;
    let mut queue: BTreeSet<(usize, usize)> = (0..ncomp).filter(|&i| small(sizes[i])).map(|i| (sizes[i], i)).collect();
    let mut merged_into: Vec<usize> = (0..ncomp).collect();
    let mut alive = ncomp;
    while let Some((size, id)) = queue.pop_first() {
        if alive <= 1 {
            break;
        }
        // Longest shared border wins; ties go to the smaller id (max_by keeps the last maximum).
        let Some(target) = border[id].iter().rev().max_by_key(|(_, &len)| len).map(|(&t, _)| t) else {
            continue;
        };
        let edges = std::mem::take(&mut border[id]);
        for (x, len) in edges {
            border[x].remove(&id);
            if x != target {
                *border[x].entry(target).or_insert(0) += len;
                *border[target].entry(x).or_insert(0) += len;
            }
        }
        let was_small = queue.remove(&(sizes[target], target));
        sizes[target] += size;
        if was_small && small(sizes[target]) {
            queue.insert((sizes[target], target));
        }
        merged_into[id] = target;
        alive -= 1;
    }
    let mut out_id = vec![u32::MAX; ncomp];
    let mut count = 0usize;
    let mut out = Vec::with_capacity(n);
    for &cp in &comp {
        let mut r = cp;
        while merged_into[r] != r {
            r = merged_into[r];
        }
        if out_id[r] == u32::MAX {
            out_id[r] = count as u32;
            count += 1;
        }
        out.push(out_id[r]);
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic textured image in [0, 1].
    fn pattern(c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(c * h * w);
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let (yf, xf, cf) = (y as f64, x as f64, ch as f64);
                    let s = (0.37 * xf + 0.21 * yf + cf).sin() * (0.13 * xf * (1.0 + cf) - 0.29 * yf).cos();
                    v.push((0.5 + 0.5 * s) as f32);
                }
            }
        }
        v
    }

    /// Checks labels cover `0..count` and that every label is a single 4-connected region.
    fn check_valid(seg: &Segmentation, h: usize, w: usize) {
        assert_eq!(seg.labels.len(), h * w);
        let max = *seg.labels.iter().max().unwrap() as usize;
        assert_eq!(seg.count, max + 1);
        let mut size = vec![0usize; seg.count];
        for &l in &seg.labels {
            size[l as usize] += 1;
        }
        assert!(size.iter().all(|&s| s > 0), "some label in 0..count is missing");
        let mut seen = vec![false; seg.count];
        for start in 0..h * w {
            let l = seg.labels[start];
            if seen[l as usize] {
                continue;
            }
            seen[l as usize] = true;
            let mut visited = vec![false; h * w];
            let mut queue = std::collections::VecDeque::from([start]);
            visited[start] = true;
            let mut reached = 0;
            while let Some(p) = queue.pop_front() {
                reached += 1;
                let (y, x) = (p / w, p % w);
                let mut nb = Vec::new();
                if x > 0 {
                    nb.push(p - 1);
                }
                if x + 1 < w {
                    nb.push(p + 1);
                }
                if y > 0 {
                    nb.push(p - w);
                }
                if y + 1 < h {
                    nb.push(p + w);
                }
                for q in nb {
                    if !visited[q] && seg.labels[q] == l {
                        visited[q] = true;
                        queue.push_back(q);
                    }
                }
            }
            assert_eq!(reached, size[l as usize], "label {l} is not 4-connected");
        }
    }

    #[test]
    fn valid_and_connected_on_textures() {
        for &(c, h, w, n) in &[(1, 28, 28, 50), (3, 64, 64, 50), (1, 28, 28, 16), (3, 31, 17, 7), (2, 5, 9, 3)] {
            let img = pattern(c, h, w);
            for &m in &[0.05, 0.3, 1.0, 10.0] {
                let seg = slic(&img, c, h, w, n, m, 10).unwrap();
                check_valid(&seg, h, w);
            }
        }
    }

    #[test]
    fn count_close_to_requested() {
        for &(c, h, w) in &[(1, 28, 28), (3, 64, 64)] {
            let img = pattern(c, h, w);
            for &m in &[0.3, 1.0] {
                let seg = slic(&img, c, h, w, 50, m, 10).unwrap();
                assert!((25..=100).contains(&seg.count), "{c}x{h}x{w} m={m}: count {}", seg.count);
            }
        }
    }

    #[test]
    fn two_colour_image_splits_at_edge() {
        let (h, w) = (28, 28);
        let img: Vec<f32> = (0..h * w).map(|p| if p % w < w / 2 { 0.0 } else { 1.0 }).collect();
        for &m in &[0.1, 0.5, 1.0] {
            let seg = slic(&img, 1, h, w, 2, m, 10).unwrap();
            assert_eq!(seg.count, 2);
            for p in 0..h * w {
                assert_eq!(seg.labels[p], if p % w < w / 2 { 0 } else { 1 }, "pixel {p}, m={m}");
            }
        }
    }

    #[test]
    fn constant_image_gives_grid() {
        let img = vec![0.25f32; 28 * 28];
        let seg = slic(&img, 1, 28, 28, 16, 0.5, 10).unwrap();
        check_valid(&seg, 28, 28);
        assert!((9..=25).contains(&seg.count), "count {}", seg.count);
        assert_eq!(seg.count, 16);
    }

    #[test]
    fn deterministic() {
        let img = pattern(3, 40, 36);
        let a = slic(&img, 3, 40, 36, 30, 0.4, 10).unwrap();
        let b = slic(&img, 3, 40, 36, 30, 0.4, 10).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn n_segments_clamped_to_pixels() {
        let img = pattern(1, 5, 4);
        let seg = slic(&img, 1, 5, 4, 1000, 0.5, 10).unwrap();
        check_valid(&seg, 5, 4);
        assert!(seg.count <= 20);
        // With one centre per pixel, each pixel keeps its own centre (distance 0).
        assert_eq!(seg.count, 20);
        let one = slic(&img, 1, 5, 4, 1, 0.5, 10).unwrap();
        assert_eq!(one.count, 1);
        let single = slic(&[0.5], 1, 1, 1, 3, 1.0, 10).unwrap();
        assert_eq!(single, Segmentation { labels: vec![0], count: 1 });
    }

    #[test]
    fn zero_iterations_still_valid() {
        let img = pattern(1, 28, 28);
        let seg = slic(&img, 1, 28, 28, 16, 0.5, 0).unwrap();
        check_valid(&seg, 28, 28);
        assert_eq!(seg.count, 16);
    }

    #[test]
    fn errors() {
        let img = vec![0.0f32; 12];
        assert!(slic(&[], 1, 0, 4, 2, 1.0, 10).unwrap_err().contains("zero-sized"));
        assert!(slic(&img, 0, 3, 4, 2, 1.0, 10).unwrap_err().contains("zero-sized"));
        assert!(slic(&img, 1, 3, 3, 2, 1.0, 10).unwrap_err().contains("expected"));
        assert!(slic(&img, 1, 3, 4, 0, 1.0, 10).unwrap_err().contains("n_segments"));
        for m in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(slic(&img, 1, 3, 4, 2, m, 10).unwrap_err().contains("compactness"));
        }
        let mut bad = img.clone();
        bad[5] = f32::NAN;
        assert!(slic(&bad, 1, 3, 4, 2, 1.0, 10).unwrap_err().contains("index 5"));
        bad[5] = f32::INFINITY;
        assert!(slic(&bad, 3, 1, 4, 2, 1.0, 10).unwrap_err().contains("non-finite"));
        assert!(!slic(&img, 1, 3, 4, 0, 1.0, 10).unwrap_err().contains('\n'));
    }

    #[test]
    fn timing_report() {
        for &(c, h, w, n, reps) in &[(1, 28, 28, 50, 20), (3, 224, 224, 50, 2), (3, 224, 224, 200, 2)] {
            let img = pattern(c, h, w);
            let t = std::time::Instant::now();
            let mut count = 0;
            for _ in 0..reps {
                count = slic(&img, c, h, w, n, 0.5, 10).unwrap().count;
            }
            let per = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
            eprintln!("slic {c}x{h}x{w} n_segments={n}: {per:.3} ms, count={count}");
        }
    }
}
