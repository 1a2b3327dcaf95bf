//! The registry: every method, model, generator, sampler, metric and composite the
//! host knows, whether it came from a statically linked pack or a loaded plugin.
//!
//! Inside a pack, items are declared with the `submit_*!` macros, which put the pack's
//! name in their `pack` field, so a host can register one pack's items at a time and
//! say where each came from. All kinds share one table ([`crate::entry`]); this file holds
//! the entry types of core's kinds and the guarded calls into them.

pub use crate::entry::{collect, kinds, AnyEntry, Entry, Kind, Origin, PackItems, Slot, Table};
pub use crate::guard::{guard, guard_with, panic_message};

use crate::config::{Builder, Config, Method};
use crate::generator::{Generator, GeneratorRef};
use crate::method::{Attributor, MethodProps};
use crate::metric::{Metric, MetricEntry, MetricInput, MetricOutput};
use crate::model::Classifier;
use crate::params::{Args, ParamSpec, Params};
use crate::rules::{CompositeEntry, RuleMap};
use crate::sampler::Sampler;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// An attribution method (or wrapper) that a pack provides. Built from a
/// [`Method`] by [`MethodEntry::of`] (what `submit_method!(Type)` does), so its
/// schema and props are the method's own declarations.
pub struct MethodEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    /// The parameter schema (a function: derived schemas take defaults from `Default`).
    pub schema: fn() -> &'static [ParamSpec],
    /// The props of the default configuration.
    pub props: fn() -> MethodProps,
    pub build: fn(&Args, &Registry) -> Result<Box<dyn Attributor>>,
}

impl MethodEntry {
    /// The entry of method `T` in pack `pack`.
    pub const fn of<T: Method>(pack: &'static str) -> Self {
        MethodEntry {
            name: T::NAME,
            pack,
            summary: T::SUMMARY,
            schema: <T::Config as Config>::schema,
            props: default_props::<T>,
            build: build_typed::<T>,
        }
    }
    pub fn params(&self) -> &'static [ParamSpec] {
        (self.schema)()
    }
    pub fn props(&self) -> MethodProps {
        (self.props)()
    }
}

fn default_props<T: Method>() -> MethodProps {
    T::props_of(&T::Config::default())
}

fn build_typed<T: Method>(args: &Args, registry: &Registry) -> Result<Box<dyn Attributor>> {
    Ok(Box::new(T::new(T::Config::from_args(args, registry)?)?))
}

impl Builder for Registry {
    fn build_method(&self, name: &str, params: &Params) -> Result<Box<dyn Attributor>> {
        Registry::build_method(self, name, params)
    }
    fn build_sampler(&self, name: &str, params: &Params, train: &Tensor) -> Result<Box<dyn Sampler>> {
        Registry::build_sampler(self, name, params, train)
    }
    fn load_sampler(&self, name: &str, params: &Params, path: &std::path::Path) -> Result<Box<dyn Sampler>> {
        Registry::load_sampler(self, name, params, path)
    }
    fn generator(&self, name: &str) -> Result<GeneratorRef> {
        self.generator_ref(name)
    }
}
crate::entry_kind!(MethodEntry, "method", 10);

/// A classifier that a pack provides.
pub struct ModelEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    pub load: fn(&Device) -> Result<Arc<dyn Classifier>>,
}
crate::entry_kind!(ModelEntry, "model", 20);

/// A generative model (for CDeepEx and xGEMs).
pub struct GeneratorEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    pub load: fn(&Device) -> Result<Arc<dyn Generator>>,
}
crate::entry_kind!(GeneratorEntry, "generator", 30);

/// A patch sampler (for prediction difference analysis).
pub struct SamplerEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    pub params: &'static [ParamSpec],
    /// Builds the sampler; `train` is the training data `[N, C, H, W]` to fit on.
    pub build: fn(&Args, &Tensor) -> Result<Box<dyn Sampler>>,
    /// Loads a sampler that `Sampler::save` wrote (fitted once per data set).
    pub load: fn(&Args, &std::path::Path) -> Result<Box<dyn Sampler>>,
}
crate::entry_kind!(SamplerEntry, "sampler", 40);

/// The host's table of everything it can run.
#[derive(Default)]
pub struct Registry {
    table: Table,
    packs: BTreeMap<String, String>,
    /// Crate name -> pack name: one crate is one pack, however many files carry it.
    crates: BTreeMap<String, String>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every item linked into this process ([`PackItems::linked`]): never
    /// the items of a library the loader opened, whenever it was opened.
    pub fn from_inventory() -> Result<Self> {
        Self::from_items(PackItems::linked())
    }

