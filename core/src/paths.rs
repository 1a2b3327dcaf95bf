//! Which files a run may open when its paths come from a script or a parameter.
//!
//! The host installs a [`Policy`] for the length of a script run (`lumen run`) or an
//! evaluation (`lumen eval`): reads only under its read roots, writes only under its
//! write root. Without a policy every path is allowed: a CLI user names their own
//! files. Every place that opens a file named by a method parameter, a sampler, a
//! model card or a script function calls [`check_read`] or [`check_write`] and opens
//! the path it returns.
//!
//! Paths are canonicalised before the check (for a file that does not exist yet,
//! its deepest existing ancestor), so `..` and symlinks cannot lead outside. Loading
//! a registered item by name (a shipped model or generator) is the host's own
//! business and runs outside the policy, see [`trusted`].

use crate::{Error, Result};
use std::cell::Cell;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Read roots, a write root, and the words that tell the user how to allow more.
#[derive(Debug, Clone)]
pub struct Policy {
    read: Vec<PathBuf>,
    write: Option<PathBuf>,
    hint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Policy {
    /// `read`: directories whose files may be read; `write`: the one directory that
    /// may be written under (also readable); `hint`: how the user allows another
    /// read directory (e.g. "pass --allow-read DIR"). Every root must exist.
    pub fn new<P: AsRef<Path>>(read: impl IntoIterator<Item = P>, write: Option<&Path>, hint: &str) -> Result<Policy> {
        let canon = |p: &Path| -> Result<PathBuf> {
            let c = p.canonicalize().map_err(|e| Error::io(p, e))?;
            if !c.is_dir() {
                return Err(Error::msg(format!("{}: not a directory", p.display())));
            }
            Ok(c)
        };
        let write = write.map(canon).transpose()?;
        let mut roots: Vec<PathBuf> = write.iter().cloned().collect();
        for p in read {
            let c = canon(p.as_ref())?;
            if !roots.contains(&c) {
                roots.push(c);
            }
        }
        Ok(Policy { read: roots, write, hint: hint.to_string() })
    }

    pub fn read_roots(&self) -> &[PathBuf] {
        &self.read
    }

    pub fn write_root(&self) -> Option<&Path> {
        self.write.as_deref()
    }

    /// The canonical form of `path` if this policy lets it be read.
    pub fn check_read(&self, path: &Path) -> Result<PathBuf> {
        self.check(path, Access::Read)
    }

    /// The canonical form of `path` if this policy lets it be written.
    pub fn check_write(&self, path: &Path) -> Result<PathBuf> {
        self.check(path, Access::Write)
    }

    fn check(&self, path: &Path, access: Access) -> Result<PathBuf> {
        let verb = if access == Access::Read { "read" } else { "write" };
        let refuse = |reason: String| Error::PathRefused { access: verb, path: path.to_path_buf(), reason };
        let list = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let outside = || match access {
            Access::Read => refuse(format!("it is outside the readable directories ({}); {}", list(&self.read), self.hint)),
            Access::Write => match &self.write {
                Some(w) => refuse(format!("it is outside the output directory {}; a run writes only there", w.display())),
                None => refuse("this run may not write files".into()),
            },
        };
        let resolved = resolve(path).map_err(refuse)?;
        let roots: &[PathBuf] = match access {
            Access::Read => &self.read,
            Access::Write => self.write.as_slice(),
        };
        if roots.iter().any(|r| resolved.starts_with(r)) {
            Ok(resolved)
        } else {
            Err(outside())
        }
    }
}

/// The absolute, canonical form of `path`; for a path that does not exist, the
/// canonical form of its deepest existing ancestor plus the missing rest.
fn resolve(path: &Path) -> std::result::Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err("the path is empty".into());
    }
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| format!("no working directory ({e})"))?.join(path)
    };
    let mut existing = abs.as_path();
    let mut missing = vec![];
    loop {
        match existing.canonicalize() {
            Ok(mut c) => {
                for part in missing.iter().rev() {
                    c.push(part);
                }
                return Ok(c);
            }
            // A name that exists but does not resolve is a dangling symlink: where it
            // leads cannot be checked, and a write would follow it.
            Err(_) if existing.symlink_metadata().is_ok() => {
                return Err("it goes through a dangling symlink".into());
            }
            Err(_) => {}
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(Component::Normal(name))) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            // `..` below a missing directory: the system would refuse it too.
            (_, Some(Component::ParentDir)) => return Err("'..' follows a directory that does not exist".into()),
            _ => return Err("no part of it exists".into()),
        }
    }
}

static POLICY: RwLock<Option<Arc<Policy>>> = RwLock::new(None);

thread_local! {
    static TRUSTED: Cell<bool> = const { Cell::new(false) };
}

