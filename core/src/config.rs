//! Typed method configs: a method is one config struct, one [`Method`] impl and one
//! `submit_method!(Type)` line.
//!
//! `#[derive(Config)]` (from `lumen-derive`, re-exported here) turns the struct's
//! fields into the method's parameters: the schema `lumen list` shows (doc comments
//! become the docs, `Default` gives the defaults), one parsing pass from [`Args`]
//! (CLI strings and Rhai values alike) and the map `params()` records. Each field's
//! type says how: [`ParamType`] is implemented for the scalars, strings, number
//! lists, tensors, nested methods ([`Nested`]) and `#[derive(Choice)]` enums; a
//! type can stand for several parameters (it returns several specs).
//!
//! ```ignore
//! #[derive(Debug, Clone, Config)]
//! pub struct MyConfig {
//!     /// gradient evaluations along the path
//!     #[param(positive, max = 10_000)]
//!     pub steps: usize,
//!     /// quadrature along the path
//!     pub scheme: Scheme, // #[derive(Choice)]
//! }
//! ```

use crate::explanation::Explanation;
use crate::generator::GeneratorRef;
use crate::method::{Attributor, MethodProps};
use crate::model::Classifier;
use crate::params::{Args, ParamKind, ParamSpec, Params};
use crate::target::Target;
use crate::sampler::Sampler;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use lumen_derive::{Choice, Config};

/// Builds the registry items a config names while it is parsed: nested methods,
/// samplers (PDA) and generators (CDeepEx). The registry implements it; every item
/// it builds runs under its pack's panic guard.
pub trait Builder {
    fn build_method(&self, name: &str, params: &Params) -> Result<Box<dyn Attributor>>;
    /// Fits sampler `name` with `params` on `train` `[N, C, H, W]`.
    fn build_sampler(&self, name: &str, params: &Params, train: &Tensor) -> Result<Box<dyn Sampler>> {
        let _ = (params, train);
        Err(no_registry("sampler", name))
    }
    /// Loads sampler `name` that `Sampler::save` wrote to `path`.
    fn load_sampler(&self, name: &str, params: &Params, path: &Path) -> Result<Box<dyn Sampler>> {
        let _ = (params, path);
        Err(no_registry("sampler", name))
    }
    /// Names generator `name`; it loads on first use, on the model's device.
    fn generator(&self, name: &str) -> Result<GeneratorRef> {
        Err(no_registry("generator", name))
    }
}

fn no_registry(kind: &str, name: &str) -> Error {
    Error::msg(format!("cannot build {kind} '{name}' here: no registry given"))
}

/// A builder that knows no item: for configs that name none.
pub struct NoMethods;

impl Builder for NoMethods {
    fn build_method(&self, name: &str, _: &Params) -> Result<Box<dyn Attributor>> {
        Err(no_registry("nested method", name))
    }
}

/// A method's parameters as one typed value. Derive it with `#[derive(Config)]`.
pub trait Config: Default + Sized + Send + Sync + 'static {
    /// The parameter schema, defaults included (built once).
    fn schema() -> &'static [ParamSpec];
    /// Reads every parameter from checked arguments.
    fn from_args(args: &Args, ctx: &dyn Builder) -> Result<Self>;
    /// Adds this config's `name -> value` strings (as typed on a command line) to `out`.
    fn write(&self, out: &mut BTreeMap<String, String>);

    /// Checks `params` against the schema (unknown names and words are errors that
    /// list the known ones) and parses them.
    fn from_params(method: &str, params: &Params, ctx: &dyn Builder) -> Result<Self> {
        Self::from_args(&Args::new(method, Self::schema(), params)?, ctx)
    }
    /// The config serialised: what `Attributor::params` returns.
    fn to_params(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        self.write(&mut out);
        out
    }
}

/// A Rust type that a config field can have.
pub trait ParamType: Sized {
    fn kind() -> ParamKind;
    /// The value as it would be typed; `None`: no value (no default, not recorded).
    fn text(&self) -> Option<String>;
    fn read(args: &Args, name: &'static str, ctx: &dyn Builder) -> Result<Self>;
    /// The schema entries of a field called `name` whose default is `default`.
    fn specs(name: &'static str, doc: &'static str, default: &Self) -> Vec<ParamSpec> {
        vec![ParamSpec::new(name, Self::kind(), leak(default.text()), doc)]
    }
    fn write(&self, name: &str, out: &mut BTreeMap<String, String>) {
        if let Some(t) = self.text() {
            out.insert(name.to_string(), t);
        }
    }
}

/// A default's text for a static schema. Each schema is built once per process, so
/// this leaks a bounded amount.
pub fn leak(s: Option<String>) -> &'static str {
    match s {
        Some(s) if !s.is_empty() => Box::leak(s.into_boxed_str()),
        _ => "",
    }
}