    /// Registers `items`, each pack under its own name, from source `static`.
    pub fn from_items(items: &PackItems) -> Result<Self> {
        let mut r = Registry::new();
        for p in items.packs() {
            r.register_items(p, &p.replace('-', "_"), "static", &items.of_pack(p))?;
        }
        Ok(r)
    }

    /// Registers the linked items whose `pack` field is `pack`. All or nothing: a
    /// name already taken by another pack is an error that leaves the registry unchanged.
    pub fn register_pack(&mut self, pack: &str, source: &str) -> Result<usize> {
        let items = PackItems::linked().of_pack(pack);
        self.register_items(pack, &pack.replace('-', "_"), source, &items)
    }

    /// Registers `items` as pack `pack` (crate `crate_name`) from `source`. All or
    /// nothing: a name already taken by another pack is an error that leaves the
    /// registry unchanged.
    pub fn register_items(&mut self, pack: &str, crate_name: &str, source: &str, items: &PackItems) -> Result<usize> {
        let origin = Origin { pack: pack.to_string(), source: source.to_string() };
        self.table.insert_all(&items.items, &origin)?;
        self.packs.entry(pack.to_string()).or_insert_with(|| source.to_string());
        self.crates.entry(crate_name.to_string()).or_insert_with(|| pack.to_string());
        Ok(items.len())
    }

    /// The registered pack that crate `crate_name` provides, if any.
    pub fn pack_of_crate(&self, crate_name: &str) -> Option<&str> {
        self.crates.get(crate_name).map(String::as_str)
    }

    /// Adds one entry of any kind directly (tests, and packs that build entries at
    /// run time), under its own `pack` field.
    pub fn add<T: Entry>(&mut self, entry: &'static T, source: &str) -> Result<()> {
        let origin = Origin { pack: entry.pack().to_string(), source: source.to_string() };
        self.table.insert_all(&[AnyEntry::of(entry)], &origin)
    }

    pub fn add_method(&mut self, entry: &'static MethodEntry, source: &str) -> Result<()> {
        self.add(entry, source)
    }

    pub fn add_metric(&mut self, entry: &'static MetricEntry, source: &str) -> Result<()> {
        self.add(entry, source)
    }

    pub fn packs(&self) -> &BTreeMap<String, String> {
        &self.packs
    }

    /// Every entry of kind `T`, by name, with its origin.
    pub fn entries<T: Entry>(&self) -> impl Iterator<Item = (&'static T, &Origin)> {
        self.table.iter::<T>()
    }

    /// The entry of kind `T` called `name` and its origin.
    pub fn entry<T: Entry>(&self, name: &str) -> Result<(&'static T, &Origin)> {
        self.table.get::<T>(name)
    }

    /// Every item of `pack`, as `kind name`, kinds in listing order.
    pub fn items_of(&self, pack: &str) -> Vec<String> {
        let mut v: Vec<&Slot> = self.table.all().filter(|s| s.origin.pack == pack).collect();
        v.sort_by_key(|s| (s.entry.rank(), s.entry.name));
        v.iter().map(|s| format!("{} {}", s.entry.kind, s.entry.name)).collect()
    }

    pub fn methods(&self) -> impl Iterator<Item = (&'static MethodEntry, &Origin)> {
        self.entries()
    }
    pub fn models(&self) -> impl Iterator<Item = (&'static ModelEntry, &Origin)> {
        self.entries()
    }
    pub fn generators(&self) -> impl Iterator<Item = (&'static GeneratorEntry, &Origin)> {
        self.entries()
    }
    pub fn samplers(&self) -> impl Iterator<Item = (&'static SamplerEntry, &Origin)> {
        self.entries()
    }
    pub fn metrics(&self) -> impl Iterator<Item = (&'static MetricEntry, &Origin)> {
        self.entries()
    }
    pub fn composites(&self) -> impl Iterator<Item = (&'static CompositeEntry, &Origin)> {
        self.entries()
    }

    pub fn method_names(&self) -> Vec<String> {
        self.table.names::<MethodEntry>()
    }