/// Restores the previous policy when dropped.
#[must_use = "the policy is removed again when the guard is dropped"]
pub struct Guard {
    previous: Option<Arc<Policy>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut slot = POLICY.write().unwrap_or_else(|p| p.into_inner());
        *slot = self.previous.take();
    }
}

/// Makes `policy` the process's policy until the guard is dropped.
pub fn install(policy: Policy) -> Guard {
    let mut slot = POLICY.write().unwrap_or_else(|p| p.into_inner());
    Guard { previous: slot.replace(Arc::new(policy)) }
}

/// The policy in force, if any.
pub fn current() -> Option<Arc<Policy>> {
    POLICY.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn active() -> Option<Arc<Policy>> {
    if TRUSTED.with(|t| t.get()) {
        None
    } else {
        current()
    }
}

/// `path` if it may be read: unchanged without a policy, canonical with one.
pub fn check_read(path: &Path) -> Result<PathBuf> {
    match active() {
        Some(p) => p.check_read(path),
        None => Ok(path.to_path_buf()),
    }
}

/// `path` if it may be written: unchanged without a policy, canonical with one.
pub fn check_write(path: &Path) -> Result<PathBuf> {
    match active() {
        Some(p) => p.check_write(path),
        None => Ok(path.to_path_buf()),
    }
}

/// Runs `f` outside the policy on this thread: for the host loading an item that
/// a pack registered by name (its files are the pack's, not the script's).
pub fn trusted<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            TRUSTED.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(TRUSTED.with(|t| t.replace(true)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lumen-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    #[test]
    fn reads_and_writes_stay_under_their_roots() {
        let base = tmp("roots");
        for d in ["script", "out", "extra", "elsewhere"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("elsewhere/secret.txt"), "x").unwrap();
        std::fs::write(base.join("extra/data.png"), "x").unwrap();
        let p = Policy::new([base.join("script"), base.join("extra")], Some(&base.join("out")), "pass --allow-read DIR")
            .unwrap();

        assert_eq!(p.check_read(&base.join("extra/data.png")).unwrap(), base.join("extra/data.png"));
        assert!(p.check_read(&base.join("out/new/file.safetensors")).is_ok(), "the write root is readable");
        assert_eq!(p.check_write(&base.join("out/a/b.txt")).unwrap(), base.join("out/a/b.txt"));

        let e = p.check_read(&base.join("elsewhere/secret.txt")).unwrap_err().to_string();
        assert!(e.starts_with("refused to read") && e.contains("secret.txt") && e.contains("--allow-read"), "{e}");
        assert!(!e.contains('\n'));
        for bad in ["out/../elsewhere/secret.txt", "out/missing/../../elsewhere/x", "extra/../elsewhere/secret.txt"] {
            let e = p.check_read(&base.join(bad)).unwrap_err().to_string();
            assert!(e.starts_with("refused to read"), "{bad}: {e}");
        }
        let e = p.check_write(&base.join("extra/y.txt")).unwrap_err().to_string();
        assert!(e.starts_with("refused to write") && e.contains("output directory"), "{e}");
        assert!(p.check_write(&PathBuf::from("/tmp/x.safetensors")).is_err());
        assert!(p.check_read(Path::new("")).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_cannot_lead_outside() {
        let base = tmp("links");
        std::fs::create_dir_all(base.join("out/inside")).unwrap();
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join("out/link")).unwrap();
        std::os::unix::fs::symlink(base.join("out/inside"), base.join("out/ok")).unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere/nothing"), base.join("out/dangling")).unwrap();
        let p = Policy::new(Vec::<PathBuf>::new(), Some(&base.join("out")), "").unwrap();
        assert!(p.check_write(&base.join("out/link/x.txt")).is_err());
        assert!(p.check_write(&base.join("out/dangling")).unwrap_err().to_string().contains("dangling"));
        assert_eq!(p.check_write(&base.join("out/ok/x.txt")).unwrap(), base.join("out/inside/x.txt"));
    }

    #[test]
    fn roots_must_exist() {
        let e = Policy::new([Path::new("/nonexistent/lumen-root")], None, "").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/lumen-root"), "{e}");
    }

    // Installs only a policy that allows everything, so that other tests of this
    // crate, which run in parallel in this process, are not affected.
    #[test]
    fn install_restores_and_trusted_suspends() {
        let everything = Policy::new([Path::new("/")], Some(Path::new("/")), "").unwrap();
        let g = install(everything);
        assert!(current().is_some());
        let rel = Path::new("some/relative/file");
        assert!(check_read(rel).unwrap().is_absolute(), "a policy canonicalises");
        assert_eq!(trusted(|| check_read(rel).unwrap()), rel, "trusted code is outside the policy");
        assert!(check_read(rel).unwrap().is_absolute(), "trust ends with the closure");
        drop(g);
        assert_eq!(check_read(rel).unwrap(), rel);
    }
}
