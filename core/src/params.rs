//! Parameter schemas and values, shared by the CLI, Rhai and `lumen list`.
//!
//! Methods declare a static schema ([`ParamSpec`]); users pass [`Params`] (strings
//! from the CLI, typed values from Rhai). [`Args`] checks the two against each other
//! and hands typed values to the method's config. Nested methods take their own
//! parameters under a dotted prefix: `inner=integrated_gradients inner.steps=20`.

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::fmt;

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    Bool,
    Int,
    Float,
    Str,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// The name of another registered method; its parameters use `name.` as prefix.
    Method,
    /// A tensor: a value from a script, or a path to a `.safetensors` or `.png` file.
    Tensor,
    /// A comma-separated list of numbers.
    FloatList,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamKind::Bool => write!(f, "bool"),
            ParamKind::Int => write!(f, "int"),
            ParamKind::Float => write!(f, "float"),
            ParamKind::Str => write!(f, "string"),
            ParamKind::Choice(c) => write!(f, "{}", c.join("|")),
            ParamKind::Method => write!(f, "method"),
            ParamKind::Tensor => write!(f, "tensor"),
            ParamKind::FloatList => write!(f, "float list"),
        }
    }
}

/// One entry of a method's parameter schema.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The default as it would be typed on the command line; empty means "none".
    pub default: &'static str,
    pub doc: &'static str,
    /// The largest value an integer parameter accepts (inclusive); `None`: any.
    pub max: Option<i64>,
}

/// Upper bound of every `batch_size` parameter.
pub const MAX_BATCH_SIZE: i64 = 4096;

impl ParamSpec {
    pub const fn new(name: &'static str, kind: ParamKind, default: &'static str, doc: &'static str) -> Self {
        ParamSpec { name, kind, default, doc, max: None }
    }

    /// Sets the upper bound of an integer parameter: `ParamSpec::new(..).max(10_000)`.
    pub const fn max(mut self, max: i64) -> Self {
        self.max = Some(max);
        self
    }

    /// The type as `lumen list` shows it, with the bound: `int ≤ 10000`.
    pub fn kind_text(&self) -> String {
        match self.max {
            Some(m) => format!("{} ≤ {m}", self.kind),
            None => self.kind.to_string(),
        }
    }
}

/// A parameter value.
#[derive(Debug, Clone)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<f64>),
    Tensor(Tensor),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s}"),
            Value::List(v) => {
                write!(f, "{}", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))
            }
            Value::Tensor(t) => write!(f, "<tensor {:?}>", t.dims()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}
impl From<i64> for Value {
    fn from(x: i64) -> Self {
        Value::Int(x)
    }
}
impl From<usize> for Value {
    fn from(x: usize) -> Self {
        Value::Int(x as i64)
    }
}
impl From<bool> for Value {
    fn from(x: bool) -> Self {
        Value::Bool(x)
    }
}
impl From<Tensor> for Value {
    fn from(x: Tensor) -> Self {
        Value::Tensor(x)
    }
}

/// User-supplied parameters, flat with dotted keys for nested methods.
#[derive(Debug, Clone, Default)]
pub struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style insert.
    pub fn with(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.values.insert(key.to_string(), v.into());
        self
    }

    pub fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.values.insert(key.to_string(), v.into());
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.values.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Parses `key=value` strings (the CLI's `--param`).
    pub fn parse_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Params> {
        let mut p = Params::new();
        for s in pairs {
            let s = s.as_ref();
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| Error::msg(format!("parameter '{s}' is not of the form name=value")))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(Error::msg(format!("parameter '{s}' has an empty name")));
            }
            p.set(k, v.trim());
        }
        Ok(p)
    }

    /// The parameters under `prefix.`, with the prefix removed.
    pub fn sub(&self, prefix: &str) -> Params {
        let pre = format!("{prefix}.");
        Params {
            values: self
                .values
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&pre).map(|r| (r.to_string(), v.clone())))
                .collect(),
        }
    }
}