/// Applies `#[param(max = ..)]` to the first spec of a field.
pub fn bounded(mut specs: Vec<ParamSpec>, max: Option<i64>) -> Vec<ParamSpec> {
    if let (Some(m), Some(first)) = (max, specs.first_mut()) {
        first.max = Some(m);
    }
    specs
}

/// `#[param(positive)]`: an integer of at least 1.
pub fn positive<T: PartialOrd + Default>(args: &Args, name: &str, v: T) -> Result<T> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(Error::bad_param(args.method(), name, "must be ≥ 1"))
    }
}

/// An enum whose values are words: derive it with `#[derive(Choice)]`.
pub trait Choice: Sized + 'static {
    const NAMES: &'static [&'static str];
    fn name(&self) -> &'static str;
    fn from_name(word: &str) -> Option<Self>;
}

/// Reads a [`Choice`]; an unknown word is an error that lists the known ones.
pub fn read_choice<C: Choice>(args: &Args, name: &str) -> Result<C> {
    let w = args.string(name)?;
    C::from_name(&w)
        .ok_or_else(|| Error::bad_param(args.method(), name, format!("'{w}' is not one of {}", C::NAMES.join(", "))))
}

macro_rules! scalar {
    ($t:ty, $kind:ident, $get:ident) => {
        impl ParamType for $t {
            fn kind() -> ParamKind {
                ParamKind::$kind
            }
            fn text(&self) -> Option<String> {
                Some(self.to_string())
            }
            fn read(args: &Args, name: &'static str, _: &dyn Builder) -> Result<Self> {
                args.$get(name)
            }
        }
    };
}
scalar!(bool, Bool, bool);
scalar!(f64, Float, f64);
scalar!(i64, Int, i64);
scalar!(u64, Int, u64);
scalar!(usize, Int, usize);
scalar!(String, Str, string);

impl ParamType for f32 {
    fn kind() -> ParamKind {
        ParamKind::Float
    }
    fn text(&self) -> Option<String> {
        Some(self.to_string())
    }
    fn read(args: &Args, name: &'static str, _: &dyn Builder) -> Result<Self> {
        Ok(args.f64(name)? as f32)
    }
}

/// An optional word: empty or absent is `None`.
impl ParamType for Option<String> {
    fn kind() -> ParamKind {
        ParamKind::Str
    }
    fn text(&self) -> Option<String> {
        self.clone()
    }
    fn read(args: &Args, name: &'static str, _: &dyn Builder) -> Result<Self> {
        args.opt_string(name)
    }
}

/// An optional number: absent is `None` (no default, not recorded).
impl ParamType for Option<f64> {
    fn kind() -> ParamKind {
        ParamKind::Float
    }
    fn text(&self) -> Option<String> {
        self.map(|x| x.to_string())
    }
    fn read(args: &Args, name: &'static str, _: &dyn Builder) -> Result<Self> {
        if args.is_set(name) {
            Ok(Some(args.f64(name)?))
        } else {
            Ok(None)
        }
    }
}

/// A comma-separated list of numbers.
impl ParamType for Vec<f64> {
    fn kind() -> ParamKind {
        ParamKind::FloatList
    }
    fn text(&self) -> Option<String> {
        Some(self.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))
    }
    fn read(args: &Args, name: &'static str, _: &dyn Builder) -> Result<Self> {
        args.list(name)
    }
}

/// A tensor: a script value, or a `.safetensors`/`.png` path. Not recorded in
/// `params()` (a tensor is no command-line word).
impl ParamType for Option<Tensor> {
    fn kind() -> ParamKind {
        ParamKind::Tensor
    }
    fn text(&self) -> Option<String> {
        None
    }
    fn read(args: &Args, name: &'static str, _: &dyn Builder) -> Result<Self> {
        args.tensor(name, &Device::Cpu)
    }
}

/// A nested method parameter: `inner=NAME inner.KEY=VALUE`. Parsing builds the
/// method through the registry; `params()` records its name and, under the
/// `NAME.` prefix, the built method's own resolved parameters.
#[derive(Clone)]
pub struct Nested {
    name: String,
    built: Option<Arc<dyn Attributor>>,
}

impl Nested {
    /// Names a method without building it (a config's default).
    pub fn named(name: &str) -> Self {
        Nested { name: name.to_string(), built: None }
    }
    /// A method built in Rust.
    pub fn built(method: Arc<dyn Attributor>) -> Self {
        Nested { name: method.name().to_string(), built: Some(method) }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The built method; an error if only its name is known.
    pub fn get(&self) -> Result<&Arc<dyn Attributor>> {
        self.built.as_ref().ok_or_else(|| Error::msg(format!("nested method '{}' was named but not built", self.name)))
    }
    /// The built method's props, or none if it is not built.
    pub fn props(&self) -> MethodProps {
        self.built.as_ref().map(|m| m.props()).unwrap_or(MethodProps::NONE)
    }
}

impl std::fmt::Debug for Nested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nested({}{})", self.name, if self.built.is_some() { "" } else { ", unbuilt" })
    }
}

