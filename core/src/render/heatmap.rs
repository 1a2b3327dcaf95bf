//! Attribution heatmaps following SmoothGrad §3.1: signed or absolute values,
//! channel reduction, percentile capping, optional multiplication by the input,
//! overlay on the input, and a colour-bar legend.

use super::colormap::{blend, diverging, gray, sequential};
use super::font::{draw_text, draw_text_centered, text_width, LINE_H};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use image::{Rgb, RgbImage};

/// How a `[C, H, W]` map becomes one value per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduce {
    /// Sum over channels (keeps the sign).
    #[default]
    Sum,
    /// Max of |value| over channels (SmoothGrad's choice for colour images; non-negative).
    MaxAbs,
}

impl Reduce {
    pub fn parse(s: &str) -> Result<Reduce> {
        match s {
            "sum" => Ok(Reduce::Sum),
            "max-abs" | "max_abs" | "maxabs" => Ok(Reduce::MaxAbs),
            _ => Err(Error::msg(format!("unknown channel reduction '{s}' (known: sum, max-abs)"))),
        }
    }
}

/// Rendering options for one attribution map.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapOptions {
    /// Show |value| on a sequential scale instead of the signed diverging scale.
    pub absolute: bool,
    pub reduce: Reduce,
    /// Values whose magnitude exceeds this percentile of |map| saturate (SmoothGrad
    /// caps at the 99th). 100 shows the full range.
    pub percentile: f32,
    /// Multiply the map by the input before reducing (needs the input).
    pub times_input: bool,
    /// Blend the map over the grayscale input (needs the input).
    pub overlay: bool,
    /// Strongest colour weight of the overlay; weak evidence lets the digit show.
    pub overlay_alpha: f32,
    /// Integer nearest-neighbour upscaling, so 28×28 maps are readable.
    pub scale: u32,
    /// Draw a colour bar with min/0/max ticks under the map.
    pub legend: bool,
    /// Range of the raw input, mapped to black…white for display.
    pub input_range: (f32, f32),
    /// Show the input as dark ink on white (reads better next to white-centred maps).
    pub invert_input: bool,
}

impl Default for HeatmapOptions {
    fn default() -> Self {
        HeatmapOptions {
            absolute: false,
            reduce: Reduce::Sum,
            percentile: 99.0,
            times_input: false,
            overlay: false,
            overlay_alpha: 0.85,
            scale: 8,
            legend: true,
            input_range: (0.0, 1.0),
            invert_input: true,
        }
    }
}

/// How far the input is faded towards white under an overlay.
pub const OVERLAY_LIGHTEN: f32 = 0.45;

/// A reduced, capped map ready to draw.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub width: usize,
    pub height: usize,
    /// Row-major values divided by `cap` and clamped: [−1, 1] signed, [0, 1] absolute.
    pub normalized: Vec<f32>,
    /// The value that maps to full colour (the percentile of |map|).
    pub cap: f32,
    /// Smallest and largest raw value of the reduced map, before capping.
    pub raw_min: f32,
    pub raw_max: f32,
    pub absolute: bool,
    /// The coloured map, upscaled, without legend.
    pub image: RgbImage,
}

/// Accepts `[H, W]`, `[C, H, W]` or `[1, C, H, W]`; returns `[C, H, W]` values.
fn as_chw(t: &Tensor, what: &str) -> Result<(Vec<f32>, usize, usize, usize)> {
    let t = t.to_dtype(DType::F32)?;
    let (c, h, w) = match *t.dims() {
        [h, w] => (1, h, w),
        [c, h, w] => (c, h, w),
        [1, c, h, w] => (c, h, w),
        ref d => return Err(Error::shape(format!("{what} as [H, W], [C, H, W] or [1, C, H, W]"), format!("{d:?}"))),
    };
    if c == 0 || h == 0 || w == 0 {
        return Err(Error::shape(format!("a non-empty {what}"), format!("{:?}", t.dims())));
    }
    Ok((t.flatten_all()?.to_vec1::<f32>()?, c, h, w))
}

