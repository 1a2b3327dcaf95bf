//! Atomic file output: write to a temporary sibling, then rename, so a crash or an
//! error never leaves a half-written file where a good one was.
//!
//! The temporary file is created exclusively (`O_EXCL`, so a planted symlink or file
//! at its name is never followed or reused) with a random name in the target's
//! directory; it is synced, renamed into place, and the directory is synced. Live
//! temporary paths are kept in a registry so that an interrupt handler can remove
//! them ([`remove_temp_files`]): a signal does not run destructors.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Temporary files being written now.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every temporary file being written and returns how many there were. For
/// an interrupt handler that exits right after: the registry stays locked, so no
/// write in flight can rename its file into place afterwards.
pub fn remove_temp_files() -> usize {
    let guard = live();
    for p in guard.iter() {
        let _ = std::fs::remove_file(p);
    }
    let n = guard.len();
    // Keep the lock held until the process exits.
    std::mem::forget(guard);
    n
}

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`] with a writer callback.
pub fn write_atomic_with(
    path: impl AsRef<Path>,
    f: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // The mode of an ordinary new file (0666 less the umask), not tempfile's 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    live().push(tmp.path().to_path_buf());
    let written = f(tmp.as_file_mut()).and_then(|()| tmp.as_file().sync_all());
    // Renamed (or removed) under the registry lock: an interrupt either removes the
    // temporary file before this or finds it gone.
    let mut reg = live();
    reg.retain(|p| p != tmp.path());
    let res = match written {
        // A failed persist drops the temporary file, which removes it.
        Ok(()) => tmp.persist(path).map(drop).map_err(|e| e.error),
        Err(e) => {
            drop(tmp);
            Err(e)
        }
    };
    drop(reg);
    res.and_then(|()| sync_dir(dir)).map_err(|e| Error::io(path, e))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Saves named tensors as safetensors, atomically.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
) -> Result<()> {
    let bytes = safetensors::serialize(tensors, None)
        .map_err(|e| Error::msg(format!("{}: cannot serialise tensors: {e}", path.as_ref().display())))?;
    write_atomic(path, &bytes)
}

/// Saves an RGB picture as PNG, atomically.
pub fn save_png(path: impl AsRef<Path>, img: &image::RgbImage) -> Result<()> {
    let path = path.as_ref();
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::Image { path: path.into(), reason: e.to_string() })?;
    write_atomic(path, buf.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn atomic_write_replaces_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("lumen-io-{}", std::process::id()));
        let p = dir.join("a/b.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // A failing writer leaves the old content and no temporary file.
        let r = write_atomic_with(&p, |_| Err(std::io::Error::other("boom")));
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let n = std::fs::read_dir(p.parent().unwrap()).unwrap().count();
        assert_eq!(n, 1);
        assert!(live().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Symlinks planted at every name the old scheme would use cannot redirect a write.
    #[cfg(unix)]
    #[test]
    fn planted_symlinks_are_not_followed() {
        let dir = std::env::temp_dir().join(format!("lumen-io-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(format!(".x.txt.tmp-{}", std::process::id()))).unwrap();
        write_atomic(dir.join("x.txt"), b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(dir.join("x.txt")).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn safetensors_round_trip() {
        let dir = std::env::temp_dir().join(format!("lumen-io-st-{}", std::process::id()));
        let t = candle_core::Tensor::new(&[1f32, 2., 3.], &candle_core::Device::Cpu).unwrap();
        let p = dir.join("t.safetensors");
        save_safetensors(&p, &[("a".to_string(), t)].into_iter().collect()).unwrap();
        let back = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
        assert_eq!(back["a"].to_vec1::<f32>().unwrap(), vec![1., 2., 3.]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
