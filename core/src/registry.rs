//! The registry: every method, model, generator, sampler and composite the host
//! knows, whether it came from a statically linked pack or a loaded plugin.
//!
//! Inside a pack, items are declared with `inventory::submit!` and carry the pack's
//! name (`pack: env!("CARGO_PKG_NAME")`), so a host can register one pack's items
//! at a time and say where each came from.

use crate::config::{Config, Method, MethodBuilder};
use crate::generator::Generator;
use crate::method::{Attributor, MethodProps};
use crate::metric::{Metric, MetricEntry, MetricInput, MetricOutput};
use crate::model::Classifier;
use crate::params::{Args, ParamSpec, Params};
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

impl MethodBuilder for Registry {
    fn build_method(&self, name: &str, params: &Params) -> Result<Box<dyn Attributor>> {
        Registry::build_method(self, name, params)
    }
}
inventory::collect!(MethodEntry);

/// A classifier that a pack provides.
pub struct ModelEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    pub load: fn(&Device) -> Result<Arc<dyn Classifier>>,
}
inventory::collect!(ModelEntry);

/// A generative model (for CDeepEx and xGEMs).
pub struct GeneratorEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    pub load: fn(&Device) -> Result<Arc<dyn Generator>>,
}
inventory::collect!(GeneratorEntry);

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
inventory::collect!(SamplerEntry);

/// Where a registered item came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub pack: String,
    /// `static` for linked packs, or the library path.
    pub source: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.pack, self.source)
    }
}

struct Item<T: 'static> {
    entry: &'static T,
    origin: Origin,
}

/// The host's table of everything it can run.
#[derive(Default)]
pub struct Registry {
    methods: BTreeMap<String, Item<MethodEntry>>,
    models: BTreeMap<String, Item<ModelEntry>>,
    generators: BTreeMap<String, Item<GeneratorEntry>>,
    samplers: BTreeMap<String, Item<SamplerEntry>>,
    metrics: BTreeMap<String, Item<MetricEntry>>,
    packs: BTreeMap<String, String>,
    /// Crate name -> pack name: one crate is one pack, however many files carry it.
    crates: BTreeMap<String, String>,
}

/// Inventory items of every kind: a whole inventory, one library's share of it, or
/// one pack's items.
#[derive(Default, Clone)]
pub struct PackItems {
    pub methods: Vec<&'static MethodEntry>,
    pub models: Vec<&'static ModelEntry>,
    pub generators: Vec<&'static GeneratorEntry>,
    pub samplers: Vec<&'static SamplerEntry>,
    pub metrics: Vec<&'static MetricEntry>,
}

fn addr<T>(e: &'static T) -> usize {
    e as *const T as usize
}

impl PackItems {
    /// Every item in the process-wide inventory lists right now.
    pub fn inventory() -> Self {
        PackItems {
            methods: inventory::iter::<MethodEntry>.into_iter().collect(),
            models: inventory::iter::<ModelEntry>.into_iter().collect(),
            generators: inventory::iter::<GeneratorEntry>.into_iter().collect(),
            samplers: inventory::iter::<SamplerEntry>.into_iter().collect(),
            metrics: inventory::iter::<MetricEntry>.into_iter().collect(),
        }
    }

    /// The addresses of the items: their identity, whatever their `pack` field says.
    pub fn addresses(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.methods.iter().map(|e| addr(*e)).collect();
        v.extend(self.models.iter().map(|e| addr(*e)));
        v.extend(self.generators.iter().map(|e| addr(*e)));
        v.extend(self.samplers.iter().map(|e| addr(*e)));
        v.extend(self.metrics.iter().map(|e| addr(*e)));
        v
    }

    /// The items whose address `keep` accepts.
    pub fn filter_addresses(&self, keep: impl Fn(usize) -> bool) -> Self {
        PackItems {
            methods: self.methods.iter().copied().filter(|e| keep(addr(*e))).collect(),
            models: self.models.iter().copied().filter(|e| keep(addr(*e))).collect(),
            generators: self.generators.iter().copied().filter(|e| keep(addr(*e))).collect(),
            samplers: self.samplers.iter().copied().filter(|e| keep(addr(*e))).collect(),
            metrics: self.metrics.iter().copied().filter(|e| keep(addr(*e))).collect(),
        }
    }

