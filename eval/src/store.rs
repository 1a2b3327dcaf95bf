//! The on-disk store of an evaluation run, which makes it resumable.
//!
//! ```text
//! DIR/run.json                          the run's key: everything that changes a figure
//! DIR/args.json                         the arguments, for `lumen eval merge`
//! DIR/index.json                        which chunks are done (rebuilt from the files)
//! DIR/shards/K-of-N.json                a shard's assignment and progress
//! DIR/locks/*.lock                      held while a process computes (see `shard`)
//! DIR/chunks/METHOD/chunk-NNNN.json     one method on one chunk: every metric's output
//! DIR/chunks/METHOD/examples.safetensors  the first maps, for the report
//! ```
//! Each chunk file is written atomically once its chunk is complete, so a killed run
//! loses at most the chunk in flight. A chunk file names itself (method, chunk,
//! metrics) and carries the hash of the run key; a rerun reuses only chunks that
//! check out, and recomputes unreadable ones or ones of another run. METHOD is the
//! name made a safe path component (`shard::path_component`). The report is always
//! rebuilt from the chunk files, so a resumed, a sharded and an uninterrupted run
//! write the same bytes.

use super::shard::path_component;
use crate::{bail, Context, Result};
use lumen_core::io;
use lumen_core::metric::{LayerScore, MetricOutput};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the store layout; a different version is refused like other arguments.
pub const LAYOUT: u64 = 2;

/// SHA-256 of bytes, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of a run key that every chunk file carries.
pub fn key_hash(key: &Value) -> String {
    sha256_hex(key.to_string().as_bytes())
}

/// Numbers go to JSON as is; NaN and infinities (which JSON lacks) become null.
pub fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn nums(v: &[f64]) -> Value {
    Value::Array(v.iter().map(|x| num(*x)).collect())
}

