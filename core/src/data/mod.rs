//! Bundled data (MNIST-5k) and input loading.

pub mod biased;
pub mod genomics;
pub mod mnist;

pub use mnist::{Mnist, Split};

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// The largest PNG input, in pixels (width × height), checked from the header before
/// decoding: 16 megapixels (4096 × 4096).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 24;

/// Fails unless `path` is a regular file (not a FIFO, device or directory, which
/// could block or never end) of at most `max_bytes`.
pub fn check_regular_file(path: &Path, max_bytes: u64) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "file not found")))
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    if !meta.is_file() {
        return Err(Error::Data(format!("{}: not a regular file", path.display())));
    }
    if meta.len() > max_bytes {
        return Err(Error::Data(format!("{}: {} bytes, more than the limit of {max_bytes}", path.display(), meta.len())));
    }
    Ok(())
}

/// Loads a grayscale or RGB PNG as `[C, H, W]` in [0, 1] (C = 1 for grayscale).
pub fn load_png(path: &Path, device: &Device) -> Result<Tensor> {
    let path = &crate::paths::check_read(path)?;
    let image_err = |reason: String| Error::Image { path: path.into(), reason };
    check_regular_file(path, crate::model::card::MAX_WEIGHTS_BYTES)?;
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let (w, h) = reader.into_dimensions().map_err(|e| image_err(e.to_string()))?;
    if w as u64 * h as u64 > MAX_IMAGE_PIXELS {
        return Err(image_err(format!("{w}×{h} pixels, more than the limit of {MAX_IMAGE_PIXELS}")));
    }
    let img = image::open(path).map_err(|e| image_err(e.to_string()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (c, data): (usize, Vec<f32>) = match img.color().channel_count() {
        1 | 2 => (1, img.to_luma8().into_raw().into_iter().map(|v| v as f32 / 255.0).collect()),
        _ => {
            let raw = img.to_rgb8().into_raw();
            let mut chw = vec![0f32; 3 * h * w];
            for (i, px) in raw.chunks(3).enumerate() {
                for ch in 0..3 {
                    chw[ch * h * w + i] = px[ch] as f32 / 255.0;
                }
            }
            (3, chw)
        }
    };
    Ok(Tensor::from_vec(data, (c, h, w), device)?)
}

/// Loads a tensor from a `.safetensors` file (its only tensor, or the one named
/// `input`/`baseline`) or a `.png` file.
pub fn load_tensor_file(path: &Path, device: &Device) -> Result<Tensor> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()) {
        Some(e) if e == "png" => load_png(path, device),
        Some(e) if e == "safetensors" => {
            let mut m = crate::model::load_safetensors(path, device)?;
            if m.len() == 1 {
                return Ok(m.into_values().next().expect("one tensor"));
            }
            for k in ["input", "baseline", "attribution"] {
                if let Some(t) = m.remove(k) {
                    return Ok(t);
                }
            }
            Err(Error::Data(format!(
                "{}: holds {} tensors; name one 'input' or 'baseline'",
                path.display(),
                m.len()
            )))
        }
        _ => Err(Error::Data(format!("{}: expected a .png or .safetensors file", path.display()))),
    }
}

/// An input named on the command line, with its label when known.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    /// `[C, H, W]`.
    pub tensor: Tensor,
    pub label: Option<usize>,
}

/// Resolves `mnist:SPLIT:INDEX` or a file path to an input tensor.
pub fn load_input(spec: &str, device: &Device) -> Result<Input> {
    if let Some(rest) = spec.strip_prefix("mnist:") {
        let (split, idx) = rest
            .split_once(':')
            .ok_or_else(|| Error::Data(format!("'{spec}': expected mnist:train:INDEX or mnist:test:INDEX")))?;
        let split = Split::parse(split)?;
        let idx: usize = idx.parse().map_err(|_| Error::Data(format!("'{spec}': '{idx}' is not an index")))?;
        let data = Mnist::load()?;
        let (t, label) = data.get(split, idx, device)?;
        return Ok(Input { name: format!("mnist-{}-{idx}", split.name()), tensor: t, label: Some(label) });
    }
    let path = Path::new(spec);
    let tensor = match load_tensor_file(path, device)? {
        t if t.rank() == 4 && t.dim(0)? == 1 => t.squeeze(0)?,
        t => t,
    };
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "input".into());
    Ok(Input { name, tensor, label: None })
}