    /// The items whose `pack` field is `pack`.
    pub fn of_pack(&self, pack: &str) -> Self {
        PackItems {
            methods: self.methods.iter().copied().filter(|e| e.pack == pack).collect(),
            models: self.models.iter().copied().filter(|e| e.pack == pack).collect(),
            generators: self.generators.iter().copied().filter(|e| e.pack == pack).collect(),
            samplers: self.samplers.iter().copied().filter(|e| e.pack == pack).collect(),
            metrics: self.metrics.iter().copied().filter(|e| e.pack == pack).collect(),
        }
    }

    /// The distinct `pack` fields, sorted.
    pub fn packs(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.methods.iter().map(|e| e.pack).collect();
        v.extend(self.models.iter().map(|e| e.pack));
        v.extend(self.generators.iter().map(|e| e.pack));
        v.extend(self.samplers.iter().map(|e| e.pack));
        v.extend(self.metrics.iter().map(|e| e.pack));
        v.sort();
        v.dedup();
        v
    }

    pub fn len(&self) -> usize {
        self.methods.len() + self.models.len() + self.generators.len() + self.samplers.len() + self.metrics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn insert<T: 'static>(
    map: &mut BTreeMap<String, Item<T>>,
    kind: &'static str,
    name: &str,
    entry: &'static T,
    origin: &Origin,
) -> Result<()> {
    if let Some(old) = map.get(name) {
        if old.origin.pack == origin.pack {
            return Ok(()); // the same pack seen twice (linked and loaded): keep one
        }
        return Err(Error::Duplicate {
            kind,
            name: name.to_string(),
            first: old.origin.to_string(),
            second: origin.to_string(),
        });
    }
    map.insert(name.to_string(), Item { entry, origin: origin.clone() });
    Ok(())
}

/// Fails if another pack already registered `name`.
fn check_free<T>(map: &BTreeMap<String, Item<T>>, kind: &'static str, name: &str, origin: &Origin) -> Result<()> {
    match map.get(name) {
        Some(old) if old.origin.pack != origin.pack => Err(Error::Duplicate {
            kind,
            name: name.to_string(),
            first: old.origin.to_string(),
            second: origin.to_string(),
        }),
        _ => Ok(()),
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every inventory item linked into this process, except those that a
    /// loaded plugin library brought in (the loader attributes those to their library
    /// by address, see [`crate::plugin`]).
    pub fn from_inventory() -> Result<Self> {
        let mut r = Registry::new();
        let items = crate::plugin::static_items();
        for p in items.packs() {
            r.register_items(p, &p.replace('-', "_"), "static", &items.of_pack(p))?;
        }
        Ok(r)
    }

    /// Registers the statically linked inventory items whose `pack` field is `pack`.
    /// All or nothing: a name already taken by another pack is an error that leaves
    /// the registry unchanged.
    pub fn register_pack(&mut self, pack: &str, source: &str) -> Result<usize> {
        let items = crate::plugin::static_items().of_pack(pack);
        self.register_items(pack, &pack.replace('-', "_"), source, &items)
    }

    /// Registers `items` as pack `pack` (crate `crate_name`) from `source`. All or
    /// nothing: a name already taken by another pack is an error that leaves the
    /// registry unchanged.
    pub fn register_items(&mut self, pack: &str, crate_name: &str, source: &str, items: &PackItems) -> Result<usize> {
        let origin = Origin { pack: pack.to_string(), source: source.to_string() };
        for e in &items.methods {
            check_free(&self.methods, "method", e.name, &origin)?;
        }
        for e in &items.models {
            check_free(&self.models, "model", e.name, &origin)?;
        }
        for e in &items.generators {
            check_free(&self.generators, "generator", e.name, &origin)?;
        }
        for e in &items.samplers {
            check_free(&self.samplers, "sampler", e.name, &origin)?;
        }
        for e in &items.metrics {
            check_free(&self.metrics, "metric", e.name, &origin)?;
        }
        for e in &items.methods {
            insert(&mut self.methods, "method", e.name, e, &origin)?;
        }
        for e in &items.models {
            insert(&mut self.models, "model", e.name, e, &origin)?;
        }
        for e in &items.generators {
            insert(&mut self.generators, "generator", e.name, e, &origin)?;
        }
        for e in &items.samplers {
            insert(&mut self.samplers, "sampler", e.name, e, &origin)?;
        }
        for e in &items.metrics {
            insert(&mut self.metrics, "metric", e.name, e, &origin)?;
        }
        self.packs.entry(pack.to_string()).or_insert_with(|| source.to_string());
        self.crates.entry(crate_name.to_string()).or_insert_with(|| pack.to_string());
        Ok(items.len())
    }

    /// The registered pack that crate `crate_name` provides, if any.
    pub fn pack_of_crate(&self, crate_name: &str) -> Option<&str> {
        self.crates.get(crate_name).map(String::as_str)
    }

    /// Adds one method entry directly (tests, and packs that build entries at run time).
    pub fn add_method(&mut self, entry: &'static MethodEntry, source: &str) -> Result<()> {
        let origin = Origin { pack: entry.pack.to_string(), source: source.to_string() };
        insert(&mut self.methods, "method", entry.name, entry, &origin)
    }

    /// Adds one metric entry directly (tests, and packs that build entries at run time).
    pub fn add_metric(&mut self, entry: &'static MetricEntry, source: &str) -> Result<()> {
        let origin = Origin { pack: entry.pack.to_string(), source: source.to_string() };
        insert(&mut self.metrics, "metric", entry.name, entry, &origin)
    }

    pub fn packs(&self) -> &BTreeMap<String, String> {
        &self.packs
    }

    pub fn methods(&self) -> impl Iterator<Item = (&'static MethodEntry, &Origin)> {
        self.methods.values().map(|i| (i.entry, &i.origin))
    }
    pub fn models(&self) -> impl Iterator<Item = (&'static ModelEntry, &Origin)> {
        self.models.values().map(|i| (i.entry, &i.origin))
    }
    pub fn generators(&self) -> impl Iterator<Item = (&'static GeneratorEntry, &Origin)> {
        self.generators.values().map(|i| (i.entry, &i.origin))
    }
    pub fn samplers(&self) -> impl Iterator<Item = (&'static SamplerEntry, &Origin)> {
        self.samplers.values().map(|i| (i.entry, &i.origin))
    }

    pub fn method_names(&self) -> Vec<String> {
        self.methods.keys().cloned().collect()
    }

    pub fn method(&self, name: &str) -> Result<&'static MethodEntry> {
        lookup(&self.methods, "method", name).map(|i| i.entry)
    }

    /// Builds a method from its parameters. Calls into the pack run under
    /// `catch_unwind`, and so does every later `attribute` call of the result.
    pub fn build_method(&self, name: &str, params: &Params) -> Result<Box<dyn Attributor>> {
        let item = lookup(&self.methods, "method", name)?;
        let args = Args::new(name, item.entry.params(), params)?;
        let pack = item.origin.pack.clone();
        let inner = guard(&pack, || (item.entry.build)(&args, self))?;
        // The pack's accessors are read once, here, under the guard: later calls then
        // cannot panic across the host.
        let (name, props, params) =
            guard(&pack, || Ok((inner.name().to_string(), inner.props(), inner.params())))?;
        Ok(Box::new(Guarded { inner, pack, name, props, params }))
    }

    /// Loads a model. Its later `forward` calls also run under `catch_unwind`.
    pub fn load_model(&self, name: &str, device: &Device) -> Result<Arc<dyn Classifier>> {
        let item = lookup(&self.models, "model", name)?;
        let pack = item.origin.pack.clone();
        // A registered model's files are its pack's, not the run's: outside the policy.
        let inner = crate::paths::trusted(|| guard(&pack, || (item.entry.load)(device)))?;
        // The pack's accessors, read once under the guard (network() too: a pack that
        // panics there fails here, not in a later method).
        let (info, device) = guard(&pack, || {
            let _ = inner.network();
            Ok((inner.info().clone(), inner.device().clone()))
        })?;
        Ok(Arc::new(GuardedModel { inner, pack, info, device }))
    }

    pub fn load_generator(&self, name: &str, device: &Device) -> Result<Arc<dyn Generator>> {
        let item = lookup(&self.generators, "generator", name)?;
        let pack = item.origin.pack.clone();
        let inner = crate::paths::trusted(|| guard(&pack, || (item.entry.load)(device)))?;
        let (name, latent_dim, output_shape) =
            guard(&pack, || Ok((inner.name().to_string(), inner.latent_dim(), inner.output_shape().to_vec())))?;
        Ok(Arc::new(GuardedGenerator { inner, pack, name, latent_dim, output_shape }))
    }

    pub fn build_sampler(&self, name: &str, params: &Params, train: &Tensor) -> Result<Box<dyn Sampler>> {
        let item = lookup(&self.samplers, "sampler", name)?;
        let args = Args::new(name, item.entry.params, params)?;
        let pack = item.origin.pack.clone();
        let inner = guard(&pack, || (item.entry.build)(&args, train))?;
        let name = guard(&pack, || Ok(inner.name().to_string()))?;
        Ok(Box::new(GuardedSampler { inner, pack, name }))
    }

    pub fn load_sampler(&self, name: &str, params: &Params, path: &std::path::Path) -> Result<Box<dyn Sampler>> {
        let item = lookup(&self.samplers, "sampler", name)?;
        let args = Args::new(name, item.entry.params, params)?;
        let pack = item.origin.pack.clone();
        let inner = guard(&pack, || (item.entry.load)(&args, path))?;
        let name = guard(&pack, || Ok(inner.name().to_string()))?;
        Ok(Box::new(GuardedSampler { inner, pack, name }))
    }

    pub fn sampler(&self, name: &str) -> Result<&'static SamplerEntry> {
        lookup(&self.samplers, "sampler", name).map(|i| i.entry)
    }

