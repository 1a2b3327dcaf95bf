//! lumen-eval: evaluation as a library, used by `lumen eval`, `lumen gallery` and
//! Rhai scripts. It holds the data sets with ground-truth masks ([`data`]), the
//! resumable chunk store ([`store`]), the report with its plots ([`report`],
//! [`plot`]), whole runs ([`run`]), and running at scale: shards and their merge
//! ([`shard`], [`run::merge`]) and Slurm scripts ([`slurm`]), and the timing of
//! methods for `lumen bench` ([`bench`]). It knows no command
//! line: hosts fill an [`EvalConfig`] and print what an [`Output`] receives.

pub mod bench;
pub mod data;
mod error;
pub mod gallery;
pub mod plot;
pub mod report;
pub mod run;
pub mod shard;
pub mod slurm;
pub mod store;

pub use data::EvalData;
pub use error::{Context, Error, Result};
pub use run::{load_model, EvalConfig, Output, PluginPack, Prepared, Quiet};
