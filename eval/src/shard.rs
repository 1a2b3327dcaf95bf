//! Distributing one `lumen eval` run: shards, cost weights, the per-shard lock and
//! safe path components.
//!
//! The unit of work is one method on one chunk. Every shard computes the same
//! assignment from the same arguments (no coordination): units are weighted by
//! their method's relative cost times the chunk's length, sorted by weight (then by
//! their position in the run), and each goes to the least-loaded shard
//! (longest-processing-time first). Integer weights keep it exact on every machine.

use crate::{bail, err, Context, Result};
use std::collections::{BTreeMap, BinaryHeap};
use std::cmp::Reverse;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

/// Shard `index` of `count` (0-based, like `SLURM_ARRAY_TASK_ID` of `--array=0-(N-1)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole run (no `--shard`).
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || err!("--shard '{s}' is not K/N (shard K of N, 0 ≤ K < N, e.g. 0/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            bail!("--shard '{s}': the shard count N must be at least 1");
        }
        if k >= n {
            bail!("--shard '{s}': shards are numbered 0 to {} (K < N)", n - 1);
        }
        Ok(Shard { index: k, count: n })
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// Relative cost of one example of a method, in saliency examples. Rough figures
/// from the README's Speed section (2-core CPU, `mnist-cnn`); a method not listed
/// costs 1. `--cost NAME=X` overrides them, and `--plan` measures the real ratios.
pub const DEFAULT_COSTS: &[(&str, f64)] = &[
    ("pda", 1000.0),
    ("cdeepex", 500.0),
    ("xgems", 500.0),
    ("integrated_gradients", 40.0),
    ("smoothgrad", 40.0),
    ("occlusion", 20.0),
];

/// The cost weight of each method: `--cost` pairs over the defaults.
pub fn costs(methods: &[String], pairs: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, f64> = methods
        .iter()
        .map(|m| (m.clone(), DEFAULT_COSTS.iter().find(|(n, _)| n == m).map(|(_, c)| *c).unwrap_or(1.0)))
        .collect();
    for p in pairs {
        for item in p.split(',').filter(|s| !s.trim().is_empty()) {
            let (name, v) = item.split_once('=').ok_or_else(|| err!("--cost '{item}' is not METHOD=WEIGHT"))?;
            let name = name.trim();
            let w: f64 = v.trim().parse().map_err(|_| err!("--cost '{item}': '{}' is not a number", v.trim()))?;
            if !(w.is_finite() && w > 0.0 && w <= 1e9) {
                bail!("--cost '{item}': the weight must be a number in (0, 1e9]");
            }
            let slot = out
                .get_mut(name)
                .ok_or_else(|| err!("--cost names '{name}', which is not an evaluated method ({})", methods.join(", ")))?;
            *slot = w;
        }
    }
    Ok(out)
}

/// Integer weight of a unit: cost in thousandths of a saliency example.
pub fn unit_weight(cost: f64, len: usize) -> u64 {
    ((cost * 1000.0).round() as u64).max(1).saturating_mul(len as u64)
}

/// The shard of each unit (weights in the run's canonical unit order), and each
/// shard's total weight.
pub fn assign(weights: &[u64], count: usize) -> (Vec<usize>, Vec<u64>) {
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| weights[b].cmp(&weights[a]).then(a.cmp(&b)));
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = (0..count).map(|s| Reverse((0, s))).collect();
    let mut owner = vec![0; weights.len()];
    let mut load = vec![0u64; count];
    for u in order {
        let Reverse((l, s)) = heap.pop().expect("count ≥ 1");
        owner[u] = s;
        load[s] = l + weights[u];
        heap.push(Reverse((load[s], s)));
    }
    (owner, load)
}

/// A name as one safe path component: letters, digits, `_` and `-` stay; every
/// other byte becomes `%XX` (so distinct names stay distinct, and `..` or `/`
/// cannot leave the directory).
pub fn path_component(name: &str) -> String {
    let mut s = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    if s.is_empty() {
        s.push_str("%00");
    }
    s
}

/// A held lock: released when dropped or when the process dies (an OS file lock,
/// so a killed shard leaves no stale lock; on NFS it needs working file locking).
pub struct Lock {
    _file: File,
}

fn lock_name(s: Shard) -> String {
    if s == Shard::ALL {
        "all.lock".into()
    } else {
        format!("shard-{}-of-{}.lock", s.index, s.count)
    }
}

/// The shard count a lock file belongs to.
fn lock_count(name: &str) -> Option<usize> {
    if name == "all.lock" {
        return Some(1);
    }
    name.strip_prefix("shard-")?.strip_suffix(".lock")?.split_once("-of-")?.1.parse().ok()
}

fn holder(path: &Path) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "unknown".into())
}