fn read_nums(v: &Value, what: &str) -> Result<Vec<f64>> {
    let a = v.as_array().with_context(|| format!("{what}: not a list"))?;
    Ok(a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
}

pub fn output_to_json(o: &MetricOutput) -> Value {
    json!({
        "metric": o.metric,
        "per_example": nums(&o.per_example),
        "curves": o.curves.as_ref().map(|c| c.iter().map(|v| nums(v)).collect::<Vec<_>>()),
        "curve_x": o.curve_x.as_ref().map(|v| nums(v)),
        "layers": o.layers.as_ref().map(|l| l.iter().map(|s| json!({
            "layer": s.layer, "step": s.step, "spearman": nums(&s.spearman), "ssim": nums(&s.ssim),
        })).collect::<Vec<_>>()),
        "extra": o.extra.iter().map(|(k, v)| (k.clone(), nums(v))).collect::<Map<_, _>>(),
        "notes": o.notes,
    })
}

pub fn output_from_json(v: &Value) -> Result<MetricOutput> {
    let metric = v["metric"].as_str().context("metric output without a name")?.to_string();
    let mut o = MetricOutput::new(metric, read_nums(&v["per_example"], "per_example")?);
    if let Some(c) = v["curves"].as_array() {
        o.curves = Some(c.iter().map(|x| read_nums(x, "curves")).collect::<Result<_>>()?);
    }
    if !v["curve_x"].is_null() {
        o.curve_x = Some(read_nums(&v["curve_x"], "curve_x")?);
    }
    if let Some(ls) = v["layers"].as_array() {
        let mut out = vec![];
        for l in ls {
            out.push(LayerScore {
                layer: l["layer"].as_str().context("layer without a name")?.to_string(),
                step: l["step"].as_u64().context("layer without a step")? as usize,
                spearman: read_nums(&l["spearman"], "spearman")?,
                ssim: read_nums(&l["ssim"], "ssim")?,
            });
        }
        o.layers = Some(out);
    }
    if let Some(m) = v["extra"].as_object() {
        for (k, x) in m {
            o.extra.insert(k.clone(), read_nums(x, k)?);
        }
    }
    if let Some(n) = v["notes"].as_array() {
        o.notes = n.iter().filter_map(|x| x.as_str().map(String::from)).collect();
    }
    Ok(o)
}

/// One method's results on one chunk.
#[derive(Debug, Clone)]
pub struct ChunkResult {
    pub chunk: usize,
    /// Positions of the chunk's examples in the evaluation (0..n).
    pub start: usize,
    pub len: usize,
    /// The explained class of each example.
    pub targets: Vec<usize>,
    /// The method's resolved parameters (as the method reports them).
    pub params: BTreeMap<String, String>,
    /// Why the method produced no maps (then `metrics` is empty).
    pub error: Option<String>,
    pub seconds: f64,
    /// Metric name → its output, or the reason it failed on this chunk.
    pub metrics: BTreeMap<String, std::result::Result<MetricOutput, String>>,
    /// Metric name → seconds spent.
    pub metric_seconds: BTreeMap<String, f64>,
}

impl ChunkResult {
    pub fn to_json(&self) -> Value {
        let metrics: Map<String, Value> = self
            .metrics
            .iter()
            .map(|(k, r)| {
                let v = match r {
                    Ok(o) => json!({"ok": output_to_json(o)}),
                    Err(e) => json!({"error": e}),
                };
                (k.clone(), v)
            })
            .collect();
        json!({
            "chunk": self.chunk, "start": self.start, "len": self.len, "targets": self.targets, "params": self.params,
            "error": self.error, "seconds": self.seconds, "metrics": metrics, "metric_seconds": self.metric_seconds,
        })
    }

    pub fn from_json(v: &Value) -> Result<ChunkResult> {
        let u = |k: &str| v[k].as_u64().with_context(|| format!("chunk file without '{k}'")).map(|x| x as usize);
        let mut metrics = BTreeMap::new();
        if let Some(m) = v["metrics"].as_object() {
            for (k, r) in m {
                let r = match r["error"].as_str() {
                    Some(e) => Err(e.to_string()),
                    None => Ok(output_from_json(&r["ok"]).with_context(|| format!("metric '{k}'"))?),
                };
                metrics.insert(k.clone(), r);
            }
        }
        Ok(ChunkResult {
            chunk: u("chunk")?,
            start: u("start")?,
            len: u("len")?,
            targets: serde_json::from_value(v["targets"].clone()).context("chunk file without 'targets'")?,
            params: serde_json::from_value(v["params"].clone()).unwrap_or_default(),
            error: v["error"].as_str().map(String::from),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
            metrics,
            metric_seconds: serde_json::from_value(v["metric_seconds"].clone()).unwrap_or_default(),
        })
    }
}

/// The run directory.
pub struct Store {
    pub dir: PathBuf,
    pub key_hash: String,
}

/// What a chunk file holds, checked against the run.
pub enum Chunk {
    Done(ChunkResult),
    Missing,
    /// Unreadable, or of another run or unit: recomputed.
    Invalid(String),
}

impl Store {
    /// Opens `dir` for the run `key`: a new directory takes the key; a directory of
    /// the same run is resumed; a directory of another run is refused, naming what differs.
    pub fn open(dir: &Path, key: &Value) -> Result<Store> {
        let path = dir.join("run.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let old: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            if &old != key {
                let diff = differences(&old, key);
                bail!(
                    "{} holds an evaluation with other arguments ({}); use another --out, or delete the directory to start over",
                    dir.display(),
                    diff.join("; ")
                );
            }
        } else {
            io::write_atomic(&path, serde_json::to_string_pretty(key)?.as_bytes())?;
        }
        Ok(Store { dir: dir.to_path_buf(), key_hash: key_hash(key) })
    }

    fn method_dir(&self, method: &str) -> PathBuf {
        self.dir.join("chunks").join(path_component(method))
    }

    pub fn chunk_path(&self, method: &str, chunk: usize) -> PathBuf {
        self.method_dir(method).join(format!("chunk-{chunk:04}.json"))
    }

    pub fn examples_path(&self, method: &str) -> PathBuf {
        self.method_dir(method).join("examples.safetensors")
    }

    /// The chunk file of (method, chunk), checked: it must name this run's key,
    /// this method and chunk, its length and every metric of the run.
    pub fn check(&self, method: &str, chunk: usize, len: usize, metrics: &[String]) -> Chunk {
        let p = self.chunk_path(method, chunk);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Chunk::Missing,
            Err(e) => return Chunk::Invalid(format!("unreadable: {e}")),
        };
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => return Chunk::Invalid("not JSON".into()),
        };
        match self.verify(&v, method, chunk, len, metrics) {
            Ok(r) => Chunk::Done(r),
            Err(e) => Chunk::Invalid(format!("{e:#}")),
        }
    }

    fn verify(&self, v: &Value, method: &str, chunk: usize, len: usize, metrics: &[String]) -> Result<ChunkResult> {
        if v["key_hash"].as_str() != Some(self.key_hash.as_str()) {
            bail!("made by another run (key {})", v["key_hash"].as_str().map(|h| &h[..h.len().min(12)]).unwrap_or("absent"));
        }
        if v["method"].as_str() != Some(method) {
            bail!("holds method {}", v["method"]);
        }
        let r = ChunkResult::from_json(v)?;
        if r.chunk != chunk || r.len != len {
            bail!("holds chunk {} of {} examples, not chunk {chunk} of {len}", r.chunk, r.len);
        }
        if r.error.is_none() {
            if let Some(m) = metrics.iter().find(|m| !r.metrics.contains_key(*m)) {
                bail!("has no result for metric {m}");
            }
        }
        Ok(r)
    }

    /// Writes a chunk file with its identity and the run's key hash.
    pub fn save(&self, method: &str, r: &ChunkResult, shard: Option<&str>) -> Result<()> {
        let mut v = r.to_json();
        v["layout"] = json!(LAYOUT);
        v["key_hash"] = json!(self.key_hash);
        v["method"] = json!(method);
        v["metric_names"] = json!(r.metrics.keys().collect::<Vec<_>>());
        v["shard"] = json!(shard);
        let text = serde_json::to_string_pretty(&v)?;
        io::write_atomic(self.chunk_path(method, r.chunk), text.as_bytes())?;
        Ok(())
    }

    /// A chunk that must be there and check out (for the report).
    pub fn load(&self, method: &str, chunk: usize, len: usize, metrics: &[String]) -> Result<ChunkResult> {
        match self.check(method, chunk, len, metrics) {
            Chunk::Done(r) => Ok(r),
            Chunk::Missing => bail!("{} is missing", self.chunk_path(method, chunk).display()),
            Chunk::Invalid(why) => bail!("{}: {why}", self.chunk_path(method, chunk).display()),
        }
    }

    /// Rewrites `index.json` from the set of done (method, chunk) units.
    pub fn write_index(&self, methods: &[String], chunks: usize, is_done: impl Fn(usize, usize) -> bool) -> Result<(usize, usize)> {
        let mut done = Map::new();
        let mut count = 0;
        for (i, m) in methods.iter().enumerate() {
            let d: Vec<usize> = (0..chunks).filter(|c| is_done(i, *c)).collect();
            count += d.len();
            done.insert(m.clone(), json!(d));
        }
        let total = methods.len() * chunks;
        let v = json!({"chunks_per_method": chunks, "done": done, "done_count": count, "total": total, "complete": count == total});
        io::write_atomic(self.dir.join("index.json"), serde_json::to_string_pretty(&v)?.as_bytes())?;
        Ok((count, total))
    }
}