    pub fn metrics(&self) -> impl Iterator<Item = (&'static MetricEntry, &Origin)> {
        self.metrics.values().map(|i| (i.entry, &i.origin))
    }

    pub fn metric_names(&self) -> Vec<String> {
        self.metrics.keys().cloned().collect()
    }

    pub fn metric(&self, name: &str) -> Result<&'static MetricEntry> {
        lookup(&self.metrics, "metric", name).map(|i| i.entry)
    }

    /// Builds a metric from its parameters. Calls into the pack run under
    /// `catch_unwind`, and so does every later `evaluate` call of the result.
    pub fn build_metric(&self, name: &str, params: &Params) -> Result<Box<dyn Metric>> {
        let item = lookup(&self.metrics, "metric", name)?;
        let args = Args::new(name, item.entry.params, params)?;
        let pack = item.origin.pack.clone();
        let inner = guard(&pack, || (item.entry.build)(&args))?;
        let (name, params, higher_is_better) =
            guard(&pack, || Ok((inner.name().to_string(), inner.params(), inner.higher_is_better())))?;
        Ok(Box::new(GuardedMetric { inner, pack, name, params, higher_is_better }))
    }
}

fn lookup<'a, T>(map: &'a BTreeMap<String, Item<T>>, kind: &'static str, name: &str) -> Result<&'a Item<T>> {
    map.get(name).ok_or_else(|| Error::Unknown { kind, name: name.to_string(), known: map.keys().cloned().collect() })
}

