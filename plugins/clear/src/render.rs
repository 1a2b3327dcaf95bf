//! CLEAR's pictures: the HSV image of eq. 6 (H = F(Ĉ), S = 1, V = normalised D), the
//! binary heatmap (target kernel hot, strongest other kernel green), the red/blue
//! map, a class-colour legend and an optional overlay on the input.
//!
//! Pixel functions work on flat per-pixel slices so the method and the tests share
//! them; [`picture`] turns a `[3, H, W]` map into an image.

use lumen_core::candle::{DType, Tensor};
use lumen_core::image::{Rgb, RgbImage};
use lumen_core::render::{blend, draw_text, input_image, text_size, HeatmapOptions};
use lumen_core::{Error, Explanation, Result};

/// Ĉ (as positions in the explained class list) and D per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Dominant {
    pub slot: Vec<usize>,
    pub level: Vec<f32>,
}

/// Per-pixel argmax and max over `maps[class][pixel]`; ties go to the earlier class.
pub fn dominant(maps: &[Vec<f32>]) -> Result<Dominant> {
    let first = maps.first().ok_or_else(|| Error::msg("clear: no class maps"))?;
    let n = first.len();
    if maps.iter().any(|m| m.len() != n) {
        return Err(Error::shape(format!("class maps of {n} pixels"), "maps of different sizes"));
    }
    let mut slot = vec![0usize; n];
    let mut level = first.clone();
    for (s, m) in maps.iter().enumerate().skip(1) {
        for p in 0..n {
            if m[p] > level[p] {
                level[p] = m[p];
                slot[p] = s;
            }
        }
    }
    Ok(Dominant { slot, level })
}

/// V of eq. 6: `max(D, 0) / max D` over the picture (all zero when nothing is positive).
pub fn normalise(level: &[f32]) -> Vec<f32> {
    let m = level.iter().copied().fold(0f32, f32::max);
    if m > 0.0 {
        level.iter().map(|d| d.max(0.0) / m).collect()
    } else {
        vec![0.0; level.len()]
    }
}

