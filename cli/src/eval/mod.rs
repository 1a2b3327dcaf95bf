//! Parts of `lumen eval`: the resumable chunk store, the report and the plots, and
//! running at scale: shards, their merge and Slurm scripts.

pub mod plot;
pub mod report;
pub mod shard;
pub mod slurm;
pub mod store;