/// Runs `f`, turning a panic into [`Error::PluginPanicked`].
pub fn guard<T>(pack: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    guard_with(|message| Error::PluginPanicked { plugin: pack.to_string(), message }, f)
}

/// Runs `f`, turning a panic into the error `blame` makes of its (one-line) message.
pub fn guard_with<T>(blame: impl FnOnce(String) -> Error, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(blame(panic_message(&*payload))),
    }
}

/// The text of a panic payload, on one line.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An attributor whose calls are contained with `catch_unwind`; its accessors answer
/// from values read under the guard when it was built.
struct Guarded {
    inner: Box<dyn Attributor>,
    pack: String,
    name: String,
    props: MethodProps,
    params: BTreeMap<String, String>,
}

impl Attributor for Guarded {
    fn name(&self) -> &str {
        &self.name
    }
    fn props(&self) -> MethodProps {
        self.props
    }
    fn params(&self) -> BTreeMap<String, String> {
        self.params.clone()
    }
    fn attribute(
        &self,
        model: &dyn Classifier,
        inputs: &Tensor,
        target: &crate::Target,
    ) -> Result<crate::Explanation> {
        guard(&self.pack, || self.inner.attribute(model, inputs, target))
    }
}

/// A classifier whose calls are contained with `catch_unwind` (it may live in a pack).
struct GuardedModel {
    inner: Arc<dyn Classifier>,
    pack: String,
    /// Read under the guard at load time.
    info: crate::ModelInfo,
    device: Device,
}

