//! File output for scripts: CSV, JSON, text, tensors and line plots. Every path is
//! resolved inside the output directory, and every file is written atomically.

use crate::api::Host;
use crate::convert::*;
use crate::types::{ExplanationValue, TensorValue};
use lumen_core::io::{save_safetensors, write_atomic};
use rhai::{Array, Dynamic, Engine, Map, FLOAT};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;

fn csv_rows(header: &[String], rows: &Array) -> RResult<String> {
    let mut s = header.iter().map(|h| csv_field(&h.clone().into())).collect::<Vec<_>>().join(",");
    s.push('\n');
    for (i, r) in rows.iter().enumerate() {
        let fields: Vec<String> = if let Some(m) = r.clone().try_cast::<Map>() {
            if let Some(k) = m.keys().find(|k| !header.iter().any(|h| h == k.as_str())) {
                return Err(rt(format!("write_csv: row {i} has column '{k}', which is not in the header")));
            }
            header.iter().map(|h| m.get(h.as_str()).map(csv_field).unwrap_or_default()).collect()
        } else if let Some(a) = r.clone().try_cast::<Array>() {
            if a.len() != header.len() {
                return Err(rt(format!("write_csv: row {i} has {} fields, the header {}", a.len(), header.len())));
            }
            a.iter().map(csv_field).collect()
        } else {
            return Err(rt(format!("write_csv: row {i} is a {}, expected a map or an array", r.type_name())));
        };
        s.push_str(&fields.join(","));
        s.push('\n');
    }
    Ok(s)
}

/// The header of rows given as maps: the first row's keys, then any new keys in
/// order of appearance.
fn header_of(rows: &Array) -> RResult<Vec<String>> {
    let mut h: Vec<String> = vec![];
    for (i, r) in rows.iter().enumerate() {
        let m = r
            .clone()
            .try_cast::<Map>()
            .ok_or_else(|| rt(format!("write_csv: row {i} is a {}; without a header, rows must be maps", r.type_name())))?;
        for k in m.keys() {
            if !h.iter().any(|x| x == k.as_str()) {
                h.push(k.to_string());
            }
        }
    }
    Ok(h)
}

/// A line plot as SVG: one polyline per series, axes with ticks, a legend.
pub fn line_plot_svg(x: &[f64], series: &[(String, Vec<f64>)], title: &str, xlabel: &str, ylabel: &str) -> RResult<String> {
    if x.is_empty() {
        return Err(rt("save_plot: no x values"));
    }
    for (name, ys) in series {
        if ys.len() != x.len() {
            return Err(rt(format!("save_plot: series '{name}' has {} values for {} x values", ys.len(), x.len())));
        }
    }
    let finite = |v: &f64| v.is_finite();
    let (mut x0, mut x1) = (x.iter().copied().filter(finite).fold(f64::INFINITY, f64::min), x.iter().copied().filter(finite).fold(f64::NEG_INFINITY, f64::max));
    let ys = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(finite);
    let (mut y0, mut y1) = ys.clone().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let (w, h, l, r, t, b) = (720.0, 440.0, 70.0, 190.0, 40.0, 55.0);
    let px = |v: f64| l + (v - x0) / (x1 - x0) * (w - l - r);
    let py = |v: f64| h - b - (v - y0) / (y1 - y0) * (h - t - b);
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#, (l + w - r) / 2.0, esc(title));
    let _ = writeln!(s, r#"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - b, w - r, h - b);
    let _ = writeln!(s, r#"<line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>"#, h - b);
    for i in 0..=5 {
        let (xv, yv) = (x0 + (x1 - x0) * i as f64 / 5.0, y0 + (y1 - y0) * i as f64 / 5.0);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, px(xv), h - b + 18.0, tick(xv));
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, l - 6.0, py(yv) + 4.0, tick(yv));
        let _ = writeln!(s, r##"<line x1="{l}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#ddd"/>"##, py(yv), w - r, py(yv));
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, (l + w - r) / 2.0, h - 12.0, esc(xlabel));
    let _ = writeln!(s, r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#, (t + h - b) / 2.0, (t + h - b) / 2.0, esc(ylabel));
    for (k, (name, ys)) in series.iter().enumerate() {
        let c = colors[k % colors.len()];
        let pts: Vec<String> = x.iter().zip(ys).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b))).collect();
        let _ = writeln!(s, r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        for p in &pts {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{c}"/>"#);
        }
        let ly = t + 10.0 + 20.0 * k as f64;
        let _ = writeln!(s, r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/>"#, w - r + 15.0, w - r + 40.0);
        let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, w - r + 46.0, ly + 4.0, esc(name));
    }
    s.push_str("</svg>\n");
    Ok(s)
}

fn tick(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e4) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

fn numbers(a: &Array, what: &str) -> RResult<Vec<f64>> {
    a.iter().map(|d| as_f64(d).ok_or_else(|| rt(format!("{what}: expected numbers, got {}", d.type_name())))).collect()
}

