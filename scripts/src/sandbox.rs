//! The output directory a script may write under, and nothing else.
//!
//! Scripts name files relative to it. Absolute paths, `..` and symlinks that lead
//! outside are refused before anything is written.

use lumen_core::{Error, Result};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct OutDir {
    /// Canonical path of the root (created on first use).
    root: PathBuf,
}

fn refuse(rel: &str, why: &str) -> Error {
    Error::Script(format!("refused to write '{rel}': {why}; a script writes only under its output directory"))
}

impl OutDir {
    /// Creates the directory if needed and remembers its canonical path, so a
    /// symlink check compares like with like.
    pub fn new(dir: impl AsRef<Path>) -> Result<OutDir> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let root = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        Ok(OutDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a script-supplied relative path to a path under the root.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf> {
        if rel.trim().is_empty() {
            return Err(refuse(rel, "the path is empty"));
        }
        let p = Path::new(rel);
        if p.is_absolute() || p.has_root() {
            return Err(refuse(rel, "absolute paths are not allowed"));
        }
        let mut parts = vec![];
        for c in p.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_owned()),
                Component::CurDir => {}
                Component::ParentDir => return Err(refuse(rel, "'..' is not allowed")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse(rel, "absolute paths are not allowed"))
                }
            }
        }
        if parts.is_empty() {
            return Err(refuse(rel, "the path names no file"));
        }
        // Every existing prefix that is a symlink must still land inside the root.
        let mut cur = self.root.clone();
        for part in &parts {
            cur.push(part);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = cur.canonicalize().map_err(|_| refuse(rel, "it goes through a dangling symlink"))?;
                    if !target.starts_with(&self.root) {
                        return Err(refuse(rel, "it goes through a symlink that leads outside"));
                    }
                }
                Ok(_) => {}
                Err(_) => break, // the rest does not exist yet
            }
        }
        Ok(self.root.join(parts.iter().collect::<PathBuf>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escapes_and_accepts_nested_paths() {
        let base = std::env::temp_dir().join(format!("lumen-sandbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let out = OutDir::new(base.join("out")).unwrap();
        let ok = out.resolve("a/b/c.csv").unwrap();
        assert!(ok.starts_with(out.root()) && ok.ends_with("a/b/c.csv"));
        assert!(out.resolve("./x.json").unwrap().ends_with("x.json"));
        for bad in ["/etc/passwd", "../x", "a/../../x", "", "."] {
            let e = out.resolve(bad).unwrap_err().to_string();
            assert!(e.contains("refused"), "{bad}: {e}");
        }
        #[cfg(unix)]
        {
            std::fs::create_dir_all(base.join("elsewhere")).unwrap();
            std::fs::create_dir_all(out.root().join("inside")).unwrap();
            std::os::unix::fs::symlink(base.join("elsewhere"), out.root().join("link")).unwrap();
            std::os::unix::fs::symlink(out.root().join("inside"), out.root().join("ok_link")).unwrap();
            let e = out.resolve("link/x.txt").unwrap_err().to_string();
            assert!(e.contains("symlink"), "{e}");
            assert!(out.resolve("ok_link/x.txt").is_ok());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