/// Reduces `[C, H, W]` values to one value per pixel.
pub fn reduce_channels(values: &[f32], c: usize, h: usize, w: usize, how: Reduce) -> Vec<f32> {
    let n = h * w;
    (0..n)
        .map(|i| {
            let it = (0..c).map(|k| values[k * n + i]);
            match how {
                Reduce::Sum => it.sum(),
                Reduce::MaxAbs => it.map(f32::abs).fold(0.0, f32::max),
            }
        })
        .collect()
}

/// The `p`-th percentile (0–100) of `values`, interpolating linearly between order
/// statistics (NumPy's default). Non-finite values are ignored; empty gives 0.
pub fn percentile(values: &[f32], p: f32) -> f32 {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // f64 position: in f32, 0.99·99 is off enough to move the cap visibly.
    let pos = (p.clamp(0.0, 100.0) as f64 / 100.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    (v[lo] as f64 + (v[hi] as f64 - v[lo] as f64) * (pos - lo as f64)) as f32
}

/// Divides by the percentile of |values| and clamps, so outliers saturate.
/// Returns the normalised values and the cap. An all-zero map keeps cap 0 and
/// normalises to zeros.
pub fn cap_values(values: &[f32], pct: f32, absolute: bool) -> (Vec<f32>, f32) {
    let mags: Vec<f32> = values.iter().map(|x| x.abs()).collect();
    let cap = percentile(&mags, pct);
    let (lo, hi) = if absolute { (0.0, 1.0) } else { (-1.0, 1.0) };
    let norm = values
        .iter()
        .map(|&x| {
            let x = if absolute { x.abs() } else { x };
            if cap > 0.0 && x.is_finite() {
                (x / cap).clamp(lo, hi)
            } else {
                0.0
            }
        })
        .collect();
    (norm, cap)
}

fn upscale(small: &RgbImage, s: u32) -> RgbImage {
    let s = s.max(1);
    RgbImage::from_fn(small.width() * s, small.height() * s, |x, y| *small.get_pixel(x / s, y / s))
}

/// The input as an image: grayscale (mean over channels) for 1 or 2+≠3 channels,
/// colour for 3, upscaled by `opts.scale`.
pub fn input_image(input: &Tensor, opts: &HeatmapOptions) -> Result<RgbImage> {
    let (v, c, h, w) = as_chw(input, "input")?;
    let (lo, hi) = opts.input_range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let norm = |x: f32| {
        let t = ((x - lo) / span).clamp(0.0, 1.0);
        if opts.invert_input { 1.0 - t } else { t }
    };
    let n = h * w;
    let small = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        if c == 3 {
            let ch = |k: usize| (norm(v[k * n + i]) * 255.0).round() as u8;
            Rgb([ch(0), ch(1), ch(2)])
        } else {
            gray(norm((0..c).map(|k| v[k * n + i]).sum::<f32>() / c as f32))
        }
    });
    Ok(upscale(&small, opts.scale))
}

/// Reduces, caps and colours `attribution` (`[C, H, W]`, `[1, C, H, W]` or `[H, W]`).
/// `input` (same shape) is needed for `times_input` and `overlay`.
pub fn heatmap(attribution: &Tensor, input: Option<&Tensor>, opts: &HeatmapOptions) -> Result<Heatmap> {
    let (mut a, c, h, w) = as_chw(attribution, "attribution")?;
    if opts.times_input || opts.overlay {
        let x = input.ok_or_else(|| Error::msg("times-input and overlay need the input image"))?;
        if opts.times_input {
            let (xv, xc, xh, xw) = as_chw(x, "input")?;
            if (xc, xh, xw) != (c, h, w) {
                return Err(Error::shape(format!("an input of shape [{c}, {h}, {w}] like the map"), format!("{:?}", x.dims())));
            }
            a.iter_mut().zip(&xv).for_each(|(ai, xi)| *ai *= xi);
        }
    }
    let reduced = reduce_channels(&a, c, h, w, opts.reduce);
    let finite = reduced.iter().copied().filter(|x| x.is_finite());
    let raw_min = finite.clone().fold(f32::INFINITY, f32::min);
    let raw_max = finite.fold(f32::NEG_INFINITY, f32::max);
    let absolute = opts.absolute || opts.reduce == Reduce::MaxAbs;
    let (normalized, cap) = cap_values(&reduced, opts.percentile, absolute);
    let colour = |v: f32| if absolute { sequential(v) } else { diverging(v) };
    let small = RgbImage::from_fn(w as u32, h as u32, |x, y| colour(normalized[y as usize * w + x as usize]));
    let mut image = upscale(&small, opts.scale);
    if opts.overlay {
        let base = input_image(input.expect("checked above"), &HeatmapOptions { scale: 1, ..opts.clone() })?;
        if (base.width(), base.height()) != (w as u32, h as u32) {
            return Err(Error::shape(format!("an input of {h}×{w} pixels like the map"), format!("{}×{}", base.height(), base.width())));
        }
        let s = opts.scale.max(1);
        image = RgbImage::from_fn(w as u32 * s, h as u32 * s, |x, y| {
            let (sx, sy) = (x / s, y / s);
            let v = normalized[sy as usize * w + sx as usize];
            // The input is lightened so colour shows on dark ink; weighting by strength
            // (sqrt lifts weak evidence) lets the digit show where there is none.
            let under = blend(*base.get_pixel(sx, sy), Rgb([255, 255, 255]), OVERLAY_LIGHTEN);
            blend(under, colour(v), opts.overlay_alpha * v.abs().sqrt())
        });
    }
    Ok(Heatmap {
        width: w,
        height: h,
        normalized,
        cap,
        raw_min: if raw_min.is_finite() { raw_min } else { 0.0 },
        raw_max: if raw_max.is_finite() { raw_max } else { 0.0 },
        absolute,
        image,
    })
}

