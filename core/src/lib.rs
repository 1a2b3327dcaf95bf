//! lumen-core: the traits, the explainable graph and its rule hooks, the registry and
//! the plugin loader that lumen's method packs build on. Core knows no attribution
//! method and no rule: every method lives in a pack and reaches the host through the
//! [`registry`] (see ARCHITECTURE.md at the repository root).

pub mod autograd;
pub mod data;
pub mod device;
pub mod entry;
pub mod error;
pub mod explanation;
pub mod generator;
pub mod guard;
pub mod io;
pub mod method;
pub mod metric;
pub mod model;
pub mod params;
pub mod paths;
pub mod plugin;
pub mod registry;
pub mod render;
pub mod rules;
pub mod sampler;
pub mod target;

pub use error::{Error, Result};
pub use explanation::Explanation;
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