/// An integer as typed: `250`, or a whole number in float notation (`1e4`); `None`
/// for anything else, including whole numbers beyond the i64 range.
fn parse_int(x: &str) -> Option<i64> {
    if let Ok(i) = x.parse::<i64>() {
        return Some(i);
    }
    let f: f64 = x.parse().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64)
}

/// Parameters checked against a schema, with typed getters that fall back to defaults.
#[derive(Debug, Clone)]
pub struct Args {
    method: String,
    schema: &'static [ParamSpec],
    params: Params,
}

impl Args {
    /// Checks names and types; the error names the offending parameter.
    pub fn new(method: &str, schema: &'static [ParamSpec], params: &Params) -> Result<Args> {
        let args = Args { method: method.to_string(), schema, params: params.clone() };
        for (k, _) in params.iter() {
            let top = k.split('.').next().unwrap_or(k);
            let spec = schema.iter().find(|s| s.name == top).ok_or_else(|| Error::UnknownParameter {
                method: method.to_string(),
                name: k.clone(),
                known: schema.iter().map(|s| s.name.to_string()).collect(),
            })?;
            if top != k && spec.kind != ParamKind::Method {
                return Err(Error::UnknownParameter {
                    method: method.to_string(),
                    name: k.clone(),
                    known: schema.iter().map(|s| s.name.to_string()).collect(),
                });
            }
        }
        for s in schema {
            if s.kind == ParamKind::Tensor {
                continue; // loaded lazily, needs a device
            }
            if params.get(s.name).is_some() || !s.default.is_empty() {
                args.typed(s)?;
            }
        }
        Ok(args)
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    fn spec(&self, name: &str) -> Result<&ParamSpec> {
        self.schema.iter().find(|s| s.name == name).ok_or_else(|| {
            Error::msg(format!("internal: {} asked for '{name}', which is not in its schema", self.method))
        })
    }

    fn bad(&self, name: &str, reason: impl Into<String>) -> Error {
        Error::bad_param(&self.method, name, reason)
    }

    /// The value of `s`, converted to its kind (given, or the default).
    fn typed(&self, s: &ParamSpec) -> Result<Option<Value>> {
        let v = match self.params.get(s.name) {
            Some(v) => v.clone(),
            None if s.default.is_empty() => return Ok(None),
            None => Value::Str(s.default.to_string()),
        };
        let want = |what: &str, got: &Value| self.bad(s.name, format!("expected {what}, got '{got}'"));
        let out = match (s.kind, v) {
            (ParamKind::Bool, Value::Bool(b)) => Value::Bool(b),
            (ParamKind::Bool, Value::Str(x)) => match x.as_str() {
                "true" | "yes" | "1" | "on" => Value::Bool(true),
                "false" | "no" | "0" | "off" => Value::Bool(false),
                _ => return Err(want("true or false", &Value::Str(x))),
            },
            (ParamKind::Int, Value::Int(i)) => Value::Int(i),
            (ParamKind::Int, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Value::Int(f as i64),
            (ParamKind::Int, Value::Str(x)) => Value::Int(parse_int(&x).ok_or_else(|| want("an integer", &Value::Str(x.clone())))?),
            (ParamKind::Float, Value::Float(f)) => Value::Float(f),
            (ParamKind::Float, Value::Int(i)) => Value::Float(i as f64),
            (ParamKind::Float, Value::Str(x)) => {
                let f: f64 = x.parse().map_err(|_| want("a number", &Value::Str(x.clone())))?;
                Value::Float(f)
            }
            (ParamKind::Str | ParamKind::Method, Value::Str(x)) => Value::Str(x),
            (ParamKind::Choice(opts), Value::Str(x)) => {
                if !opts.contains(&x.as_str()) {
                    return Err(self.bad(s.name, format!("'{x}' is not one of {}", opts.join(", "))));
                }
                Value::Str(x)
            }
            (ParamKind::FloatList, Value::List(v)) => Value::List(v),
            (ParamKind::FloatList, Value::Float(f)) => Value::List(vec![f]),
            (ParamKind::FloatList, Value::Int(i)) => Value::List(vec![i as f64]),
            (ParamKind::FloatList, Value::Str(x)) => Value::List(
                x.split(',')
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| t.trim().parse::<f64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| want("comma-separated numbers", &Value::Str(x.clone())))?,
            ),
            (ParamKind::Tensor, v @ (Value::Tensor(_) | Value::Str(_))) => v,
            (kind, got) => return Err(want(&kind.to_string(), &got)),
        };
        if let Value::Float(f) = out {
            if !f.is_finite() {
                return Err(self.bad(s.name, "must be finite"));
            }
        }
        if let (Value::Int(i), Some(max)) = (&out, s.max) {
            if *i > max {
                return Err(self.bad(s.name, format!("must be ≤ {max}, got {i}")));
            }
        }
        Ok(Some(out))
    }

    fn value(&self, name: &str) -> Result<Option<Value>> {
        self.typed(self.spec(name)?)
    }

    fn required(&self, name: &str) -> Result<Value> {
        self.value(name)?.ok_or_else(|| self.bad(name, "is required"))
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.params.get(name).is_some()
    }

    pub fn f64(&self, name: &str) -> Result<f64> {
        match self.required(name)? {
            Value::Float(f) => Ok(f),
            v => Err(self.bad(name, format!("expected a number, got '{v}'"))),
        }
    }

    pub fn i64(&self, name: &str) -> Result<i64> {
        match self.required(name)? {
            Value::Int(i) => Ok(i),
            v => Err(self.bad(name, format!("expected an integer, got '{v}'"))),
        }
    }

    /// A non-negative integer.
    pub fn usize(&self, name: &str) -> Result<usize> {
        let i = self.i64(name)?;
        usize::try_from(i).map_err(|_| self.bad(name, format!("must be ≥ 0, got {i}")))
    }

    /// A positive integer.
    pub fn positive(&self, name: &str) -> Result<usize> {
        let n = self.usize(name)?;
        if n == 0 {
            return Err(self.bad(name, "must be ≥ 1"));
        }
        Ok(n)
    }

    pub fn u64(&self, name: &str) -> Result<u64> {
        Ok(self.usize(name)? as u64)
    }

    pub fn bool(&self, name: &str) -> Result<bool> {
        match self.required(name)? {
            Value::Bool(b) => Ok(b),
            v => Err(self.bad(name, format!("expected true or false, got '{v}'"))),
        }
    }

    pub fn string(&self, name: &str) -> Result<String> {
        match self.required(name)? {
            Value::Str(s) => Ok(s),
            v => Err(self.bad(name, format!("expected a string, got '{v}'"))),
        }
    }

    pub fn opt_string(&self, name: &str) -> Result<Option<String>> {
        match self.value(name)? {
            None => Ok(None),
            Some(Value::Str(s)) if s.is_empty() => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(name, format!("expected a string, got '{v}'"))),
        }
    }

