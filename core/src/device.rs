//! Device selection: `cpu` or `cuda:N`.

use crate::{Error, Result};
use candle_core::Device;

/// Parses `cpu`, `cuda` or `cuda:N`. A CUDA request in a build without the `cuda`
/// feature is an error that says how to get one.
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = if s == "cuda" {
        0
    } else if let Some(n) = s.strip_prefix("cuda:") {
        n.parse::<usize>()
            .map_err(|_| Error::Device(format!("bad device '{spec}': expected cpu or cuda:N")))?
    } else {
        return Err(Error::Device(format!("unknown device '{spec}': expected cpu or cuda:N")));
    };
    cuda_device(ordinal, spec)
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize, _spec: &str) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::Device(format!("cannot open cuda:{ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize, spec: &str) -> Result<Device> {
    Err(Error::Device(format!(
        "'{spec}' requested, but this build has no CUDA support; rebuild with `--features cuda`"
    )))
}

/// A short name for a device, for logs and model cards.
pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_cpu_and_rejects_junk() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_clear() {
        let e = parse_device("cuda:0").unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