/// Top-level keys whose values differ, as `key: old -> new`.
pub fn differences(old: &Value, new: &Value) -> Vec<String> {
    let empty = Map::new();
    let (a, b) = (old.as_object().unwrap_or(&empty), new.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let short = |v: Option<&Value>| {
        let s = v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into());
        if s.len() > 60 {
            format!("{}...", &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())])
        } else {
            s
        }
    };
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} before, {} now", short(a.get(k)), short(b.get(k))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_round_trip_through_json_with_nan() {
        let mut o = MetricOutput::new("deletion", vec![0.25, f64::NAN, 1.0 / 3.0]);
        o.curves = Some(vec![vec![1.0, 0.5]; 3]);
        o.curve_x = Some(vec![0.0, 1.0]);
        o.layers = Some(vec![LayerScore { layer: "fc2".into(), step: 1, spearman: vec![0.1; 3], ssim: vec![0.2; 3] }]);
        o.extra.insert("rank".into(), vec![1.0, 2.0, f64::NAN]);
        o.notes.push("n".into());
        let text = serde_json::to_string(&output_to_json(&o)).unwrap();
        let back = output_from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back.per_example[0], 0.25);
        assert_eq!(back.per_example[2], 1.0 / 3.0, "shortest round-trip formatting keeps every bit");
        assert!(back.per_example[1].is_nan() && back.extra["rank"][2].is_nan());
        assert_eq!(back.curves, o.curves);
        assert_eq!(back.layers, o.layers);
        assert_eq!(back.notes, o.notes);
    }

    #[test]
    fn another_run_in_the_same_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("lumen-eval-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = json!({"n": 10, "seed": 0});
        Store::open(&dir, &key).unwrap();
        Store::open(&dir, &key).unwrap();
        let e = Store::open(&dir, &json!({"n": 20, "seed": 0})).err().unwrap().to_string();
        assert!(e.contains("n: 10 before, 20 now") && e.contains("another --out"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