    pub fn list(&self, name: &str) -> Result<Vec<f64>> {
        match self.value(name)? {
            None => Ok(vec![]),
            Some(Value::List(v)) => Ok(v),
            Some(v) => Err(self.bad(name, format!("expected a list of numbers, got '{v}'"))),
        }
    }

    /// A tensor parameter: a script value, or a `.safetensors` (first tensor) or
    /// `.png` file path.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Option<Tensor>> {
        let s = self.spec(name)?;
        match self.params.get(name) {
            Some(Value::Tensor(t)) => Ok(Some(t.to_device(device)?)),
            Some(Value::Str(p)) if !p.is_empty() => Ok(Some(crate::data::load_tensor_file(p.as_ref(), device)?)),
            Some(v) => Err(self.bad(name, format!("expected a tensor or a file path, got '{v}'"))),
            None if s.default.is_empty() => Ok(None),
            None => Ok(Some(crate::data::load_tensor_file(s.default.as_ref(), device)?)),
        }
    }

    /// Parameters of a nested method parameter (`inner.*`).
    pub fn sub(&self, name: &str) -> Params {
        self.params.sub(name)
    }

    /// Every schema parameter with its effective value, for records and reports.
    pub fn resolved(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for s in self.schema {
            let v = match self.params.get(s.name) {
                Some(v) => v.to_string(),
                None => s.default.to_string(),
            };
            out.insert(s.name.to_string(), v);
        }
        for (k, v) in self.params.iter() {
            if k.contains('.') {
                out.insert(k.clone(), v.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    static SCHEMA: &[ParamSpec] = &[
        ParamSpec::new("n", ParamKind::Int, "50", "samples"),
        ParamSpec::new("sigma", ParamKind::Float, "0.15", "noise"),
        ParamSpec::new("agg", ParamKind::Choice(&["smoothgrad", "vargrad"]), "smoothgrad", "aggregation"),
        ParamSpec::new("inner", ParamKind::Method, "saliency", "wrapped method"),
        ParamSpec::new("abs", ParamKind::Bool, "false", ""),
    ];

    #[test]
    fn defaults_and_overrides() {
        let p = Params::parse_pairs(&["n=10", "inner=ig", "inner.steps=5"]).unwrap();
        let a = Args::new("noise", SCHEMA, &p).unwrap();
        assert_eq!(a.usize("n").unwrap(), 10);
        assert_eq!(a.f64("sigma").unwrap(), 0.15);
        assert_eq!(a.string("inner").unwrap(), "ig");
        assert_eq!(a.sub("inner").get("steps").unwrap().to_string(), "5");
        assert!(!a.bool("abs").unwrap());
        assert_eq!(a.resolved()["inner.steps"], "5");
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = Args::new("noise", SCHEMA, &Params::new().with("sigmaa", 0.1)).unwrap_err().to_string();
        assert!(e.contains("sigmaa") && e.contains("sigma"), "{e}");
        let e = Args::new("noise", SCHEMA, &Params::new().with("n", "ten")).unwrap_err().to_string();
        assert!(e.contains("'n'") && e.contains("integer"), "{e}");
        let e = Args::new("noise", SCHEMA, &Params::new().with("agg", "mean")).unwrap_err().to_string();
        assert!(e.contains("agg") && e.contains("vargrad"), "{e}");
        let e = Args::new("noise", SCHEMA, &Params::new().with("sigma.x", 1.0)).unwrap_err().to_string();
        assert!(e.contains("sigma.x"), "{e}");
        let e = Args::new("noise", SCHEMA, &Params::new().with("n", -3i64)).unwrap().usize("n").unwrap_err();
        assert!(e.to_string().contains("≥ 0"));
    }

    static BOUNDED: &[ParamSpec] = &[ParamSpec::new("steps", ParamKind::Int, "50", "steps").max(1000)];

    #[test]
    fn integer_bounds_are_enforced_and_shown() {
        assert_eq!(BOUNDED[0].kind_text(), "int ≤ 1000");
        assert_eq!(SCHEMA[0].kind_text(), "int");
        let ok = |v: Value| Args::new("m", BOUNDED, &Params::new().with("steps", v)).map(|a| a.usize("steps").unwrap());
        assert_eq!(ok(Value::Int(1000)).unwrap(), 1000);
        assert_eq!(ok("1e3".into()).unwrap(), 1000);
        for bad in [Value::Int(1001), "1000000000".into(), "1e9".into(), Value::Float(1e9), Value::Float(1e300)] {
            let e = ok(bad.clone()).unwrap_err().to_string();
            assert!(e.contains("'steps'") && (e.contains("≤ 1000") || e.contains("int")), "{bad}: {e}");
        }
        assert!(ok("1.5".into()).unwrap_err().to_string().contains("integer"));
        // The default is checked too.
        assert!(Args::new("m", BOUNDED, &Params::new()).is_ok());
    }
}
