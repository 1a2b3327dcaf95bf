//! The output directory a script may write under, and nothing else; and the
//! directory it may import modules from.
//!
//! Scripts name files relative to these. Absolute paths, `..` and symlinks that lead
//! outside are refused before anything is written or read.

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
        under(&self.root, rel).map_err(|why| refuse(rel, why))
    }
}

/// `rel` joined to the canonical directory `root`, if it stays inside: no absolute
/// path, no `..`, and every existing prefix that is a symlink lands inside `root`.
/// The error is the reason.
pub fn under(root: &Path, rel: &str) -> std::result::Result<PathBuf, &'static str> {
    if rel.trim().is_empty() {
        return Err("the path is empty");
    }
    let p = Path::new(rel);
    if p.is_absolute() || p.has_root() {
        return Err("absolute paths are not allowed");
    }
    let mut parts = vec![];
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("'..' is not allowed"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute paths are not allowed"),
        }
    }
    if parts.is_empty() {
        return Err("the path names no file");
    }
    // Every existing prefix that is a symlink must still land inside the root.
    let mut cur = root.to_path_buf();
    for part in &parts {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = cur.canonicalize().map_err(|_| "it goes through a dangling symlink")?;
                if !target.starts_with(root) {
                    return Err("it goes through a symlink that leads outside");
                }
            }
            Ok(_) => {}
            Err(_) => break, // the rest does not exist yet
        }
    }
    Ok(root.join(parts.iter().collect::<PathBuf>()))
}

/// Rhai's module resolver for `import "name"`: modules come only from the script's
/// own directory (`name.rhai` under it, subdirectories allowed), never from an
/// absolute path, through `..` or through a symlink that leads outside. A script
/// given as a string has no directory, so it cannot import.
pub struct ImportResolver {
    /// Canonical script directory.
    dir: Option<PathBuf>,
    cache: std::cell::RefCell<std::collections::HashMap<PathBuf, rhai::Shared<rhai::Module>>>,
}

impl ImportResolver {
    pub fn new(script_dir: Option<&Path>) -> Result<ImportResolver> {
        let dir = script_dir.map(|d| d.canonicalize().map_err(|e| Error::io(d, e))).transpose()?;
        Ok(ImportResolver { dir, cache: Default::default() })
    }
}

impl rhai::ModuleResolver for ImportResolver {
    fn resolve(
        &self,
        engine: &rhai::Engine,
        _source: Option<&str>,
        path: &str,
        pos: rhai::Position,
    ) -> std::result::Result<rhai::Shared<rhai::Module>, Box<rhai::EvalAltResult>> {
        use rhai::EvalAltResult as E;
        let fail = |msg: String| -> Box<E> { E::ErrorRuntime(msg.into(), pos).into() };
        let Some(dir) = &self.dir else {
            return Err(fail(format!("import '{path}' refused: a script given as text has no directory to import from")));
        };
        let rel = if path.ends_with(".rhai") { path.to_string() } else { format!("{path}.rhai") };
        let file = under(dir, &rel).map_err(|why| {
            fail(format!("import '{path}' refused: {why}; a script imports only from its own directory {}", dir.display()))
        })?;
        if let Some(m) = self.cache.borrow().get(&file) {
            return Ok(m.clone());
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| fail(format!("import '{path}': cannot read {} ({e})", file.display())))?;
        let in_module = |e: Box<E>| -> Box<E> { E::ErrorInModule(path.to_string(), e, pos).into() };
        let mut ast = engine.compile(&text).map_err(|e| in_module(E::from(e).into()))?;
        ast.set_source(file.display().to_string());
        let module: rhai::Shared<rhai::Module> = rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, engine).map_err(in_module)?.into();
        self.cache.borrow_mut().insert(file, module.clone());
        Ok(module)
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
