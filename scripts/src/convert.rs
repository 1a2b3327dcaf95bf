//! Conversions between Rhai values and lumen's: parameters, targets and JSON.

use crate::types::{MethodSpec, TensorValue};
use lumen_core::{Params, Target, Value};
use rhai::{Array, Dynamic, EvalAltResult, Map, Position, FLOAT, INT};

pub type RResult<T> = Result<T, Box<EvalAltResult>>;

/// A runtime error that Rhai places at the calling line and `try/catch` receives as
/// its message.
pub fn rt(msg: impl std::fmt::Display) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(msg.to_string().into(), Position::NONE).into()
}

/// Maps a core error into a script error.
pub fn lift<T>(r: lumen_core::Result<T>) -> RResult<T> {
    r.map_err(rt)
}

pub fn as_f64(d: &Dynamic) -> Option<f64> {
    if let Some(f) = d.clone().try_cast::<FLOAT>() {
        Some(f)
    } else {
        d.clone().try_cast::<INT>().map(|i| i as f64)
    }
}

pub fn as_usize(d: &Dynamic, what: &str) -> RResult<usize> {
    match d.clone().try_cast::<INT>() {
        Some(i) if i >= 0 => Ok(i as usize),
        Some(i) => Err(rt(format!("{what}: expected a non-negative integer, got {i}"))),
        None => Err(rt(format!("{what}: expected an integer, got {}", d.type_name()))),
    }
}

pub fn usize_list(d: &Dynamic, what: &str) -> RResult<Vec<usize>> {
    if let Some(a) = d.clone().try_cast::<Array>() {
        a.iter().map(|x| as_usize(x, what)).collect()
    } else {
        Ok(vec![as_usize(d, what)?])
    }
}

/// Adds one script value to `params` under `key`. A method value becomes its name
/// plus its own parameters under `key.`, which is how nested methods are passed.
pub fn add_param(params: &mut Params, method: &str, key: &str, d: &Dynamic) -> RResult<()> {
    let bad = |why: String| rt(format!("{method}: bad parameter '{key}': {why}"));
    if d.is_unit() {
        return Ok(()); // `()` means "use the default"
    }
    if let Some(m) = d.clone().try_cast::<MethodSpec>() {
        params.set(key, m.name.as_str());
        for (k, v) in m.params.iter() {
            params.set(&format!("{key}.{k}"), v.clone());
        }
        return Ok(());
    }
    let v = if let Some(i) = d.clone().try_cast::<INT>() {
        Value::Int(i)
    } else if let Some(f) = d.clone().try_cast::<FLOAT>() {
        Value::Float(f)
    } else if let Some(b) = d.clone().try_cast::<bool>() {
        Value::Bool(b)
    } else if d.is_string() || d.is_char() {
        Value::Str(d.to_string())
    } else if let Some(t) = d.clone().try_cast::<TensorValue>() {
        Value::Tensor(t.0)
    } else if let Some(a) = d.clone().try_cast::<Array>() {
        let nums: Option<Vec<f64>> = a.iter().map(as_f64).collect();
        Value::List(nums.ok_or_else(|| bad("expected an array of numbers".into()))?)
    } else {
        return Err(bad(format!("a {} cannot be a parameter value", d.type_name())));
    };
    params.set(key, v);
    Ok(())
}

/// Converts a Rhai map of parameters.
pub fn params_from_map(method: &str, map: &Map) -> RResult<Params> {
    let mut p = Params::new();
    for (k, v) in map {
        add_param(&mut p, method, k.as_str(), v)?;
    }
    Ok(p)
}

