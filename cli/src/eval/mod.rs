//! Parts of `lumen eval`: the resumable chunk store, the report and the plots.

pub mod plot;
pub mod report;
pub mod store;
