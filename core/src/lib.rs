//! lumen-core: the traits, the explainable graph and its rule hooks, the registry and
//! the plugin loader that lumen's method packs build on. Core knows no attribution
//! method and no rule: every method lives in a pack and reaches the host through the
//! [`registry`] (see ARCHITECTURE.md at the repository root).

// The derives name `::lumen_core`, so they also work inside this crate.
extern crate self as lumen_core;

pub mod autograd;
pub mod baseline;
pub mod config;
pub mod data;
pub mod device;
pub mod entry;
pub mod error;
pub mod explanation;
pub mod generator;
pub mod guard;
pub mod io;
pub mod kernels;
pub mod method;
pub mod metric;
pub mod model;
pub mod params;
pub mod paths;
pub mod plugin;
pub mod present;
pub mod quadrature;
pub mod registry;
pub mod render;
pub mod rules;
pub mod sampler;
pub mod target;

pub use config::{Choice, Config, Method, Nested};
pub use error::{Error, Result};
pub use explanation::{Explanation, Facts};
pub use method::{Attributor, MethodProps};
pub use metric::{Metric, MetricInput, MetricOutput};
pub use model::{Classifier, ModelInfo, Network, NetworkModel};
pub use params::{Args, ParamKind, ParamSpec, Params, Value};
pub use registry::Registry;
pub use target::Target;

// Re-exported so packs use exactly the host's copies.
pub use candle_core as candle;
pub use candle_nn;
pub use inventory;
pub use image;