/// Short tick label: 3 significant digits, scientific outside [0.01, 10⁴).
pub fn fmt_tick(x: f32) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".into();
    }
    let a = x.abs();
    if (1e-2..1e4).contains(&a) {
        let prec = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.prec$}")
    } else {
        format!("{x:.1e}")
    }
}

/// A horizontal colour bar (at least `width` wide) with tick labels: −cap, 0, +cap
/// (signed) or 0, cap/2, cap (absolute). Dark grey text on white.
pub fn legend_bar(width: u32, cap: f32, absolute: bool, font_scale: u32) -> RgbImage {
    let fs = font_scale.max(1);
    let labels: [String; 3] = if absolute {
        ["0".into(), fmt_tick(cap / 2.0), fmt_tick(cap)]
    } else {
        [fmt_tick(-cap), "0".into(), fmt_tick(cap)]
    };
    let tw: Vec<u32> = labels.iter().map(|l| text_width(l, fs)).collect();
    // Wide enough for the end labels; the middle one is dropped if it would collide.
    let width = width.max(tw[0] + tw[2] + 4 * fs).max(24);
    let bar_h = (width / 16).clamp(6, 24);
    let tick = 3 * fs;
    let height = 2 + bar_h + tick + LINE_H * fs;
    let ink = Rgb([40, 40, 40]);
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for x in 0..width {
        let t = x as f32 / (width - 1) as f32;
        let c = if absolute { sequential(t) } else { diverging(2.0 * t - 1.0) };
        for y in 2..2 + bar_h {
            img.put_pixel(x, y, c);
        }
    }
    let mid_x0 = (width / 2) as i64 - tw[1] as i64 / 2;
    let show_mid = mid_x0 > (tw[0] + 2 * fs) as i64 && mid_x0 + ((tw[1] + 2 * fs) as i64) < (width - tw[2]) as i64;
    let spots = [(0u32, 0i64, true), (width / 2, mid_x0, show_mid), (width - fs, (width - tw[2]) as i64, true)];
    let ty = (2 + bar_h + tick) as i64;
    for ((tick_x, text_x, show), text) in spots.iter().zip(&labels) {
        if !show {
            continue;
        }
        for y in 2 + bar_h..2 + bar_h + tick - fs {
            for dx in 0..fs {
                img.put_pixel((tick_x + dx).min(width - 1), y, ink);
            }
        }
        draw_text(&mut img, *text_x, ty, text, ink, fs);
    }
    img
}

/// Stacks images vertically, centred, on white.
pub fn stack_vertical(parts: &[&RgbImage], gap: u32) -> RgbImage {
    let w = parts.iter().map(|p| p.width()).max().unwrap_or(0);
    let h = parts.iter().map(|p| p.height()).sum::<u32>() + gap * parts.len().saturating_sub(1) as u32;
    let mut out = RgbImage::from_pixel(w.max(1), h.max(1), Rgb([255, 255, 255]));
    let mut y = 0;
    for p in parts {
        image::imageops::replace(&mut out, *p, ((w - p.width()) / 2) as i64, y as i64);
        y += p.height() + gap;
    }
    out
}

