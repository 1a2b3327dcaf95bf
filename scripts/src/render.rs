//! Pictures from scripts: single heatmaps, input images and galleries, drawn by
//! `lumen_core::render` and written atomically under the output directory.

use crate::api::Host;
use crate::convert::*;
use crate::types::{ExplanationValue, TensorValue};
use lumen_core::candle::Tensor;
use lumen_core::render::{self, Grid, HeatmapOptions, Reduce};
use rhai::{Array, Dynamic, Engine, Map};
use std::rc::Rc;

const HEATMAP_KEYS: &[&str] =
    &["absolute", "percentile", "times_input", "overlay", "input", "scale", "legend", "reduce", "input_range"];

fn flag(m: &Map, k: &str, default: bool) -> RResult<bool> {
    match m.get(k) {
        None => Ok(default),
        Some(d) => d.as_bool().map_err(|t| rt(format!("option '{k}': expected true or false, got {t}"))),
    }
}

fn number(m: &Map, k: &str, default: f64) -> RResult<f64> {
    match m.get(k) {
        None => Ok(default),
        Some(d) => as_f64(d).ok_or_else(|| rt(format!("option '{k}': expected a number, got {}", d.type_name()))),
    }
}

/// Heatmap options from a script map; `extra` are keys the caller handles itself.
fn heatmap_options(m: &Map, extra: &[&str], what: &str) -> RResult<(HeatmapOptions, Option<Tensor>)> {
    if let Some(k) = m.keys().find(|k| !HEATMAP_KEYS.contains(&k.as_str()) && !extra.contains(&k.as_str())) {
        let mut known: Vec<&str> = HEATMAP_KEYS.to_vec();
        known.extend(extra);
        return Err(rt(format!("{what}: unknown option '{k}' (known: {})", known.join(", "))));
    }
    let d = HeatmapOptions::default();
    let input = match m.get("input") {
        None => None,
        Some(v) if v.is_unit() => None,
        Some(v) => Some(tensor_of(v, "option 'input'")?),
    };
    let reduce = match m.get("reduce") {
        None => d.reduce,
        Some(v) => lift(Reduce::parse(&v.to_string()))?,
    };
    let input_range = match m.get("input_range") {
        None => d.input_range,
        Some(v) => {
            let a = v.clone().try_cast::<Array>().filter(|a| a.len() == 2).ok_or_else(|| rt("option 'input_range': expected [lo, hi]"))?;
            let lo = as_f64(&a[0]).ok_or_else(|| rt("option 'input_range': expected numbers"))?;
            let hi = as_f64(&a[1]).ok_or_else(|| rt("option 'input_range': expected numbers"))?;
            (lo as f32, hi as f32)
        }
    };
    let scale = number(m, "scale", d.scale as f64)?;
    if !(1.0..=64.0).contains(&scale) {
        return Err(rt(format!("option 'scale': must be between 1 and 64, got {scale}")));
    }
    let opts = HeatmapOptions {
        absolute: flag(m, "absolute", d.absolute)?,
        reduce,
        percentile: number(m, "percentile", d.percentile as f64)? as f32,
        times_input: flag(m, "times_input", d.times_input)?,
        overlay: flag(m, "overlay", d.overlay)?,
        scale: scale as u32,
        legend: flag(m, "legend", d.legend)?,
        input_range,
        ..d
    };
    if !(0.0..=100.0).contains(&opts.percentile) {
        return Err(rt(format!("option 'percentile': must be in [0, 100], got {}", opts.percentile)));
    }
    Ok((opts, input))
}

/// The map to draw from a tensor or an explanation (its attribution).
fn tensor_of(d: &Dynamic, what: &str) -> RResult<Tensor> {
    if let Some(t) = d.clone().try_cast::<TensorValue>() {
        Ok(t.0)
    } else if let Some(e) = d.clone().try_cast::<ExplanationValue>() {
        Ok(e.0.attribution().clone())
    } else if let Some(s) = d.clone().try_cast::<crate::types::Sample>() {
        Ok(s.image)
    } else {
        Err(rt(format!("{what}: expected a tensor or an explanation, got {}", d.type_name())))
    }
}

fn save_heatmap(h: &Host, path: &str, x: &Dynamic, opts: &Map) -> RResult<String> {
    let (o, input) = heatmap_options(opts, &[], "save_heatmap")?;
    let img = lift(render::render(&tensor_of(x, "save_heatmap")?, input.as_ref(), &o))?;
    let p = lift(h.out.resolve(path))?;
    lift(lumen_core::io::save_png(&p, &img))?;
    Ok(p.display().to_string())
}

