//! Extension point for evaluation metrics (issue 10).
//!
//! When the evaluation crate lands, its metric functions are bound here, e.g.
//! `engine.register_fn("deletion", ...)`, so scripts call them next to `explain`.
//! Until then scripts build their own metrics from `explain`, `top_mask` and
//! `Model.accuracy` (see `scripts/evaluate.rhai`).

use crate::api::Host;
use rhai::Engine;
use std::rc::Rc;

pub fn register(_engine: &mut Engine, _host: &Rc<Host>) {}