    pub fn method(&self, name: &str) -> Result<&'static MethodEntry> {
        self.entry(name).map(|(e, _)| e)
    }

    /// Builds a method from its parameters. Calls into the pack run under
    /// `catch_unwind`, and so does every later `attribute` call of the result.
    pub fn build_method(&self, name: &str, params: &Params) -> Result<Box<dyn Attributor>> {
        let (entry, origin) = self.entry::<MethodEntry>(name)?;
        let args = Args::new(name, entry.params(), params)?;
        let pack = origin.pack.clone();
        let inner = guard(&pack, || (entry.build)(&args, self))?;
        // The pack's accessors are read once, here, under the guard: later calls then
        // cannot panic across the host.
        let cached = guard(&pack, || Ok((inner.name().to_string(), inner.props(), inner.params())))?;
        Ok(Box::new(Guarded { inner, pack, cached }))
    }

    /// Loads a model. Its later `forward` calls also run under `catch_unwind`.
    pub fn load_model(&self, name: &str, device: &Device) -> Result<Arc<dyn Classifier>> {
        let (entry, origin) = self.entry::<ModelEntry>(name)?;
        let pack = origin.pack.clone();
        // A registered model's files are its pack's, not the run's: outside the policy.
        let inner = crate::paths::trusted(|| guard(&pack, || (entry.load)(device)))?;
        // The pack's accessors, read once under the guard (network() too: a pack that
        // panics there fails here, not in a later method).
        let cached = guard(&pack, || {
            let _ = inner.network();
            Ok((inner.info().clone(), inner.device().clone()))
        })?;
        Ok(Arc::new(Guarded { inner, pack, cached }))
    }

    pub fn load_generator(&self, name: &str, device: &Device) -> Result<Arc<dyn Generator>> {
        self.generator_ref(name)?.get(device)
    }

    /// Names a generator; it loads (guarded, its files outside the run's policy) on
    /// first use.
    pub fn generator_ref(&self, name: &str) -> Result<GeneratorRef> {
        let (entry, origin) = self.entry::<GeneratorEntry>(name)?;
        let pack = origin.pack.clone();
        Ok(GeneratorRef::new(name, move |device: &Device| -> Result<Arc<dyn Generator>> {
            let inner = crate::paths::trusted(|| guard(&pack, || (entry.load)(device)))?;
            let cached =
                guard(&pack, || Ok((inner.name().to_string(), inner.latent_dim(), inner.output_shape().to_vec())))?;
            Ok(Arc::new(Guarded { inner, pack: pack.clone(), cached }))
        }))
    }

    pub fn build_sampler(&self, name: &str, params: &Params, train: &Tensor) -> Result<Box<dyn Sampler>> {
        self.guarded_sampler(name, params, |e, a| (e.build)(a, train))
    }

    pub fn load_sampler(&self, name: &str, params: &Params, path: &std::path::Path) -> Result<Box<dyn Sampler>> {
        self.guarded_sampler(name, params, |e, a| (e.load)(a, path))
    }

    /// A sampler made by `make` from its checked params, under its pack's guard.
    fn guarded_sampler(
        &self,
        name: &str,
        params: &Params,
        make: impl FnOnce(&'static SamplerEntry, &Args) -> Result<Box<dyn Sampler>>,
    ) -> Result<Box<dyn Sampler>> {
        let (entry, origin) = self.entry::<SamplerEntry>(name)?;
        let args = Args::new(name, entry.params, params)?;
        let pack = origin.pack.clone();
        let inner = guard(&pack, || make(entry, &args))?;
        let cached = guard(&pack, || Ok(inner.name().to_string()))?;
        Ok(Box::new(Guarded { inner, pack, cached }))
    }

    pub fn sampler(&self, name: &str) -> Result<&'static SamplerEntry> {
        self.entry(name).map(|(e, _)| e)
    }

    pub fn metric_names(&self) -> Vec<String> {
        self.table.names::<MetricEntry>()
    }

    pub fn metric(&self, name: &str) -> Result<&'static MetricEntry> {
        self.entry(name).map(|(e, _)| e)
    }

    /// Builds a metric from its parameters. Calls into the pack run under
    /// `catch_unwind`, and so does every later `evaluate` call of the result.
    pub fn build_metric(&self, name: &str, params: &Params) -> Result<Box<dyn Metric>> {
        let (entry, origin) = self.entry::<MetricEntry>(name)?;
        let args = Args::new(name, entry.params, params)?;
        let pack = origin.pack.clone();
        let inner = guard(&pack, || (entry.build)(&args))?;
        let cached = guard(&pack, || Ok((inner.name().to_string(), inner.params(), inner.higher_is_better())))?;
        Ok(Box::new(Guarded { inner, pack, cached }))
    }

    pub fn composite(&self, name: &str) -> Result<&'static CompositeEntry> {
        self.entry(name).map(|(e, _)| e)
    }

    /// Builds the composite preset `name` with `settings` (the type its family takes,
    /// or `&()` for its defaults), under the guard of the pack that registered it.
    pub fn build_composite(&self, name: &str, settings: &dyn std::any::Any) -> Result<RuleMap> {
        let (entry, origin) = self.entry::<CompositeEntry>(name)?;
        guard(&origin.pack, || (entry.build)(settings))
    }
}