/// `gallery(path, rows, opts)`: each row is `#{label, input, maps}`; `maps` holds
/// explanations or tensors (`()` leaves a cell empty, `#{image: t}` shows a picture). The first column shows the
/// input when rows have one. Writes the PNG and an HTML page beside it.
fn gallery(h: &Host, path: &str, rows: &Array, opts: &Map) -> RResult<String> {
    let (o, _) = heatmap_options(opts, &["columns", "title"], "gallery")?;
    if opts.contains_key("input") {
        return Err(rt("gallery: give each row its own 'input'"));
    }
    if !path.ends_with(".png") {
        return Err(rt(format!("gallery: '{path}' must end in .png")));
    }
    struct Row {
        label: String,
        input: Option<Tensor>,
        maps: Vec<Dynamic>,
    }
    let rows: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let m = r.clone().try_cast::<Map>().ok_or_else(|| rt(format!("gallery: row {i} is a {}, expected #{{label, input, maps}}", r.type_name())))?;
            if let Some(k) = m.keys().find(|k| !["label", "input", "maps"].contains(&k.as_str())) {
                return Err(rt(format!("gallery: row {i} has unknown key '{k}' (known: label, input, maps)")));
            }
            let maps = m.get("maps").and_then(|v| v.clone().try_cast::<Array>()).ok_or_else(|| rt(format!("gallery: row {i} needs 'maps', an array")))?;
            Ok(Row {
                label: m.get("label").map(|d| d.to_string()).unwrap_or_default(),
                input: match m.get("input") {
                    Some(v) if !v.is_unit() => Some(tensor_of(v, "gallery input")?),
                    _ => None,
                },
                maps,
            })
        })
        .collect::<RResult<_>>()?;
    if rows.is_empty() {
        return Err(rt("gallery: no rows"));
    }
    let with_input = rows.iter().any(|r| r.input.is_some());
    let nmaps = rows.iter().map(|r| r.maps.len()).max().unwrap_or(0);
    let off = usize::from(with_input);
    let mut grid = Grid::new(rows.len(), nmaps + off);
    grid.title = opts.get("title").map(|t| t.to_string());
    // Column titles: given, or the method names of the first explanation in each column.
    let given: Option<Vec<String>> = opts.get("columns").map(|c| {
        c.clone().try_cast::<Array>().map(|a| a.iter().map(|d| d.to_string()).collect()).unwrap_or_default()
    });
    if with_input {
        grid.set_col_label(0, "input");
    }
    let mut method_rows: Vec<Vec<String>> = vec![];
    for c in 0..nmaps {
        let from_expl = rows.iter().find_map(|r| r.maps.get(c).and_then(|d| d.clone().try_cast::<ExplanationValue>()));
        let title = given
            .as_ref()
            .and_then(|g| g.get(c).cloned())
            .or_else(|| from_expl.as_ref().map(|e| e.0.method.clone()))
            .unwrap_or_else(|| format!("map {}", c + 1));
        if let Some(e) = &from_expl {
            let params: Vec<String> = e.0.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            method_rows.push(vec![title.clone(), e.0.method.clone(), params.join(" ")]);
        }
        grid.set_col_label(c + off, title);
    }
    for (i, r) in rows.iter().enumerate() {
        grid.set_row_label(i, r.label.clone());
        if let Some(x) = &r.input {
            grid.set(i, 0, lift(render::input_image(x, &o))?);
        }
        for (c, m) in r.maps.iter().enumerate() {
            if m.is_unit() {
                continue;
            }
            // `#{image: t}` draws a picture (a counterfactual, say) in grey, not as a map.
            let img = match m.clone().try_cast::<Map>() {
                Some(cell) => {
                    let t = cell.get("image").ok_or_else(|| rt(format!("gallery: row {i}: a map cell must be #{{image: tensor}}")))?;
                    lift(render::input_image(&tensor_of(t, "gallery image")?, &o))?
                }
                None => lift(render::render(&tensor_of(m, "gallery map")?, r.input.as_ref(), &o))?,
            };
            grid.set(i, c + off, img);
        }
    }
    let img = grid.render();
    let p = lift(h.out.resolve(path))?;
    lift(lumen_core::io::save_png(&p, &img))?;
    let legend = if o.absolute {
        "Absolute values on a sequential scale"
    } else {
        "Signed values: red is evidence for the target, blue against, white none"
    };
    let body = format!(
        "<p>{}; each map capped at its {}th percentile of |value|.</p>\n{}",
        legend,
        o.percentile,
        render::table(&["column", "method", "parameters"], &method_rows)
    );
    let title = grid.title.clone().unwrap_or_else(|| "lumen gallery".into());
    // The page sits beside the PNG, which is inside the output directory.
    lift(render::write_page_for_png(&p, &title, &body))?;
    Ok(p.display().to_string())
}

pub fn register(engine: &mut Engine, host: &Rc<Host>) {
    let h = host.clone();
    engine.register_fn("save_heatmap", move |path: &str, x: Dynamic| save_heatmap(&h, path, &x, &Map::new()));
    let h = host.clone();
    engine.register_fn("save_heatmap", move |path: &str, x: Dynamic, o: Map| save_heatmap(&h, path, &x, &o));
    let h = host.clone();
    engine.register_fn("save_image", move |path: &str, x: TensorValue| -> RResult<String> {
        let img = lift(render::input_image(&x.0, &HeatmapOptions::default()))?;
        let p = lift(h.out.resolve(path))?;
        lift(lumen_core::io::save_png(&p, &img))?;
        Ok(p.display().to_string())
    });
    let h = host.clone();
    engine.register_fn("gallery", move |path: &str, rows: Array| gallery(&h, path, &rows, &Map::new()));
    let h = host.clone();
    engine.register_fn("gallery", move |path: &str, rows: Array, o: Map| gallery(&h, path, &rows, &o));
}