impl ParamType for Nested {
    fn kind() -> ParamKind {
        ParamKind::Method
    }
    fn text(&self) -> Option<String> {
        Some(self.name.clone())
    }
    fn read(args: &Args, name: &'static str, ctx: &dyn Builder) -> Result<Self> {
        let method = args.string(name)?;
        Ok(Nested::built(Arc::from(ctx.build_method(&method, &args.sub(name))?)))
    }
    fn write(&self, name: &str, out: &mut BTreeMap<String, String>) {
        out.insert(name.to_string(), self.name.clone());
        if let Some(m) = &self.built {
            for (k, v) in m.params() {
                out.insert(format!("{name}.{k}"), v);
            }
        }
    }
}

/// An attribution method declared once: its name, summary, typed config and props.
/// Every `Method` is an [`Attributor`]: `name`, `props` and `params` come from here.
pub trait Method: Sized + Send + Sync + 'static {
    const NAME: &'static str;
    /// One line for `lumen list`.
    const SUMMARY: &'static str;
    type Config: Config;
    /// What the method promises, when that does not depend on the config.
    const PROPS: MethodProps = MethodProps::NONE;
    /// What the method promises with `config` (`lumen list` and Rhai's `method_info`
    /// show the default config's); [`Self::PROPS`] unless overridden.
    fn props_of(config: &Self::Config) -> MethodProps {
        let _ = config;
        Self::PROPS
    }
    /// Checks the config's values and builds the method.
    fn new(config: Self::Config) -> Result<Self>;
    fn config(&self) -> &Self::Config;
    /// Explains `inputs` (`[B, ...]`) for `target` (see [`Attributor::attribute`]).
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation>;

    /// Parses `params` (checked against the schema) and builds the method.
    fn from_params(params: &Params, ctx: &dyn Builder) -> Result<Self> {
        Self::new(Self::Config::from_params(Self::NAME, params, ctx)?)
    }
}

impl<T: Method> Attributor for T {
    fn name(&self) -> &str {
        T::NAME
    }
    fn props(&self) -> MethodProps {
        T::props_of(self.config())
    }
    fn params(&self) -> BTreeMap<String, String> {
        self.config().to_params()
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        self.explain(model, inputs, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Choice)]
    enum Agg {
        Mean,
        #[choice(name = "smoothgrad_sq")]
        MeanOfSquares,
        VarGrad,
    }

