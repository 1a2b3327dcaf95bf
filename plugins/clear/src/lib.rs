//! CLEAR: class-enhanced attentive response maps (Kumar, Wong & Taylor, 2017).
//!
//! For a classifier whose last conv layer has one kernel per class followed by global
//! average pooling, every class kernel's activations are back-projected to the input
//! through Zeiler's deconvolution ([`clear::attentive_responses`]). The per-pixel
//! argmax over classes is the dominant class map Ĉ, its value the dominant response
//! map D, and the two are drawn as an HSV picture ([`render`]).

pub mod clear;
pub mod render;

pub use clear::{attentive_responses, class_layer, Clear, ClearConfig, ClassLayer, Seed};

/// Forces the linker to keep this pack's registrations when linked statically.
pub fn link() {}

// The C entry points that make this crate a plugin pack (see lumen_core::plugin).
lumen_dylib::declare_pack!();

// CLEAR needs one kernel per class before global average pooling: the gallery shows
// it on mnist-allcnn when its model has none.
lumen_core::submit_gallery_preset!("clear", 110, Some("mnist-allcnn"), &[]);

// CLEAR's own picture (eq. 6: hue = dominant class, value = its response) with the
// class-colour legend, written by `lumen explain` beside the ordinary heatmap.
lumen_core::submit_renderer!(
    "clear",
    "the CLEAR map with its class legend",
    "rgb",
    |e: &lumen_core::Explanation| e.tensors.contains_key("clear_rgb") && e.tensors.contains_key("classes"),
    |e, req| {
        let opts = render::ClearRenderOptions { overlay: true, input_range: req.input_range, ..Default::default() };
        render::render_example(e, req.example, req.labels, req.input, &opts)
    },
);