impl Heatmap {
    /// The map with its colour-bar legend underneath.
    pub fn with_legend(&self, font_scale: u32) -> RgbImage {
        let bar = legend_bar(self.image.width(), self.cap, self.absolute, font_scale);
        stack_vertical(&[&self.image, &bar], 2)
    }
}

/// Renders `attribution` as a picture: the heatmap, and the legend when
/// `opts.legend` is set. Font scale follows the picture size.
pub fn render(attribution: &Tensor, input: Option<&Tensor>, opts: &HeatmapOptions) -> Result<RgbImage> {
    let hm = heatmap(attribution, input, opts)?;
    Ok(if opts.legend {
        let fs = if hm.image.width() >= 200 { 2 } else { 1 };
        hm.with_legend(fs)
    } else {
        hm.image
    })
}

/// A caption line drawn above an image (for single pictures such as `lumen explain`).
pub fn with_caption(img: &RgbImage, caption: &str, font_scale: u32) -> RgbImage {
    let fs = font_scale.max(1);
    let (tw, th) = super::font::text_size(caption, fs);
    let w = img.width().max(tw + 4);
    let mut out = RgbImage::from_pixel(w, img.height() + th + 6, Rgb([255, 255, 255]));
    draw_text_centered(&mut out, w as i64 / 2, 2, caption, Rgb([20, 20, 20]), fs);
    image::imageops::replace(&mut out, img, ((w - img.width()) / 2) as i64, (th + 6) as i64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn percentile_on_a_hand_made_array() {
        let v: Vec<f32> = (1..=10).map(|x| x as f32).collect();
        // NumPy: position 0.9·9 = 8.1 → 9 + 0.1·(10 − 9)
        assert!((percentile(&v, 90.0) - 9.1).abs() < 1e-5);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 50.0), 5.5);
        assert_eq!(percentile(&[], 99.0), 0.0);
        let w: Vec<f32> = (0..=100).map(|x| x as f32).collect();
        assert!((percentile(&w, 99.0) - 99.0).abs() < 1e-4);
    }

    #[test]
    fn capping_saturates_outliers() {
        // 99 small values and one huge outlier: the 99th percentile of |.| ignores it.
        let mut v: Vec<f32> = (0..99).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        v.push(1000.0);
        let (n, cap) = cap_values(&v, 99.0, false);
        assert!((cap - 10.99).abs() < 1e-3, "{cap}");
        let (n2, cap2) = cap_values(&[2.0, -4.0, 1.0, 8.0], 100.0, false);
        assert_eq!(cap2, 8.0);
        assert_eq!(n2, vec![0.25, -0.5, 0.125, 1.0]);
        let (n3, cap3) = cap_values(&[2.0, -4.0, 1.0, 8.0], 50.0, true);
        // |.| sorted 1 2 4 8 → 50th percentile 3
        assert_eq!(cap3, 3.0);
        assert_eq!(n3, vec![2.0 / 3.0, 1.0, 1.0 / 3.0, 1.0]);
        assert_eq!(*n.last().unwrap(), 1.0);
        assert!(n.iter().all(|x| (-1.0..=1.0).contains(x)));
        let (z, c0) = cap_values(&[0.0, 0.0], 99.0, false);
        assert_eq!((z, c0), (vec![0.0, 0.0], 0.0));
    }

    #[test]
    fn heatmap_colours_scale_and_times_input() {
        let d = Device::Cpu;
        // 1×2×2 map: +4, −4, 0, +2
        let a = Tensor::new(&[[[4f32, -4.], [0., 2.]]], &d).unwrap();
        let opts = HeatmapOptions { percentile: 100.0, scale: 3, legend: false, ..Default::default() };
        let hm = heatmap(&a, None, &opts).unwrap();
        assert_eq!(hm.cap, 4.0);
        assert_eq!((hm.image.width(), hm.image.height()), (6, 6));
        assert_eq!(*hm.image.get_pixel(0, 0), diverging(1.0));
        assert_eq!(*hm.image.get_pixel(5, 0), diverging(-1.0));
        assert_eq!(*hm.image.get_pixel(2, 5), Rgb([255, 255, 255]));
        assert_eq!(*hm.image.get_pixel(4, 4), diverging(0.5));
        // absolute: −4 becomes full strength on the sequential scale
        let hm = heatmap(&a, None, &HeatmapOptions { absolute: true, ..opts.clone() }).unwrap();
        assert_eq!(*hm.image.get_pixel(5, 0), sequential(1.0));
        // times input: x = [1, 0.5, 1, 0] → [4, −2, 0, 0]
        let x = Tensor::new(&[[[1f32, 0.5], [1., 0.]]], &d).unwrap();
        let hm = heatmap(&a, Some(&x), &HeatmapOptions { times_input: true, ..opts.clone() }).unwrap();
        assert_eq!(hm.normalized, vec![1.0, -0.5, 0.0, 0.0]);
        assert!(heatmap(&a, None, &HeatmapOptions { times_input: true, ..opts.clone() }).is_err());
        // channel reductions on a 2-channel map
        let a2 = Tensor::new(&[[[1f32]], [[-3.]]], &d).unwrap();
        let hm = heatmap(&a2, None, &HeatmapOptions { percentile: 100.0, ..Default::default() }).unwrap();
        assert_eq!((hm.raw_min, hm.cap), (-2.0, 2.0));
        let hm = heatmap(&a2, None, &HeatmapOptions { reduce: Reduce::MaxAbs, ..Default::default() }).unwrap();
        assert_eq!((hm.raw_max, hm.absolute), (3.0, true));
    }

    #[test]
    fn overlay_keeps_the_digit_where_there_is_no_evidence() {
        let d = Device::Cpu;
        let a = Tensor::new(&[[[0f32, 1.]]], &d).unwrap();
        let x = Tensor::new(&[[[1f32, 0.]]], &d).unwrap();
        let opts = HeatmapOptions { overlay: true, scale: 1, legend: false, percentile: 100.0, ..Default::default() };
        let hm = heatmap(&a, Some(&x), &opts).unwrap();
        // pixel 0: no evidence, the ink (inverted input 1 → black) shows, lightened
        assert_eq!(*hm.image.get_pixel(0, 0), Rgb([115, 115, 115]));
        // pixel 1: full evidence on white paper
        assert_eq!(*hm.image.get_pixel(1, 0), blend(Rgb([255, 255, 255]), diverging(1.0), 0.85));
        let inp = input_image(&x, &HeatmapOptions { invert_input: false, scale: 2, ..Default::default() }).unwrap();
        assert_eq!((inp.width(), *inp.get_pixel(0, 0)), (4, Rgb([255, 255, 255])));
    }

    #[test]
    fn legend_has_bar_and_labels() {
        assert_eq!(fmt_tick(0.0342), "0.0342");
        assert_eq!(fmt_tick(-1.234), "-1.23");
        assert_eq!(fmt_tick(123.4), "123");
        assert_eq!(fmt_tick(0.00123), "1.2e-3");
        let bar = legend_bar(112, 0.5, false, 1);
        assert_eq!(bar.width(), 112);
        // left end blue, middle white, right end red
        assert_eq!(*bar.get_pixel(0, 3), diverging(-1.0));
        assert_eq!(*bar.get_pixel(111, 3), diverging(1.0));
        let mid = bar.get_pixel(56, 3);
        assert!(mid[0] > 240 && mid[1] > 240 && mid[2] > 240);
        // text rows contain dark pixels
        let text_rows = (bar.height() - 9)..bar.height();
        let dark = bar.enumerate_pixels().filter(|(_, y, p)| text_rows.contains(y) && p[0] < 100).count();
        assert!(dark > 20, "{dark}");
        let a = Tensor::new(&[[0.1f32, -0.2], [0.3, 0.0]], &Device::Cpu).unwrap();
        let img = render(&a, None, &HeatmapOptions { scale: 30, ..Default::default() }).unwrap();
        // the bar widens to fit "-0.297" and "0.297" side by side
        assert!(img.width() >= 60 && img.height() > 60 + 10, "{:?}", img.dimensions());
        assert_eq!(*img.get_pixel(img.width() / 2 - 30 + 45, 15), diverging(-0.2 / 0.297));
    }
}