/// HSV (hue in degrees, s and v in [0, 1]) to RGB in [0, 1].
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let (s, v) = (s.clamp(0.0, 1.0), v.clamp(0.0, 1.0));
    let c = v * s;
    let hp = h.rem_euclid(360.0) / 60.0;
    let x = c * (1.0 - ((hp % 2.0) - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// F of eq. 6: the `slot`-th of `n` classes gets an even share of the hue circle.
pub fn hue(slot: usize, n: usize) -> f32 {
    360.0 * slot as f32 / n.max(1) as f32
}

/// The CLEAR image's pixels: hue from the dominant class, value from V.
pub fn clear_pixels(slots: &[usize], v: &[f32], n: usize) -> Vec<[f32; 3]> {
    slots.iter().zip(v).map(|(s, v)| hsv_to_rgb(hue(*s, n), 1.0, *v)).collect()
}

/// Black → red → yellow → white for `t` in [0, 1].
pub fn hot(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [(3.0 * t).min(1.0), (3.0 * t - 1.0).clamp(0.0, 1.0), (3.0 * t - 2.0).clamp(0.0, 1.0)]
}

/// The binary heatmap: where the target kernel's response `pos` is at least the
/// strongest other kernel's `neg`, `pos` on the hot scale; elsewhere `neg` in green.
/// Both share one scale (the largest positive value of either).
pub fn binary_pixels(pos: &[f32], neg: &[f32]) -> Vec<[f32; 3]> {
    let m = pos.iter().chain(neg).copied().fold(0f32, f32::max);
    let m = if m > 0.0 { m } else { 1.0 };
    pos.iter()
        .zip(neg)
        .map(|(p, q)| if p >= q { hot(p.max(0.0) / m) } else { [0.0, q.max(0.0) / m, 0.0] })
        .collect()
}

/// §4.2's two-colour map: red where the target class dominates, blue elsewhere,
/// with brightness `v`.
pub fn red_blue_pixels(is_target: &[bool], v: &[f32]) -> Vec<[f32; 3]> {
    is_target.iter().zip(v).map(|(t, v)| if *t { [*v, 0.0, 0.0] } else { [0.0, 0.0, *v] }).collect()
}

/// How [`picture`] draws a map.
#[derive(Debug, Clone, PartialEq)]
pub struct ClearRenderOptions {
    /// Nearest-neighbour upscaling factor.
    pub scale: u32,
    /// Draw the colours over the (lightened, dark-on-white) input instead of on black.
    pub overlay: bool,
    /// Opacity of the strongest response in an overlay.
    pub overlay_alpha: f32,
    /// Range of the raw input (for the overlay).
    pub input_range: (f32, f32),
}

impl Default for ClearRenderOptions {
    fn default() -> Self {
        ClearRenderOptions { scale: 6, overlay: false, overlay_alpha: 0.9, input_range: (0.0, 1.0) }
    }
}

fn u8c(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Draws a `[3, H, W]` map in [0, 1] (`clear_rgb`, `binary_rgb`, `red_blue`). With
/// `overlay`, each pixel's colour at full value is blended over the input with
/// opacity proportional to its value (V = the largest channel).
pub fn picture(rgb: &Tensor, input: Option<&Tensor>, opts: &ClearRenderOptions) -> Result<RgbImage> {
    let (c, h, w) = rgb.dims3()?;
    if c != 3 {
        return Err(Error::shape("a [3, H, W] colour map", format!("{:?}", rgb.dims())));
    }
    let v = rgb.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let n = h * w;
    let s = opts.scale.max(1);
    let px = |x: u32, y: u32| -> [f32; 3] {
        let i = (y / s) as usize * w + (x / s) as usize;
        [v[i], v[n + i], v[2 * n + i]]
    };
    if !opts.overlay {
        return Ok(RgbImage::from_fn(w as u32 * s, h as u32 * s, |x, y| {
            let p = px(x, y);
            Rgb([u8c(p[0]), u8c(p[1]), u8c(p[2])])
        }));
    }
    let input = input.ok_or_else(|| Error::msg("clear: an overlay needs the input"))?;
    let hopts = HeatmapOptions { scale: s, input_range: opts.input_range, invert_input: true, ..Default::default() };
    let under = input_image(input, &hopts)?;
    if under.dimensions() != (w as u32 * s, h as u32 * s) {
        return Err(Error::shape(format!("an input of {h}×{w} pixels"), format!("{:?}", input.dims())));
    }
    Ok(RgbImage::from_fn(w as u32 * s, h as u32 * s, |x, y| {
        let p = px(x, y);
        let val = p[0].max(p[1]).max(p[2]);
        // Lighten the digit so the colours stay readable on top of it.
        let u = blend(*under.get_pixel(x, y), Rgb([255, 255, 255]), 0.45);
        if val <= 0.0 {
            return u;
        }
        let full = Rgb([u8c(p[0] / val), u8c(p[1] / val), u8c(p[2] / val)]);
        blend(u, full, opts.overlay_alpha * val)
    }))
}

/// Legend entries for an explained class list: the class's label and its colour at
/// full value (the hue F gives its position in the list).
pub fn legend_entries(classes: &[usize], labels: &[String]) -> Vec<(String, [f32; 3])> {
    classes
        .iter()
        .enumerate()
        .map(|(s, c)| {
            let l = labels.get(*c).cloned().unwrap_or_else(|| c.to_string());
            (l, hsv_to_rgb(hue(s, classes.len()), 1.0, 1.0))
        })
        .collect()
}

/// A class-colour legend: swatch and label per class, wrapped to `width` pixels.
pub fn class_legend(entries: &[(String, [f32; 3])], width: u32, font_scale: u32) -> RgbImage {
    let fs = font_scale.max(1);
    let (_, th) = text_size("0", fs);
    let sw = th; // square swatches as tall as the text
    let items: Vec<u32> = entries.iter().map(|(l, _)| sw + 3 + text_size(l, fs).0 + 8).collect();
    let width = width.max(items.iter().copied().max().unwrap_or(1));
    let mut lines = 1u32;
    let mut x = 0;
    for w in &items {
        if x > 0 && x + w > width {
            lines += 1;
            x = 0;
        }
        x += w;
    }
    let line_h = th + 4;
    let mut img = RgbImage::from_pixel(width, lines * line_h + 2, Rgb([255, 255, 255]));
    let (mut x, mut y) = (0u32, 2u32);
    for ((label, c), w) in entries.iter().zip(&items) {
        if x > 0 && x + w > width {
            x = 0;
            y += line_h;
        }
        let col = Rgb([u8c(c[0]), u8c(c[1]), u8c(c[2])]);
        for dy in 0..sw {
            for dx in 0..sw {
                if x + dx < img.width() && y + dy < img.height() {
                    img.put_pixel(x + dx, y + dy, col);
                }
            }
        }
        draw_text(&mut img, (x + sw + 3) as i64, y as i64, label, Rgb([20, 20, 20]), fs);
        x += w;
    }
    img
}

/// Example `i` of a CLEAR explanation as a picture: the `clear_rgb` map (optionally
/// over the input) with its class legend underneath.
pub fn render_example(
    e: &Explanation,
    i: usize,
    labels: &[String],
    input: Option<&Tensor>,
    opts: &ClearRenderOptions,
) -> Result<RgbImage> {
    let rgb = e.tensor("clear_rgb")?.get(i)?;
    let img = picture(&rgb, input, opts)?;
    let classes: Vec<usize> =
        e.tensor("classes")?.get(i)?.to_dtype(DType::F32)?.to_vec1::<f32>()?.into_iter().map(|c| c as usize).collect();
    let legend = class_legend(&legend_entries(&classes, labels), img.width(), 1);
    Ok(lumen_core::render::stack_vertical(&[&img, &legend], 2))
}