/// A pack's object whose calls are contained with `catch_unwind`. `cached` holds the
/// accessors' answers, read under the guard when it was built (an accessor returns a
/// reference or a plain value, so it cannot return an error afterwards).
struct Guarded<I, C> {
    inner: I,
    pack: String,
    cached: C,
}

impl<I, C> Guarded<I, C> {
    fn call<R>(&self, f: impl FnOnce(&I) -> Result<R>) -> Result<R> {
        guard(&self.pack, || f(&self.inner))
    }
}

impl Attributor for Guarded<Box<dyn Attributor>, (String, MethodProps, BTreeMap<String, String>)> {
    fn name(&self) -> &str {
        &self.cached.0
    }
    fn props(&self) -> MethodProps {
        self.cached.1
    }
    fn params(&self) -> BTreeMap<String, String> {
        self.cached.2.clone()
    }
    fn attribute(&self, model: &dyn Classifier, inputs: &Tensor, target: &crate::Target) -> Result<crate::Explanation> {
        self.call(|m| m.attribute(model, inputs, target))
    }
}

impl Classifier for Guarded<Arc<dyn Classifier>, (crate::ModelInfo, Device)> {
    fn info(&self) -> &crate::ModelInfo {
        &self.cached.0
    }
    fn device(&self) -> &Device {
        &self.cached.1
    }
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.call(|m| m.forward(xs))
    }
    fn network(&self) -> Option<&crate::Network> {
        // A reference into the pack's object, so it cannot be cached; a panic means
        // "no network" (it was asked once, under the guard, at load time).
        catch_unwind(AssertUnwindSafe(|| self.inner.network())).unwrap_or(None)
    }
    fn forward_with(&self, xs: &Tensor, opts: &crate::model::ForwardOptions) -> Result<crate::model::Forward> {
        self.call(|m| m.forward_with(xs, opts))
    }
    fn input_gradient(
        &self,
        xs: &Tensor,
        seed: &Tensor,
        opts: &crate::model::ForwardOptions,
    ) -> Result<Option<crate::model::Reverse>> {
        self.call(|m| m.input_gradient(xs, seed, opts))
    }
}

impl Generator for Guarded<Arc<dyn Generator>, (String, usize, Vec<usize>)> {
    fn name(&self) -> &str {
        &self.cached.0
    }
    fn latent_dim(&self) -> usize {
        self.cached.1
    }
    fn output_shape(&self) -> &[usize] {
        &self.cached.2
    }
    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        self.call(|g| g.generate(z))
    }
    fn encode(&self, x: &Tensor) -> Option<Result<Tensor>> {
        match catch_unwind(AssertUnwindSafe(|| self.inner.encode(x))) {
            Ok(r) => r,
            Err(p) => Some(Err(Error::PluginPanicked { plugin: self.pack.clone(), message: panic_message(&*p) })),
        }
    }
}

impl Sampler for Guarded<Box<dyn Sampler>, String> {
    fn name(&self) -> &str {
        &self.cached
    }
    fn sample_windows(
        &self,
        image: &crate::sampler::HostImage,
        wins: &[crate::sampler::Window],
        n: usize,
        rng: &mut rand::rngs::StdRng,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        self.call(|s| s.sample_windows(image, wins, n, rng, out))
    }
    fn save(&self, path: &std::path::Path) -> Result<()> {
        self.call(|s| s.save(path))
    }
    fn sample(&self, image: &Tensor, win: crate::sampler::Window, n: usize, rng: &mut rand::rngs::StdRng) -> Result<Tensor> {
        self.call(|s| s.sample(image, win, n, rng))
    }
}

impl Metric for Guarded<Box<dyn Metric>, (String, BTreeMap<String, String>, bool)> {
    fn name(&self) -> &str {
        &self.cached.0
    }
    fn params(&self) -> BTreeMap<String, String> {
        self.cached.1.clone()
    }
    fn higher_is_better(&self) -> bool {
        self.cached.2
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        self.call(|m| m.evaluate(input))
    }
}