/// Takes shard `s`'s lock in `dir/locks/`. Refused while another process holds the
/// same shard, or any shard of a different shard count (their chunks overlap);
/// shards of one count share the directory.
pub fn lock(dir: &Path, s: Shard) -> Result<Lock> {
    let locks = dir.join("locks");
    std::fs::create_dir_all(&locks).with_context(|| format!("creating {}", locks.display()))?;
    let path = locks.join(lock_name(s));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let what = if s == Shard::ALL { "this run".to_string() } else { format!("shard {} of this run", s.label()) };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another process is computing {what} in {} ({}); wait for it or stop it",
            dir.display(),
            holder(&path)
        ),
        Err(std::fs::TryLockError::Error(e)) => bail!("cannot lock {}: {e}", path.display()),
    }
    // Ours now: say who holds it.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    file.set_len(0)?;
    write!(file, "pid {} on {}", std::process::id(), host.trim())?;
    for e in std::fs::read_dir(&locks)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(n) = lock_count(&name) else { continue };
        if n == s.count {
            continue;
        }
        let other = File::open(e.path())?;
        match other.try_lock() {
            // A lock left by a finished process.
            Ok(()) => drop(other),
            Err(_) => bail!(
                "{} is being computed with another shard count ({} holds {}); shards of different counts overlap",
                dir.display(),
                holder(&e.path()),
                name.trim_end_matches(".lock")
            ),
        }
    }
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_bad_ones_are_refused() {
        assert_eq!(Shard::parse("0/4").unwrap(), Shard { index: 0, count: 4 });
        assert_eq!(Shard::parse("3/4").unwrap(), Shard { index: 3, count: 4 });
        for (s, want) in [("5/4", "numbered 0 to 3"), ("4/4", "numbered 0 to 3"), ("0/0", "at least 1"), ("x", "not K/N"), ("1/", "not K/N"), ("-1/2", "not K/N")] {
            let e = Shard::parse(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn assignment_is_balanced_deterministic_and_covers_every_unit() {
        // 2 methods × 10 chunks, one 100× dearer.
        let w: Vec<u64> = (0..20).map(|i| if i % 2 == 0 { unit_weight(100.0, 20) } else { unit_weight(1.0, 20) }).collect();
        let (owner, load) = assign(&w, 4);
        assert_eq!(assign(&w, 4).0, owner);
        let per: Vec<usize> = (0..4).map(|s| owner.iter().filter(|&&o| o == s).count()).collect();
        assert_eq!(per.iter().sum::<usize>(), 20);
        let (lo, hi) = (*load.iter().min().unwrap(), *load.iter().max().unwrap());
        // 10 dear units on 4 shards: 3, 3, 2, 2 of them, the cheap ones fill the gaps.
        assert!(hi - lo <= unit_weight(100.0, 20), "{load:?}");
        assert_eq!(load.iter().sum::<u64>(), w.iter().sum::<u64>());
        // More shards than units: every unit on its own shard, the rest idle.
        let (owner, load) = assign(&w[..3], 5);
        assert_eq!(owner, vec![0, 2, 1]);
        assert_eq!(load.iter().filter(|&&l| l == 0).count(), 2);
    }

    #[test]
    fn costs_default_to_one_and_take_overrides() {
        let m = vec!["saliency".to_string(), "pda".to_string()];
        let c = costs(&m, &[]).unwrap();
        assert_eq!((c["saliency"], c["pda"]), (1.0, 1000.0));
        let c = costs(&m, &["saliency=2,pda=50".into()]).unwrap();
        assert_eq!((c["saliency"], c["pda"]), (2.0, 50.0));
        assert!(costs(&m, &["lrp=2".into()]).unwrap_err().to_string().contains("not an evaluated method"));
        assert!(costs(&m, &["pda=0".into()]).unwrap_err().to_string().contains("(0, 1e9]"));
        assert!(costs(&m, &["pda".into()]).unwrap_err().to_string().contains("METHOD=WEIGHT"));
    }

    #[test]
    fn path_components_cannot_escape_and_stay_distinct() {
        assert_eq!(path_component("integrated_gradients"), "integrated_gradients");
        assert_eq!(path_component("../x"), "%2E%2E%2Fx");
        assert_eq!(path_component("a/b"), "a%2Fb");
        assert_ne!(path_component("a%2Fb"), path_component("a/b"));
        assert_eq!(path_component(""), "%00");
        assert!(!path_component("é.").contains(['.', '/']));
    }

    #[test]
    fn one_process_per_shard_and_one_shard_count_per_directory() {
        let dir = std::env::temp_dir().join(format!("lumen-shard-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = lock(&dir, Shard { index: 0, count: 2 }).unwrap();
        let b = lock(&dir, Shard { index: 1, count: 2 }).unwrap();
        let e = lock(&dir, Shard { index: 0, count: 2 }).err().unwrap().to_string();
        assert!(e.contains("another process is computing shard 0/2") && e.contains("pid"), "{e}");
        let e = lock(&dir, Shard::ALL).err().unwrap().to_string();
        assert!(e.contains("another shard count"), "{e}");
        drop((a, b));
        // Released locks leave files behind that do not block anyone.
        lock(&dir, Shard::ALL).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