fn plot(h: &Host, path: &str, x: Array, series: Map, opts: Map) -> RResult<String> {
    if let Some(k) = opts.keys().find(|k| !["title", "xlabel", "ylabel"].contains(&k.as_str())) {
        return Err(rt(format!("save_plot: unknown option '{k}' (known: title, xlabel, ylabel)")));
    }
    if !path.ends_with(".svg") {
        return Err(rt(format!("save_plot: '{path}' must end in .svg")));
    }
    let get = |k: &str| opts.get(k).map(|d| d.to_string()).unwrap_or_default();
    let x = numbers(&x, "save_plot x")?;
    let series: Vec<(String, Vec<f64>)> = series
        .iter()
        .map(|(k, v)| {
            let a = v.clone().try_cast::<Array>().ok_or_else(|| rt(format!("save_plot: series '{k}' is not an array")))?;
            Ok((k.to_string(), numbers(&a, "save_plot series")?))
        })
        .collect::<RResult<_>>()?;
    let svg = line_plot_svg(&x, &series, &get("title"), &get("xlabel"), &get("ylabel"))?;
    let p = lift(h.out.resolve(path))?;
    lift(write_atomic(&p, svg.as_bytes()))?;
    Ok(p.display().to_string())
}

pub fn register(engine: &mut Engine, host: &Rc<Host>) {
    let h = host.clone();
    engine.register_fn("out_path", move |rel: &str| -> RResult<String> { Ok(lift(h.out.resolve(rel))?.display().to_string()) });
    let h = host.clone();
    engine.register_fn("write_text", move |path: &str, text: &str| -> RResult<String> {
        let p = lift(h.out.resolve(path))?;
        lift(write_atomic(&p, text.as_bytes()))?;
        Ok(p.display().to_string())
    });
    let h = host.clone();
    engine.register_fn("write_json", move |path: &str, v: Dynamic| -> RResult<String> {
        let p = lift(h.out.resolve(path))?;
        let text = serde_json::to_string_pretty(&dynamic_to_json(&v)?).map_err(rt)?;
        lift(write_atomic(&p, text.as_bytes()))?;
        Ok(p.display().to_string())
    });
    engine.register_fn("to_json", |v: Dynamic| -> RResult<String> { serde_json::to_string(&dynamic_to_json(&v)?).map_err(rt) });
    let h = host.clone();
    engine.register_fn("write_csv", move |path: &str, rows: Array| -> RResult<String> {
        let header = header_of(&rows)?;
        let p = lift(h.out.resolve(path))?;
        lift(write_atomic(&p, csv_rows(&header, &rows)?.as_bytes()))?;
        Ok(p.display().to_string())
    });
    let h = host.clone();
    engine.register_fn("write_csv", move |path: &str, header: Array, rows: Array| -> RResult<String> {
        let header: Vec<String> = header.iter().map(|d| d.to_string()).collect();
        let p = lift(h.out.resolve(path))?;
        lift(write_atomic(&p, csv_rows(&header, &rows)?.as_bytes()))?;
        Ok(p.display().to_string())
    });
    let h = host.clone();
    engine.register_fn("save_tensor", move |path: &str, t: TensorValue| -> RResult<String> {
        let p = lift(h.out.resolve(path))?;
        lift(save_safetensors(&p, &HashMap::from([("tensor".to_string(), t.0)])))?;
        Ok(p.display().to_string())
    });
    let h = host.clone();
    engine.register_fn("save_tensor", move |path: &str, e: ExplanationValue| -> RResult<String> {
        let p = lift(h.out.resolve(path))?;
        let map: HashMap<String, _> = e.0.tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        lift(save_safetensors(&p, &map))?;
        Ok(p.display().to_string())
    });
    let h = host.clone();
    engine.register_fn("save_plot", move |path: &str, x: Array, series: Map| plot(&h, path, x, series, Map::new()));
    let h = host.clone();
    engine.register_fn("save_plot", move |path: &str, x: Array, series: Map, opts: Map| plot(&h, path, x, series, opts));
    // Tidy numbers for CSV and JSON columns.
    engine.register_fn("round_to", |x: FLOAT, digits: rhai::INT| {
        let f = 10f64.powi(digits.clamp(0, 15) as i32);
        (x * f).round() / f
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn csv_quotes_and_orders_columns() {
        let mut r1 = Map::new();
        r1.insert("method".into(), "a,b".into());
        r1.insert("drop".into(), (0.5 as FLOAT).into());
        let rows: Array = vec![r1.into()];
        let h = header_of(&rows).unwrap();
        let s = csv_rows(&h, &rows).unwrap();
        assert_eq!(s, "drop,method\n0.5,\"a,b\"\n");
    }
    #[test]
    fn svg_plot_has_series_and_checks_lengths() {
        let s = line_plot_svg(&[0.0, 1.0], &[("sal".into(), vec![0.1, 0.9])], "t", "x", "y").unwrap();
        assert!(s.contains("<polyline") && s.contains(">sal<"));
        assert!(line_plot_svg(&[0.0, 1.0], &[("s".into(), vec![0.1])], "", "", "").is_err());
    }
}