/// Declares a method in the calling pack: `lumen_core::submit_method!(MyMethod);`
/// registers the [`Method`] `MyMethod` under its `NAME`, with `pack` set to the
/// calling crate's package name.
#[macro_export]
macro_rules! submit_method {
    ($ty:ty $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::MethodEntry::of::<$ty>(env!("CARGO_PKG_NAME"))
        }
    };
    // A method whose parameters are still a hand-written schema: `props` is an
    // expression evaluated when asked (so it can be the default config's props).
    ($name:expr, $summary:expr, $params:expr, $props:expr, $build:expr $(,)?) => {
        $crate::submit_entry!($crate::registry::MethodEntry {
            name: $name,
            summary: $summary,
            schema: || $params,
            props: || $props,
            build: $build,
        });
    };
}

/// Declares a model in the calling pack.
#[macro_export]
macro_rules! submit_model {
    ($name:expr, $summary:expr, $load:expr $(,)?) => {
        $crate::submit_entry!($crate::registry::ModelEntry { name: $name, summary: $summary, load: $load });
    };
}

/// Declares a generator in the calling pack.
#[macro_export]
macro_rules! submit_generator {
    ($name:expr, $summary:expr, $load:expr $(,)?) => {
        $crate::submit_entry!($crate::registry::GeneratorEntry { name: $name, summary: $summary, load: $load });
    };
}

/// Declares a sampler in the calling pack: `submit_sampler!(NAME, SUMMARY, PARAMS, build, load)`.
#[macro_export]
macro_rules! submit_sampler {
    ($name:expr, $summary:expr, $params:expr, $build:expr, $load:expr $(,)?) => {
        $crate::submit_entry!($crate::registry::SamplerEntry {
            name: $name,
            summary: $summary,
            params: $params,
            build: $build,
            load: $load,
        });
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rule::Composite;

    static A: CompositeEntry = CompositeEntry { name: "t_comp", pack: "pack-a", summary: "", build: |_| Ok(RuleMap::new("a")) };
    static B: CompositeEntry = CompositeEntry { name: "t_comp", pack: "pack-b", summary: "", build: |_| Ok(RuleMap::new("b")) };
    static BOOM: CompositeEntry =
        CompositeEntry { name: "t_boom", pack: "pack-boom", summary: "", build: |_| panic!("composite went\nboom") };

    #[test]
    fn duplicate_composite_is_refused_with_both_origins() {
        let mut reg = Registry::new();
        reg.add(&A, "a.so").unwrap();
        let e = reg.add(&B, "b.so").unwrap_err();
        assert!(matches!(e, Error::Duplicate { kind: "composite", .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.contains("t_comp") && m.contains("pack-a (a.so)") && m.contains("pack-b (b.so)"), "{m}");
        // the first stays, with its origin
        let (c, o) = reg.entry::<CompositeEntry>("t_comp").unwrap();
        assert_eq!((c.pack, o.source.as_str()), ("pack-a", "a.so"));
        assert_eq!(reg.build_composite("t_comp", &()).unwrap().name(), "a");
        // one pack registering a list with a clash adds nothing
        let items = PackItems { items: vec![AnyEntry::of(&BOOM), AnyEntry::of(&B)] };
        assert!(reg.register_items("pack-b", "pack_b", "b.so", &items).is_err());
        assert!(reg.composite("t_boom").is_err());
    }

    #[test]
    fn panicking_composite_build_is_contained() {
        let mut reg = Registry::new();
        reg.add(&BOOM, "boom.so").unwrap();
        let e = reg.build_composite("t_boom", &()).unwrap_err();
        match &e {
            Error::PluginPanicked { plugin, message } => {
                assert_eq!(plugin, "pack-boom");
                assert_eq!(message, "composite went boom");
            }
            other => panic!("{other:?}"),
        }
        let e = reg.build_composite("nope", &()).unwrap_err().to_string();
        assert!(e.contains("composite") && e.contains("t_boom"), "{e}");
    }

    #[test]
    fn kinds_are_listed_in_rank_order() {
        // core's kinds, in this order (other crates may add kinds in between)
        let names: Vec<&str> = kinds().iter().map(|k| k.name).collect();
        let core = ["method", "model", "generator", "sampler", "metric", "composite"];
        let at: Vec<usize> = core.iter().map(|k| names.iter().position(|n| n == k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        let mut reg = Registry::new();
        reg.add(&A, "a.so").unwrap();
        assert_eq!(reg.items_of("pack-a"), ["composite t_comp"]);
        assert!(reg.items_of("pack-b").is_empty());
    }
}