impl Classifier for GuardedModel {
    fn info(&self) -> &crate::ModelInfo {
        &self.info
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        guard(&self.pack, || self.inner.forward(xs))
    }
    fn network(&self) -> Option<&crate::Network> {
        // A reference into the pack's object, so it cannot be cached; a panic means
        // "no network" (it was asked once, under the guard, at load time).
        catch_unwind(AssertUnwindSafe(|| self.inner.network())).unwrap_or(None)
    }
    fn forward_with(&self, xs: &Tensor, opts: &crate::model::ForwardOptions) -> Result<crate::model::Forward> {
        guard(&self.pack, || self.inner.forward_with(xs, opts))
    }
}

/// A generator whose calls are contained with `catch_unwind`.
struct GuardedGenerator {
    inner: Arc<dyn Generator>,
    pack: String,
    name: String,
    latent_dim: usize,
    output_shape: Vec<usize>,
}

impl Generator for GuardedGenerator {
    fn name(&self) -> &str {
        &self.name
    }
    fn latent_dim(&self) -> usize {
        self.latent_dim
    }
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }
    fn generate(&self, z: &Tensor) -> Result<Tensor> {
        guard(&self.pack, || self.inner.generate(z))
    }
    fn encode(&self, x: &Tensor) -> Option<Result<Tensor>> {
        match catch_unwind(AssertUnwindSafe(|| self.inner.encode(x))) {
            Ok(r) => r,
            Err(p) => Some(Err(Error::PluginPanicked { plugin: self.pack.clone(), message: panic_message(&*p) })),
        }
    }
}

/// A sampler whose calls are contained with `catch_unwind`.
struct GuardedSampler {
    inner: Box<dyn Sampler>,
    pack: String,
    name: String,
}

impl Sampler for GuardedSampler {
    fn name(&self) -> &str {
        &self.name
    }
    fn sample_windows(
        &self,
        image: &crate::sampler::HostImage,
        wins: &[crate::sampler::Window],
        n: usize,
        rng: &mut rand::rngs::StdRng,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        guard(&self.pack, || self.inner.sample_windows(image, wins, n, rng, out))
    }
    fn save(&self, path: &std::path::Path) -> Result<()> {
        guard(&self.pack, || self.inner.save(path))
    }
    fn sample(&self, image: &Tensor, win: crate::sampler::Window, n: usize, rng: &mut rand::rngs::StdRng) -> Result<Tensor> {
        guard(&self.pack, || self.inner.sample(image, win, n, rng))
    }
}

/// A metric whose calls are contained with `catch_unwind`.
struct GuardedMetric {
    inner: Box<dyn Metric>,
    pack: String,
    name: String,
    params: BTreeMap<String, String>,
    higher_is_better: bool,
}

impl Metric for GuardedMetric {
    fn name(&self) -> &str {
        &self.name
    }
    fn params(&self) -> BTreeMap<String, String> {
        self.params.clone()
    }
    fn higher_is_better(&self) -> bool {
        self.higher_is_better
    }
    fn evaluate(&self, input: &MetricInput) -> Result<MetricOutput> {
        guard(&self.pack, || self.inner.evaluate(input))
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
        $crate::inventory::submit! {
            $crate::registry::MethodEntry {
                name: $name,
                pack: env!("CARGO_PKG_NAME"),
                summary: $summary,
                schema: || $params,
                props: || $props,
                build: $build,
            }
        }
    };
}

/// Declares a model in the calling pack.
#[macro_export]
macro_rules! submit_model {
    ($name:expr, $summary:expr, $load:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::ModelEntry { name: $name, pack: env!("CARGO_PKG_NAME"), summary: $summary, load: $load }
        }
    };
}
