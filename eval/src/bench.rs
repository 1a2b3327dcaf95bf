//! Timing methods, for `lumen bench`: one warm-up call, then `reps` timed calls of
//! one method on a batch of bundled MNIST test digits, with the median, the minimum
//! and the process's peak resident memory.
//!
//! Peak memory is the process's high-water mark (`VmHWM` in `/proc/self/status`,
//! Linux only). It never goes down within a process, and freed memory stays in the
//! allocator, so one process can only report it honestly for one method: hosts run
//! each method in a process of its own (see `lumen bench`).

use crate::{bail, err, Result};
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::{Mnist, Split};
use lumen_core::{Classifier, Params, Registry, Target};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The pseudo-method that times the model's forward pass alone.
pub const FORWARD: &str = "forward";

/// The rows `lumen bench` runs without `--methods`: the forward pass and the
/// methods of the side-by-side comparison with Captum (`bench/captum`).
pub const DEFAULT_METHODS: &[&str] = &[
    FORWARD,
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "deeplift",
    "guided_backprop",
    "deconvnet",
    "occlusion",
    "lrp",
];

/// Index within the MNIST-5k test split of each of `batch` benchmark digits: spread
/// evenly over the split (which is ordered by class, so every class appears), and
/// repeated from the start when the batch is larger than the split.
pub fn input_indices(batch: usize, split_len: usize) -> Vec<usize> {
    if batch <= split_len {
        (0..batch).map(|i| i * split_len / batch).collect()
    } else {
        (0..batch).map(|i| i % split_len).collect()
    }
}

/// The benchmark batch `[batch, 1, 28, 28]` (values in [0, 1]).
pub fn inputs(batch: usize, device: &Device) -> Result<Tensor> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let data = Mnist::load()?;
    let idx = input_indices(batch, data.len(Split::Test));
    Ok(data.batch(Split::Test, &idx, device)?.0)
}

/// Parses a comma-separated method list, keeping the order and dropping repeats.
pub fn parse_methods(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = vec![];
    for m in list.split(',').map(str::trim) {
        if m.is_empty() {
            bail!("--methods '{list}' has an empty name");
        }
        if !out.iter().any(|o| o == m) {
            out.push(m.to_string());
        }
    }
    Ok(out)
}

/// Splits `METHOD.KEY=VALUE` pairs into `KEY=VALUE` pairs per method; every pair
/// must name one of `methods` (nested keys keep their dots: `smoothgrad.inner.steps=5`).
pub fn split_params(pairs: &[String], methods: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in pairs {
        let (key, value) = p.split_once('=').ok_or_else(|| err!("--param '{p}' is not of the form METHOD.KEY=VALUE"))?;
        let (method, name) =
            key.split_once('.').ok_or_else(|| err!("--param '{p}' must name its method: METHOD.KEY=VALUE"))?;
        if method == FORWARD {
            bail!("--param '{p}': the forward pass takes no parameters");
        }
        if !methods.iter().any(|m| m == method) {
            bail!("--param '{p}' names '{method}', which is not among the benchmarked methods ({})", methods.join(", "));
        }
        out.entry(method.to_string()).or_default().push(format!("{name}={value}"));
    }
    Ok(out)
}

/// Checks that every method exists and takes its parameters (builds each once), so
/// bad input fails before any timing. Returns each method's resolved parameters.
pub fn check_methods(
    reg: &Registry,
    methods: &[String],
    params: &BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    if methods.is_empty() {
        bail!("no method to benchmark");
    }
    let mut out = BTreeMap::new();
    for m in methods {
        let resolved = if m == FORWARD {
            BTreeMap::new()
        } else {
            let pairs = params.get(m).map(Vec::as_slice).unwrap_or(&[]);
            reg.build_method(m, &Params::parse_pairs(pairs)?)?.params()
        };
        out.insert(m.clone(), resolved);
    }
    Ok(out)
}

