//! Plots for `lumen eval`: line charts (deletion/insertion curves, sanity-check
//! correlation per layer) and ranked horizontal bar charts.
//!
//! plotters draws the shapes on its bitmap backend. It is built without font
//! features (its text path needs system fonts through fontconfig, or panics), so
//! every label is drawn afterwards with lumen's own bitmap font at the pixel
//! positions plotters reports.

use crate::{err, Result};
use image::{Rgb, RgbImage};
use lumen_core::render::{self, fmt_tick};
use plotters::prelude::*;

/// Font scale of titles, labels and ticks.
const FS: u32 = 2;
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: RGBColor = RGBColor(225, 225, 225);

/// Distinct colours for up to 16 series (then they repeat).
const PALETTE: &[(u8, u8, u8)] = &[
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
];

pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Categorical x ticks (position, text) instead of numeric ones.
    pub x_ticks: Option<Vec<(f64, String)>>,
}

/// About five round tick values covering `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut v = vec![];
    let mut t = first;
    while t <= hi + step * 1e-9 {
        // Snap values like 0.30000000000000004 and -0.0.
        let r = (t / step).round() * step;
        v.push(if r.abs() < step * 1e-9 { 0.0 } else { r });
        t += step;
    }
    v
}

fn tick_text(x: f64) -> String {
    fmt_tick(x as f32)
}

fn range_of(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

fn to_image(buf: Vec<u8>, w: u32, h: u32) -> Result<RgbImage> {
    RgbImage::from_raw(w, h, buf).ok_or_else(|| err!("plot buffer has the wrong size"))
}

fn plot_err<E: std::fmt::Display>(e: E) -> crate::Error {
    err!("plot: {e}")
}

/// Draws the chart; the legend goes to the right of the plot area.
pub fn line_chart(c: &LineChart) -> Result<RgbImage> {
    let legend_w = c.series.iter().map(|s| render::text_width(&s.name, FS)).max().unwrap_or(0) + 60;
    let (top, bottom, left) = (56u32, 70u32, 100u32);
    // Wide enough for the title.
    let (w, h) = ((760 + legend_w).max(left + render::text_width(&c.title, FS) + 20), 560u32);
    let (x0, x1) = match &c.x_ticks {
        Some(t) if !t.is_empty() => {
            let (lo, hi) = range_of(t.iter().map(|p| p.0));
            (lo.min(t[0].0 - 0.3), hi.max(t[t.len() - 1].0 + 0.3))
        }
        _ => range_of(c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0))),
    };
    let (y0, y1) = c.y_range.unwrap_or_else(|| range_of(c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1))));
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let mut labels: Vec<(i64, i64, String, bool)> = vec![]; // x, y, text, centred
    let (px0, py0, px1, py1);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(top)
            .margin_bottom(bottom)
            .margin_left(left)
            .margin_right(legend_w + 20)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        let yt = nice_ticks(y0, y1);
        for &t in &yt {
            chart.draw_series(LineSeries::new([(x0, t), (x1, t)], GRID)).map_err(plot_err)?;
            let (_, py) = chart.backend_coord(&(x0, t));
            let s = tick_text(t);
            labels.push((left as i64 - 8 - render::text_width(&s, FS) as i64, py as i64 - 7, s, false));
        }
        let xt: Vec<(f64, String)> = match &c.x_ticks {
            Some(t) => t.clone(),
            None => nice_ticks(x0, x1).into_iter().map(|t| (t, tick_text(t))).collect(),
        };
        for (t, s) in &xt {
            chart.draw_series(LineSeries::new([(*t, y0), (*t, y1)], GRID)).map_err(plot_err)?;
            let (px, py) = chart.backend_coord(&(*t, y0));
            labels.push((px as i64, py as i64 + 8, s.clone(), true));
        }
        if y0 < 0.0 && y1 > 0.0 {
            chart.draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], RGBColor(150, 150, 150))).map_err(plot_err)?;
        }
        for (i, s) in c.series.iter().enumerate() {
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            chart.draw_series(LineSeries::new(pts.clone(), color(i).stroke_width(2))).map_err(plot_err)?;
            if pts.len() <= 12 {
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color(i).filled())))
                    .map_err(plot_err)?;
            }
        }
        let a = chart.backend_coord(&(x0, y1));
        let b = chart.backend_coord(&(x1, y0));
        (px0, py0, px1, py1) = (a.0, a.1, b.0, b.1);
        root.draw(&Rectangle::new([(px0, py0), (px1, py1)], RGBColor(60, 60, 60))).map_err(plot_err)?;
        // Legend swatches.
        for (i, _) in c.series.iter().enumerate() {
            let y = top as i32 + 10 + i as i32 * 26;
            let x = px1 + 20;
            root.draw(&PathElement::new(vec![(x, y + 7), (x + 30, y + 7)], color(i).stroke_width(3))).map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    let mut img = to_image(buf, w, h)?;
    for (x, y, s, centred) in labels {
        if centred {
            render::draw_text_centered(&mut img, x, y, &s, INK, FS);
        } else {
            render::draw_text(&mut img, x, y, &s, INK, FS);
        }
    }
    for (i, s) in c.series.iter().enumerate() {
        render::draw_text(&mut img, px1 as i64 + 58, top as i64 + 10 + i as i64 * 26, &s.name, INK, FS);
    }
    render::draw_text(&mut img, left as i64, 8, &c.title, INK, FS);
    render::draw_text_centered(&mut img, (px0 as i64 + px1 as i64) / 2, h as i64 - 30, &c.x_label, INK, FS);
    // A vertical y label would need rotated glyphs: put it above the axis instead.
    render::draw_text(&mut img, 8, py0 as i64 - 22, &c.y_label, INK, FS);
    Ok(img)
}

