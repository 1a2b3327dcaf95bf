//! The single integration-test binary (built as a test of the `lumen` package, so
//! cargo builds the binary first). Each area has its own module.

mod metrics;
mod util;

mod cdeepex;

mod clear;
mod bad_input;
mod bench;
mod cli;
mod explain;
mod models;
mod kernels;
mod gradients;
mod pda;
mod script;
mod relevance;
mod zennit;
mod shapley;
mod gradcam;
mod layer;
mod plugins;
mod loader;
mod registry;
mod eval;
mod present;
mod shard;
mod hardening;
mod sandbox;