/// Checks that the model takes the benchmark digits.
pub fn check_model(model: &dyn Classifier) -> Result<()> {
    let xs = inputs(1, model.device())?;
    model.info().check_input(&xs).map_err(|e| err!("model '{}' does not take MNIST digits: {e}", model.info().name))
}

/// The timing of one method.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub method: String,
    pub batch: usize,
    /// Timed calls (after the warm-up).
    pub reps: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    /// The process's resident-memory high-water mark after the last call (MiB);
    /// `None` where the system does not report it.
    pub peak_rss_mb: Option<f64>,
    /// Resident memory before the warm-up (MiB): the process without the workload.
    pub base_rss_mb: Option<f64>,
    /// Threads candle's CPU kernels use.
    pub threads: usize,
    /// The method's resolved parameters.
    pub params: BTreeMap<String, String>,
}

impl Measurement {
    pub fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "batch": self.batch,
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "peak_rss_mb": self.peak_rss_mb,
            "params": self.params,
            "reps": self.reps,
            "base_rss_mb": self.base_rss_mb,
            "threads": self.threads,
        })
    }

    pub fn from_json(v: &Value) -> Result<Measurement> {
        let num = |k: &str| v[k].as_f64().ok_or_else(|| err!("benchmark result without a number '{k}'"));
        let int = |k: &str| v[k].as_u64().map(|n| n as usize).ok_or_else(|| err!("benchmark result without an integer '{k}'"));
        let params = v["params"]
            .as_object()
            .ok_or_else(|| err!("benchmark result without 'params'"))?
            .iter()
            .map(|(k, x)| (k.clone(), x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())))
            .collect();
        Ok(Measurement {
            method: v["method"].as_str().ok_or_else(|| err!("benchmark result without 'method'"))?.to_string(),
            batch: int("batch")?,
            reps: int("reps")?,
            median_ms: num("median_ms")?,
            min_ms: num("min_ms")?,
            peak_rss_mb: v["peak_rss_mb"].as_f64(),
            base_rss_mb: v["base_rss_mb"].as_f64(),
            threads: int("threads")?,
            params,
        })
    }
}

/// Writes the measurements as a JSON array, one object per method (atomically).
pub fn write_json(path: &Path, rows: &[Measurement]) -> Result<()> {
    let v: Vec<Value> = rows.iter().map(Measurement::to_json).collect();
    lumen_core::io::write_atomic(path, serde_json::to_string_pretty(&v)?.as_bytes())?;
    Ok(())
}

