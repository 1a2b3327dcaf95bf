//! Rendering: colour maps, heatmaps with legends, a bitmap font, grid compositing
//! and HTML pages. Every function returns an [`image::RgbImage`]; save with
//! [`crate::io::save_png`] (atomic).
//!
//! Typical use:
//! ```no_run
//! # use lumen_core::render::{render, HeatmapOptions};
//! # fn f(attr: &candle_core::Tensor, x: &candle_core::Tensor) -> lumen_core::Result<()> {
//! let img = render(attr, Some(x), &HeatmapOptions { overlay: true, ..Default::default() })?;
//! lumen_core::io::save_png("map.png", &img)?;
//! # Ok(()) }
//! ```

pub mod colormap;
pub mod font;
pub mod grid;
pub mod heatmap;
pub mod html;

pub use colormap::{blend, diverging, gray, sequential};
pub use font::{draw_text, draw_text_centered, text_size, text_width};
pub use grid::{blank_tile, Grid, Layout};
pub use heatmap::{
    cap_values, fmt_tick, heatmap, input_image, legend_bar, percentile, reduce_channels, render, stack_vertical,
    with_caption, Heatmap, HeatmapOptions, Reduce,
};
pub use html::{escape, page, table, write_page_for_png};