    #[derive(Debug, Clone, Config)]
    struct Demo {
        /// noisy copies per example
        #[param(positive, max = 100)]
        n: usize,
        /// noise level
        sigma: f64,
        /// how maps combine
        agg: Agg,
        /// the baseline
        #[param(name = "baseline")]
        base: String,
        /// a list
        levels: Vec<f64>,
        /// a tensor
        reference: Option<Tensor>,
        #[param(skip)]
        cache: u32,
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                n: 50,
                sigma: 0.15,
                agg: Agg::VarGrad,
                base: "zero".into(),
                levels: vec![0.5, 1.0],
                reference: None,
                cache: 7,
            }
        }
    }

    fn parse(p: Params) -> Result<Demo> {
        Demo::from_params("demo", &p, &NoMethods)
    }

    #[test]
    fn choice_names() {
        assert_eq!(Agg::NAMES, &["mean", "smoothgrad_sq", "var_grad"]);
        assert_eq!(Agg::MeanOfSquares.name(), "smoothgrad_sq");
        assert_eq!(Agg::from_name("mean"), Some(Agg::Mean));
        assert_eq!(Agg::from_name("Mean"), None);
    }

    #[test]
    fn schema_from_fields_docs_and_default() {
        let s = Demo::schema();
        let names: Vec<_> = s.iter().map(|p| p.name).collect();
        assert_eq!(names, ["n", "sigma", "agg", "baseline", "levels", "reference"]);
        let defaults: Vec<_> = s.iter().map(|p| p.default).collect();
        assert_eq!(defaults, ["50", "0.15", "var_grad", "zero", "0.5,1", ""]);
        assert_eq!(s[0].doc, "noisy copies per example");
        assert_eq!(s[0].max, Some(100));
        assert_eq!(s[1].max, None);
        assert_eq!(s[2].kind, ParamKind::Choice(Agg::NAMES));
        assert_eq!(s[4].kind, ParamKind::FloatList);
        assert_eq!(s[5].kind, ParamKind::Tensor);
        // built once
        assert!(std::ptr::eq(s, Demo::schema()));
    }

    #[test]
    fn parses_in_one_pass_and_round_trips() {
        let d = parse(Params::new()).unwrap();
        assert_eq!((d.n, d.sigma, d.agg, d.cache), (50, 0.15, Agg::VarGrad, 7));
        let p = d.to_params();
        let want: BTreeMap<String, String> = [
            ("agg", "var_grad"),
            ("baseline", "zero"),
            ("levels", "0.5,1"),
            ("n", "50"),
            ("sigma", "0.15"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(p, want);
        let c = parse(Params::new().with("n", "7").with("agg", "smoothgrad_sq").with("sigma", 2i64).with("levels", "1,2,3"))
            .unwrap();
        assert_eq!((c.n, c.sigma, c.agg, c.levels.clone()), (7, 2.0, Agg::MeanOfSquares, vec![1.0, 2.0, 3.0]));
        // the serialised config parses back to itself
        let mut again = Params::new();
        for (k, v) in c.to_params() {
            again.set(&k, v);
        }
        assert_eq!(parse(again).unwrap().to_params(), c.to_params());
    }

    #[test]
    fn errors_name_the_key_or_word_and_list_the_choices() {
        let e = parse(Params::new().with("sigmaa", 1.0)).unwrap_err().to_string();
        assert!(e.contains("sigmaa") && e.contains("sigma") && e.contains("baseline"), "{e}");
        let e = parse(Params::new().with("agg", "median")).unwrap_err().to_string();
        assert!(e.contains("'agg'") && e.contains("median") && e.contains("mean, smoothgrad_sq, var_grad"), "{e}");
        let e = parse(Params::new().with("n", "0")).unwrap_err().to_string();
        assert!(e.contains("'n'") && e.contains("≥ 1"), "{e}");
        let e = parse(Params::new().with("n", "101")).unwrap_err().to_string();
        assert!(e.contains("'n'") && e.contains("≤ 100"), "{e}");
        let e = parse(Params::new().with("cache", "1")).unwrap_err().to_string();
        assert!(e.contains("cache"), "skipped fields are no parameters: {e}");
    }

    #[derive(Debug, Clone, Config)]
    struct Wrapper {
        /// the wrapped method
        inner: Nested,
        #[param(flatten)]
        demo: Demo,
    }

    impl Default for Wrapper {
        fn default() -> Self {
            Wrapper { inner: Nested::named("plain"), demo: Demo::default() }
        }
    }

    /// A method with a derived config, used as the nested one.
    #[derive(Debug, Clone, Default, Config)]
    struct PlainConfig {
        /// a number
        k: i64,
    }
    struct Plain(PlainConfig);
    impl Method for Plain {
        const NAME: &'static str = "plain";
        const SUMMARY: &'static str = "test";
        type Config = PlainConfig;
        fn props_of(c: &PlainConfig) -> MethodProps {
            MethodProps { stochastic: c.k > 0, ..MethodProps::NONE }
        }
        fn new(c: PlainConfig) -> Result<Self> {
            Ok(Plain(c))
        }
        fn config(&self) -> &PlainConfig {
            &self.0
        }
        fn explain(&self, _: &dyn Classifier, _: &Tensor, _: &Target) -> Result<Explanation> {
            Err(Error::msg("not used"))
        }
    }
    struct Inners;
    impl Builder for Inners {
        fn build_method(&self, name: &str, params: &Params) -> Result<Box<dyn Attributor>> {
            match name {
                "plain" => Ok(Box::new(Plain::from_params(params, self)?)),
                other => Err(Error::msg(format!("unknown method '{other}'"))),
            }
        }
    }

    #[test]
    fn nested_methods_and_flattened_configs() {
        let names: Vec<_> = Wrapper::schema().iter().map(|p| p.name).collect();
        assert_eq!(names[..2], ["inner", "n"]);
        assert_eq!(Wrapper::schema()[0].default, "plain");
        let w = Wrapper::from_params("w", &Params::new().with("inner.k", 3i64).with("n", 2i64), &Inners).unwrap();
        let p = w.to_params();
        assert_eq!((p["inner"].as_str(), p["inner.k"].as_str(), p["n"].as_str()), ("plain", "3", "2"));
        assert!(w.inner.props().stochastic && w.inner.get().is_ok());
        assert!(Wrapper::default().inner.get().is_err());
        let e = Wrapper::from_params("w", &Params::new().with("inner.j", 3i64), &Inners).unwrap_err().to_string();
        assert!(e.contains("inner") || e.contains("'j'"), "{e}");
        // the blanket Attributor impl reports the declared name, props and params
        let m = Plain::new(PlainConfig { k: 1 }).unwrap();
        let a: &dyn Attributor = &m;
        assert_eq!((a.name(), a.props().stochastic, a.params()["k"].as_str()), ("plain", true, "1"));
    }
}