/// Median of a non-empty list (the mean of the two middle values for even lengths).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `method` (or [`FORWARD`]) on `batch` benchmark digits: one warm-up call,
/// then `reps` timed calls; `on_rep(i)` after each timed call. The targets are the
/// predicted classes, resolved once before timing, so every call does the same work.
pub fn measure(
    reg: &Registry,
    model: &dyn Classifier,
    method: &str,
    pairs: &[String],
    batch: usize,
    reps: usize,
    on_rep: &mut dyn FnMut(usize),
) -> Result<Measurement> {
    if reps == 0 {
        bail!("--reps must be at least 1");
    }
    let device = model.device().clone();
    check_model(model)?;
    let xs = inputs(batch, &device)?;
    let target = Target::Predicted.resolve(model, &xs)?;
    let (call, params): (Box<dyn Fn() -> Result<()> + '_>, _) = if method == FORWARD {
        (Box::new(|| model.forward(&xs).map(drop).map_err(Into::into)), BTreeMap::new())
    } else {
        let m = reg.build_method(method, &Params::parse_pairs(pairs)?)?;
        let params = m.params();
        (Box::new(move || m.attribute(model, &xs, &target).map(drop).map_err(Into::into)), params)
    };
    let base_rss_mb = rss_mb("VmRSS");
    let run = || -> Result<f64> {
        let t = Instant::now();
        call()?;
        // Kernels on an accelerator may still be running.
        device.synchronize()?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    run()?;
    let mut times = Vec::with_capacity(reps);
    for i in 0..reps {
        times.push(run()?);
        on_rep(i + 1);
    }
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Measurement {
        method: method.to_string(),
        batch,
        reps,
        median_ms: median(&mut times),
        min_ms,
        peak_rss_mb: rss_mb("VmHWM"),
        base_rss_mb,
        threads: lumen_core::candle::utils::get_num_threads(),
        params,
    })
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS`, `VmHWM`), in
/// MiB; `None` off Linux.
pub fn rss_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field_mb(&status, field)
}

/// Parses `FIELD:   1234 kB` out of a `/proc/PID/status` text.
fn status_field_mb(status: &str, field: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.split(':').next() == Some(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_spread_over_the_split_and_repeat_past_it() {
        assert_eq!(input_indices(4, 1000), vec![0, 250, 500, 750]);
        assert_eq!(input_indices(1, 1000), vec![0]);
        assert_eq!(input_indices(5, 3), vec![0, 1, 2, 0, 1]);
        let x = inputs(3, &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[3, 1, 28, 28]);
        assert!(inputs(0, &Device::Cpu).unwrap_err().to_string().contains("--batch"));
    }

    #[test]
    fn method_lists_and_params_are_checked() {
        assert_eq!(parse_methods("forward, saliency,forward").unwrap(), vec!["forward", "saliency"]);
        assert!(parse_methods("saliency,,lrp").is_err());
        let ms = parse_methods("forward,smoothgrad,lrp").unwrap();
        let p = split_params(&["smoothgrad.inner.batch_size=8".into(), "lrp.epsilon=0.1".into()], &ms).unwrap();
        assert_eq!(p["smoothgrad"], vec!["inner.batch_size=8"]);
        assert_eq!(p["lrp"], vec!["epsilon=0.1"]);
        for bad in ["saliency.batch_size=2", "lrp", "epsilon=1", "forward.x=1"] {
            assert!(split_params(&[bad.into()], &ms).is_err(), "{bad}");
        }
    }

    #[test]
    fn median_min_and_status_parsing() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        let s = "Name:\tlumen\nVmHWM:\t  20480 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_field_mb(s, "VmHWM"), Some(20.0));
        assert_eq!(status_field_mb(s, "VmRSS"), Some(1.0));
        assert_eq!(status_field_mb(s, "VmPeak"), None);
    }

    #[test]
    fn measurements_round_trip_through_json() {
        let m = Measurement {
            method: "saliency".into(),
            batch: 2,
            reps: 3,
            median_ms: 1.5,
            min_ms: 1.25,
            peak_rss_mb: Some(100.0),
            base_rss_mb: None,
            threads: 2,
            params: [("batch_size".to_string(), "64".to_string())].into(),
        };
        let v = m.to_json();
        for k in ["method", "batch", "median_ms", "min_ms", "peak_rss_mb", "params"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(Measurement::from_json(&v).unwrap(), m);
        assert!(Measurement::from_json(&json!({"method": "x"})).is_err());
    }

    #[test]
    fn the_forward_row_is_timed_and_measured() {
        let reg = Registry::from_inventory().unwrap();
        let model = lumen_models::load_shipped("mnist-cnn", &Device::Cpu).unwrap();
        let mut seen = vec![];
        let m = measure(&reg, model.as_ref(), FORWARD, &[], 2, 3, &mut |i| seen.push(i)).unwrap();
        assert_eq!(seen, vec![1, 2, 3]);
        assert_eq!((m.method.as_str(), m.batch, m.reps), (FORWARD, 2, 3));
        assert!(m.min_ms > 0.0 && m.min_ms <= m.median_ms, "{m:?}");
        assert!(m.params.is_empty());
        if cfg!(target_os = "linux") {
            let (peak, base) = (m.peak_rss_mb.unwrap(), m.base_rss_mb.unwrap());
            assert!(peak >= base && base > 0.0, "{m:?}");
        }
        let e = measure(&reg, model.as_ref(), FORWARD, &[], 2, 0, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("--reps"), "{e}");
        let e = measure(&reg, model.as_ref(), "no_such_method", &[], 2, 1, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("no_such_method"), "{e}");
    }
}