/// One bar: a name, a value and the half-width of its error bar.
#[derive(Debug, Clone)]
pub struct Bar {
    pub name: String,
    pub value: f64,
    pub err: f64,
}

/// Horizontal bars, drawn top to bottom in the given order (rank them first).
pub fn bar_chart(title: &str, x_label: &str, bars: &[Bar]) -> Result<RgbImage> {
    let name_w = bars.iter().map(|b| render::text_width(&b.name, FS)).max().unwrap_or(0) + 24;
    let row = 34u32;
    let (top, bottom) = (56u32, 70u32);
    let (w, h) = ((name_w + 720).max(render::text_width(title, FS) + 28), top + bottom + row * bars.len().max(1) as u32);
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let (mut lo, mut hi) = range_of(
        bars.iter()
            .flat_map(|b| [finite(b.value) - finite(b.err), finite(b.value) + finite(b.err)])
            .chain([0.0]),
    );
    if lo > 0.0 {
        lo = 0.0;
    }
    if hi < 0.0 {
        hi = 0.0;
    }
    // Room for the value labels right of the bars.
    hi += (hi - lo) * 0.2;
    let k = bars.len().max(1) as f64;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let mut labels: Vec<(i64, i64, String)> = vec![];
    let (px0, px1);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(top)
            .margin_bottom(bottom)
            .margin_left(name_w)
            .margin_right(100)
            .build_cartesian_2d(lo..hi, 0.0..k)
            .map_err(plot_err)?;
        for t in nice_ticks(lo, hi) {
            chart.draw_series(LineSeries::new([(t, 0.0), (t, k)], GRID)).map_err(plot_err)?;
            let (px, py) = chart.backend_coord(&(t, 0.0));
            let s = tick_text(t);
            labels.push((px as i64 - render::text_width(&s, FS) as i64 / 2, py as i64 + 8, s));
        }
        for (i, b) in bars.iter().enumerate() {
            // Row i counts from the top.
            let yc = k - i as f64 - 0.5;
            let v = finite(b.value);
            chart
                .draw_series([Rectangle::new([(0.0, yc - 0.32), (v, yc + 0.32)], color(i).filled())])
                .map_err(plot_err)?;
            if b.err.is_finite() && b.err > 0.0 {
                let black = RGBColor(40, 40, 40);
                chart.draw_series(LineSeries::new([(v - b.err, yc), (v + b.err, yc)], black)).map_err(plot_err)?;
                for e in [v - b.err, v + b.err] {
                    chart.draw_series(LineSeries::new([(e, yc - 0.15), (e, yc + 0.15)], black)).map_err(plot_err)?;
                }
            }
            let (_, py) = chart.backend_coord(&(0.0, yc));
            labels.push((8, py as i64 - 7, b.name.clone()));
            let (px, _) = chart.backend_coord(&(v.max(v + b.err.max(0.0)).max(0.0), yc));
            let s = if b.value.is_finite() { format!("{:.4}", b.value) } else { "n/a".into() };
            labels.push((px as i64 + 6, py as i64 - 7, s));
        }
        let a = chart.backend_coord(&(lo, k));
        let z = chart.backend_coord(&(hi, 0.0));
        (px0, px1) = (a.0, z.0);
        root.draw(&Rectangle::new([a, z], RGBColor(60, 60, 60))).map_err(plot_err)?;
        let (zx, _) = chart.backend_coord(&(0.0, 0.0));
        root.draw(&PathElement::new(vec![(zx, a.1), (zx, z.1)], RGBColor(60, 60, 60))).map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    let mut img = to_image(buf, w, h)?;
    for (x, y, s) in labels {
        render::draw_text(&mut img, x, y, &s, INK, FS);
    }
    render::draw_text(&mut img, 8, 14, title, INK, FS);
    render::draw_text_centered(&mut img, (px0 as i64 + px1 as i64) / 2, h as i64 - 30, x_label, INK, FS);
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(&nice_ticks(0.0, 1.0), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]));
        assert!(close(&nice_ticks(-0.13, 0.87), &[0.0, 0.2, 0.4, 0.6, 0.8]));
        assert!(close(&nice_ticks(-3.0, 14.0), &[0.0, 5.0, 10.0]));
    }

    /// Shapes come from plotters and text from the bitmap font, with no font files.
    #[test]
    fn charts_render_lines_bars_and_text() {
        let c = LineChart {
            title: "deletion".into(),
            x_label: "fraction removed".into(),
            y_label: "p(class)".into(),
            series: vec![
                Series { name: "a".into(), points: vec![(0.0, 1.0), (0.5, 0.4), (1.0, 0.1)] },
                Series { name: "b".into(), points: vec![(0.0, 1.0), (1.0, 0.9)] },
            ],
            y_range: Some((0.0, 1.0)),
            x_ticks: None,
        };
        let img = line_chart(&c).unwrap();
        let has = |img: &RgbImage, col: RGBColor| img.pixels().any(|p| p.0 == [col.0, col.1, col.2]);
        assert!(has(&img, color(0)) && has(&img, color(1)));
        assert!(img.pixels().any(|p| p.0 == INK.0), "labels drawn");
        let b = bar_chart(
            "AUC",
            "value",
            &[Bar { name: "x".into(), value: 0.3, err: 0.05 }, Bar { name: "y".into(), value: -0.1, err: f64::NAN }],
        )
        .unwrap();
        assert!(has(&b, color(0)) && has(&b, color(1)));
        assert_eq!(b.height(), 56 + 70 + 2 * 34);
    }
}