/// A target from a script value, for a batch of `b` examples:
/// `()`/"predicted", a class, an array of classes (per example), a string in the CLI
/// syntax ("4-9"), `#{a: 4, b: 9}` (contrast), `#{layer, channel, position}` (hidden unit).
pub fn target_from(d: &Dynamic, b: usize) -> RResult<Target> {
    if d.is_unit() {
        return Ok(Target::Predicted);
    }
    if let Some(i) = d.clone().try_cast::<INT>() {
        return Ok(Target::Class(as_usize(&i.into(), "target")?));
    }
    if d.is_string() {
        return lift(Target::parse(&d.to_string()));
    }
    if d.is_array() {
        return Ok(Target::Classes(usize_list(d, "target")?));
    }
    if let Some(m) = d.clone().try_cast::<Map>() {
        let per_example = |v: Vec<usize>, what: &str| -> RResult<Vec<usize>> {
            match v.len() {
                1 => Ok(vec![v[0]; b]),
                n if n == b => Ok(v),
                n => Err(rt(format!("target.{what}: {n} classes for a batch of {b}"))),
            }
        };
        if let (Some(a), Some(bb)) = (m.get("a"), m.get("b")) {
            if let Some(k) = m.keys().find(|k| !["a", "b"].contains(&k.as_str())) {
                return Err(rt(format!("target: unknown key '{k}' in a contrast (known: a, b)")));
            }
            return Ok(Target::Contrast {
                a: per_example(usize_list(a, "target.a")?, "a")?,
                b: per_example(usize_list(bb, "target.b")?, "b")?,
            });
        }
        if let Some(layer) = m.get("layer") {
            if let Some(k) = m.keys().find(|k| !["layer", "channel", "position"].contains(&k.as_str())) {
                return Err(rt(format!("target: unknown key '{k}' for a hidden unit (known: layer, channel, position)")));
            }
            let channel = as_usize(m.get("channel").ok_or_else(|| rt("target: a hidden unit needs 'channel'"))?, "target.channel")?;
            let position = match m.get("position") {
                None => None,
                Some(p) if p.is_unit() => None,
                Some(p) => Some(usize_list(p, "target.position")?),
            };
            return Ok(Target::Hidden { layer: layer.to_string(), channel, position });
        }
        return Err(rt("target: a map must be #{a, b} (contrast) or #{layer, channel, position} (hidden unit)"));
    }
    Err(rt(format!("target: a {} is not a target", d.type_name())))
}

/// A readable form of a target, for scripts and CSV files.
pub fn target_string(t: &Target) -> String {
    let join = |v: &[usize]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    match t {
        Target::Predicted => "predicted".into(),
        Target::Class(c) => c.to_string(),
        Target::Classes(v) => join(v),
        Target::Contrast { a, b } => format!("{}-{}", join(a), join(b)),
        Target::Hidden { layer, channel, position } => match position {
            Some(p) => format!("{layer}[{channel}]@{}", join(p)),
            None => format!("{layer}[{channel}]"),
        },
        other => format!("{other:?}"),
    }
}

pub fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    use serde_json::Value as J;
    match v {
        J::Null => Dynamic::UNIT,
        J::Bool(b) => (*b).into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => (i as INT).into(),
            None => (n.as_f64().unwrap_or(f64::NAN) as FLOAT).into(),
        },
        J::String(s) => s.clone().into(),
        J::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        J::Object(o) => {
            Dynamic::from_map(o.iter().map(|(k, v)| (k.as_str().into(), json_to_dynamic(v))).collect())
        }
    }
}

/// JSON for a script value. Tensors become nested arrays only when small; larger
/// ones are summarised (write them with `save_tensor`).
pub fn dynamic_to_json(d: &Dynamic) -> RResult<serde_json::Value> {
    use serde_json::Value as J;
    Ok(if d.is_unit() {
        J::Null
    } else if let Some(b) = d.clone().try_cast::<bool>() {
        J::Bool(b)
    } else if let Some(i) = d.clone().try_cast::<INT>() {
        J::from(i)
    } else if let Some(f) = d.clone().try_cast::<FLOAT>() {
        if f.is_finite() {
            J::from(f)
        } else {
            J::Null
        }
    } else if d.is_string() || d.is_char() {
        J::String(d.to_string())
    } else if let Some(a) = d.clone().try_cast::<Array>() {
        J::Array(a.iter().map(dynamic_to_json).collect::<RResult<_>>()?)
    } else if let Some(m) = d.clone().try_cast::<Map>() {
        J::Object(m.iter().map(|(k, v)| Ok((k.to_string(), dynamic_to_json(v)?))).collect::<RResult<_>>()?)
    } else if let Some(t) = d.clone().try_cast::<TensorValue>() {
        t.to_json()?
    } else if let Some(e) = d.clone().try_cast::<crate::types::ExplanationValue>() {
        e.0.summary_json()
    } else if let Some(m) = d.clone().try_cast::<MethodSpec>() {
        serde_json::json!({"method": m.name, "params": m.resolved()})
    } else {
        J::String(d.to_string())
    })
}

/// One CSV field, quoted when needed.
pub fn csv_field(d: &Dynamic) -> String {
    let s = if let Some(f) = d.clone().try_cast::<FLOAT>() {
        format!("{f}")
    } else if d.is_unit() {
        String::new()
    } else {
        d.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
