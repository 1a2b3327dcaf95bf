//! Finding and loading packs: discovery order, checks, registration, reports.

use super::{InfoFn, PackInfo, RegisterFn, ABI_VERSION, ANCHOR, FINGERPRINT, INFO_PREFIX, REGISTER_PREFIX};
use crate::guard::guard;
use crate::entry::PackItems;
use crate::{Error, Registry};
use std::collections::HashSet;
use std::ffi::{c_char, CString};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Where a search directory came from; decides whether odd files are worth a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// An entry of `LUMEN_PLUGIN_PATH` (a directory or a library file).
    Env,
    /// `plugins/` next to the host binary.
    ExeDir,
    /// The cargo target directory, when the host runs under cargo. Holds many
    /// libraries that are not packs, so those are skipped silently.
    Cargo,
}

impl fmt::Display for SearchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SearchKind::Env => "LUMEN_PLUGIN_PATH",
            SearchKind::ExeDir => "plugins dir",
            SearchKind::Cargo => "cargo target dir",
        })
    }
}

#[derive(Debug, Clone)]
pub struct SearchDir {
    pub path: PathBuf,
    pub kind: SearchKind,
}

/// The discovery order: `LUMEN_PLUGIN_PATH`, then `plugins/` next to the binary and
/// `../lib/lumen/plugins` (the `dist` layout), then the cargo target directory when
/// run through cargo (`cargo run`, `cargo test`).
pub fn default_search_path() -> Vec<SearchDir> {
    let mut v = vec![];
    if let Some(p) = std::env::var_os("LUMEN_PLUGIN_PATH") {
        v.extend(std::env::split_paths(&p).filter(|p| !p.as_os_str().is_empty()).map(|path| SearchDir {
            path,
            kind: SearchKind::Env,
        }));
    }
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(d) = &exe_dir {
        v.push(SearchDir { path: d.join("plugins"), kind: SearchKind::ExeDir });
        if let Some(prefix) = d.parent() {
            v.push(SearchDir { path: prefix.join("lib").join("lumen").join("plugins"), kind: SearchKind::ExeDir });
        }
    }
    if std::env::var_os("CARGO").is_some() {
        if let Some(d) = exe_dir {
            // Test and example binaries live one level below the profile directory.
            let d = match d.file_name().and_then(|n| n.to_str()) {
                Some("deps" | "examples") => d.parent().map(Path::to_path_buf).unwrap_or(d),
                _ => d,
            };
            v.push(SearchDir { path: d, kind: SearchKind::Cargo });
        }
    }
    v
}

/// How to load: where to look, and the fingerprint the host accepts.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub search: Vec<SearchDir>,
    /// Normally [`FINGERPRINT`]; settable so that tests can exercise refusal.
    pub expected_fingerprint: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { search: default_search_path(), expected_fingerprint: FINGERPRINT.to_string() }
    }
}

impl LoadOptions {
    /// Only the given directories (or library files), nothing from the environment.
    pub fn only(paths: &[PathBuf]) -> Self {
        LoadOptions {
            search: paths.iter().map(|p| SearchDir { path: p.clone(), kind: SearchKind::Env }).collect(),
            expected_fingerprint: FINGERPRINT.to_string(),
        }
    }
}

/// The outcome for one pack.
#[derive(Debug)]
pub enum PackStatus {
    /// Registered; the items it added.
    Loaded { items: Vec<String> },
    /// The same pack (by crate name) was already registered from elsewhere.
    AlreadyLoaded { by: String },
    /// Built against another ABI: wrong fingerprint, or a private copy of lumen-core.
    Refused(Error),
    /// Compatible but could not be registered (duplicate names, a panic, ...).
    Failed(Error),
}

#[derive(Debug)]
pub struct PackReport {
    pub path: PathBuf,
    pub found_in: SearchKind,
    pub crate_name: String,
    /// From the pack's info record (absent when it could not be read).
    pub name: Option<String>,
    pub version: Option<String>,
    pub fingerprint: Option<String>,
    pub status: PackStatus,
}

impl PackReport {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.crate_name)
    }
}

/// What a load found. Problems never abort loading: each is a warning or a pack status.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub packs: Vec<PackReport>,
    pub warnings: Vec<String>,
    /// Problems in the cargo target directory, which routinely holds stale or foreign
    /// libraries: shown by `lumen plugins`, not printed on every run.
    pub notes: Vec<String>,
}

impl LoadReport {
    /// Warnings plus one line per refused or failed pack, for printing on stderr.
    pub fn problems(&self) -> Vec<String> {
        let mut v = self.warnings.clone();
        for p in self.packs.iter().filter(|p| p.found_in != SearchKind::Cargo) {
            match &p.status {
                PackStatus::Refused(e) => v.push(format!("plugin {} refused: {e}", p.display_name())),
                PackStatus::Failed(e) => v.push(format!("plugin {} not loaded: {e}", p.display_name())),
                _ => {}
            }
        }
        v
    }
}

/// A pack library opened in this process. Kept forever: items registered from it
/// point into its code.
struct Opened {
    path: PathBuf,
    /// The pack crates it was opened for.
    crates: Vec<String>,
    lib: &'static libloading::Library,
    /// The inventory items its constructors added, told apart by address.
    items: PackItems,
    /// The memory file it was loaded from, kept open: the dynamic linker knows the
    /// library by the name `/proc/self/fd/N`, and a closed fd's number would be reused
    /// by the next pack, which `dlopen` would then mistake for this one.
    _image: Option<File>,
}

/// Every library opened, in order. Held while a library is opened, so that no
/// inventory snapshot sees its items unattributed.
static OPENED: Mutex<Vec<Opened>> = Mutex::new(Vec::new());

fn opened() -> MutexGuard<'static, Vec<Opened>> {
    OPENED.lock().unwrap_or_else(|p| p.into_inner())
}

/// The register entry point's message buffer.
const ERR_LEN: usize = 4096;
/// The longest info string (name, version, fingerprint) read from a pack.
const INFO_STR_MAX: usize = 2048;
/// The longest message from a pack that is printed.
const MSG_MAX: usize = 400;
/// Pack files larger than this are not read.
const FILE_MAX: u64 = 1 << 30;

/// Discovers packs along `opts.search` and registers the compatible ones into `reg`.
/// Safe to call repeatedly: a library is opened once per process.
pub fn load_into(reg: &mut Registry, opts: &LoadOptions) -> LoadReport {
    let mut report = LoadReport::default();
    let mut seen: Vec<PathBuf> = vec![];
    for dir in &opts.search {
        for file in candidates(dir, &mut report.warnings) {
            let canon = file.canonicalize().unwrap_or_else(|_| file.clone());
            if seen.contains(&canon) {
                continue;
            }
            seen.push(canon.clone());
            load_file(reg, opts, &canon, dir.kind, &mut report);
        }
    }
    report
}

/// Loads one library file (every pack it declares) into `reg`.
pub fn load_library(reg: &mut Registry, path: &Path, opts: &LoadOptions) -> LoadReport {
    let mut report = LoadReport::default();
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    load_file(reg, opts, &canon, SearchKind::Env, &mut report);
    report
}

/// `*.so` (`.dylib`, `.dll`), and on Unix also versioned names such as `libx.so.1`
/// or `libx.so.1.2`.
pub fn is_pack_file_name(name: &str) -> bool {
    let ext = std::env::consts::DLL_EXTENSION;
    if name.strip_suffix(ext).is_some_and(|s| s.ends_with('.') && s.len() > 1) {
        return true;
    }
    cfg!(unix)
        && name.split_once(&format!(".{ext}.")).is_some_and(|(stem, ver)| {
            !stem.is_empty() && ver.split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn is_library(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(is_pack_file_name)
}

/// The pack files `lumen plugins --check` tries: `path` itself if it is a file, else
/// the library files in the directory, sorted.
pub fn pack_files(path: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(format!("{} is neither a directory nor a file", path.display()));
    }
    let mut warnings = vec![];
    let v = candidates(&SearchDir { path: path.to_path_buf(), kind: SearchKind::Env }, &mut warnings);
    match warnings.into_iter().next() {
        Some(w) => Err(w),
        None => Ok(v),
    }
}

/// The shared runtime itself sits in the target directory; it is not a pack.
fn is_runtime(p: &Path) -> bool {
    let runtime = format!("{}lumen_dylib.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION);
    p.file_name().and_then(|n| n.to_str()) == Some(runtime.as_str())
}

fn candidates(dir: &SearchDir, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let p = &dir.path;
    if p.is_file() {
        return vec![p.clone()];
    }
    if !p.is_dir() {
        if dir.kind == SearchKind::Env {
            warnings.push(format!("plugin path entry {} does not exist; skipped", p.display()));
        }
        return vec![];
    }
    let rd = match std::fs::read_dir(p) {
        Ok(rd) => rd,
        Err(e) => {
            warnings.push(format!("cannot read plugin directory {}: {e}; skipped", p.display()));
            return vec![];
        }
    };
    let mut v: Vec<PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && is_library(p) && !is_runtime(p)).collect();
    v.sort();
    v
}

/// The crate names of the info entry points a library file exports, found by looking
/// for `lumen_plugin_info_<name>` between NULs (the dynamic string table) without
/// loading it: loading runs the library's constructors, so only packs get loaded.
fn entry_crates(bytes: &[u8]) -> Vec<String> {
    let pre = INFO_PREFIX.as_bytes();
    let mut v: Vec<String> = vec![];
    let mut i = 0;
    while i + pre.len() < bytes.len() {
        if &bytes[i..i + pre.len()] == pre {
            let before_ok = i > 0
                && (bytes[i - 1] == 0 || (bytes[i - 1] == b'_' && i > 1 && bytes[i - 2] == 0));
            let start = i + pre.len();
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if before_ok && end > start && end < bytes.len() && bytes[end] == 0 {
                let name = String::from_utf8_lossy(&bytes[start..end]).into_owned();
                if !v.contains(&name) {
                    v.push(name);
                }
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    v
}

/// Reads a candidate once, from one open file: what is scanned is what gets loaded
/// (see [`open`]).
fn read_pack_file(path: &Path) -> std::result::Result<Vec<u8>, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > FILE_MAX {
        return Err(format!("{} bytes, more than a pack may have ({FILE_MAX})", meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.by_ref().take(FILE_MAX + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

fn load_file(reg: &mut Registry, opts: &LoadOptions, path: &Path, kind: SearchKind, report: &mut LoadReport) {
    let bytes = match read_pack_file(path) {
        Ok(b) => b,
        Err(e) => {
            report.warnings.push(format!("cannot read {}: {e}; skipped", path.display()));
            return;
        }
    };
    let crates = entry_crates(&bytes);
    if crates.is_empty() {
        if kind != SearchKind::Cargo {
            report.warnings.push(format!(
                "{} is not a lumen plugin pack (no {INFO_PREFIX}* entry point); skipped",
                path.display()
            ));
        }
        return;
    }
    for crate_name in crates {
        let base = PackReport {
            path: path.to_path_buf(),
            found_in: kind,
            crate_name: crate_name.clone(),
            name: None,
            version: None,
            fingerprint: None,
            status: PackStatus::AlreadyLoaded { by: String::new() },
        };
        // A crate linked into the host, or loaded from another file, is registered once.
        if let Some(pack) = reg.pack_of_crate(&crate_name).map(str::to_string) {
            let source = reg.packs().get(&pack).cloned().unwrap_or_default();
            let status = if source == path.display().to_string() {
                PackStatus::Loaded { items: items_of(reg, &pack) }
            } else {
                PackStatus::AlreadyLoaded { by: format!("{pack} ({source})") }
            };
            report.packs.push(PackReport { name: Some(pack), status, ..base });
            continue;
        }
        let (lib, opened_from, items) = match open(path, &crate_name, &bytes) {
            Ok(l) => l,
            Err(msg) => {
                let m = format!("cannot load {}: {msg}; skipped", path.display());
                if kind == SearchKind::Cargo {
                    report.notes.push(m);
                } else {
                    report.warnings.push(m);
                }
                continue;
            }
        };
        // A crate already opened from another file in this process is used from there.
        let base = PackReport { path: opened_from.clone(), ..base };
        let r = check_and_register(reg, opts, lib, &opened_from, &crate_name, &items, base);
        report.packs.push(r);
    }
}

/// Opens a library once per process, or returns the library that already provides
/// `crate_name` (and the file it came from): one crate, one copy. Also returns the
/// inventory items the library's constructors added.
///
/// On Linux the library is loaded from a private memory file holding `bytes`, the
/// very bytes that were scanned, so a file changed or replaced after the scan cannot
/// slip in other code. Elsewhere it is opened by path.
fn open(
    path: &Path,
    crate_name: &str,
    bytes: &[u8],
) -> std::result::Result<(&'static libloading::Library, PathBuf, PackItems), String> {
    let mut opened = opened();
    if let Some(o) = opened.iter_mut().find(|o| o.path == path) {
        if !o.crates.iter().any(|c| c == crate_name) {
            o.crates.push(crate_name.to_string());
        }
        return Ok((o.lib, o.path.clone(), o.items.clone()));
    }
    if let Some(o) = opened.iter().find(|o| o.crates.iter().any(|c| c == crate_name)) {
        return Ok((o.lib, o.path.clone(), o.items.clone()));
    }
    // Fix the linked set before the first library adds its items to the lists.
    let _ = PackItems::linked();
    let before: HashSet<usize> = PackItems::inventory().addresses().into_iter().collect();
    let image = memory_image(bytes);
    let load_path = match &image {
        Some((_, p)) => p.clone(),
        None => path.to_path_buf(),
    };
    // SAFETY: running the library's initialisers. Only files exporting a lumen entry
    // point get here; RTLD_NOW makes a pack built against another lumen-dylib fail
    // here, on a missing symbol, instead of at its first call.
    #[cfg(unix)]
    let lib = unsafe {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        Library::open(Some(&load_path), RTLD_NOW | RTLD_LOCAL).map(libloading::Library::from)
    };
    #[cfg(not(unix))]
    let lib = unsafe { libloading::Library::new(&load_path) };
    let lib = lib.map_err(|e| {
        let mut m = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            m = format!("{m}: {src}");
        }
        let m = m.replace(&load_path.display().to_string(), &path.display().to_string());
        let mut m = one_line(&m, false);
        if m.contains("undefined symbol") || m.contains("Symbol not found") {
            // Same fingerprint, different build of lumen-dylib (e.g. other features).
            m.push_str(" (the pack was built against another build of lumen-dylib; rebuild it together with the host)");
        }
        m
    })?;
    let items = PackItems::inventory().filter_addresses(|a| !before.contains(&a));
    // Never unloaded (see the module docs).
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    opened.push(Opened {
        path: path.to_path_buf(),
        crates: vec![crate_name.to_string()],
        lib,
        items: items.clone(),
        _image: image.map(|(f, _)| f),
    });
    Ok((lib, path.to_path_buf(), items))
}

/// `bytes` in an anonymous memory file, and the path to load it by.
#[cfg(target_os = "linux")]
fn memory_image(bytes: &[u8]) -> Option<(File, PathBuf)> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: a NUL-terminated name and valid flags; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"lumen-pack".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut f = unsafe { File::from_raw_fd(fd) };
    f.write_all(bytes).ok()?;
    let p = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    Some((f, p))
}

#[cfg(not(target_os = "linux"))]
fn memory_image(_bytes: &[u8]) -> Option<(File, PathBuf)> {
    None
}

/// Text from a pack on one line of at most [`MSG_MAX`] characters.
fn one_line(s: &str, truncated: bool) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut = truncated;
    if out.chars().count() > MSG_MAX {
        out = out.chars().take(MSG_MAX).collect();
        cut = true;
    }
    if cut {
        out.push_str("… (truncated)");
    }
    out
}

/// The message in a buffer the pack wrote: up to the first NUL, or the whole buffer
/// when the pack left out the NUL, never beyond it.
fn buffer_message(buf: &[u8]) -> String {
    match buf.iter().position(|&b| b == 0) {
        Some(n) => one_line(&String::from_utf8_lossy(&buf[..n]), false),
        None => one_line(&String::from_utf8_lossy(buf), true),
    }
}

/// A NUL-terminated string from the pack, read at most `max` bytes far.
///
/// # Safety
/// `p` is null or points to at least `max` readable bytes or to a NUL within them.
unsafe fn c_str_bounded(p: *const c_char, max: usize) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut n = 0;
    // SAFETY: guaranteed by the caller.
    while n < max && unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
    Some(if n == max { one_line(&String::from_utf8_lossy(bytes), true) } else { String::from_utf8_lossy(bytes).into_owned() })
}

/// A pack name the host accepts: what cargo allows in a package name.
fn valid_pack_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_and_register(
    reg: &mut Registry,
    opts: &LoadOptions,
    lib: &'static libloading::Library,
    path: &Path,
    crate_name: &str,
    items: &PackItems,
    mut r: PackReport,
) -> PackReport {
    let fail = |mut r: PackReport, msg: String| {
        r.status = PackStatus::Failed(Error::Plugin { path: path.to_path_buf(), message: msg });
        r
    };
    let refuse = |mut r: PackReport, msg: String| {
        r.status = PackStatus::Refused(Error::Plugin { path: path.to_path_buf(), message: msg });
        r
    };
    // SAFETY: the symbol has the `InfoFn` signature by the pack contract.
    let info: InfoFn = match unsafe { lib.get::<InfoFn>(format!("{INFO_PREFIX}{crate_name}").as_bytes()) } {
        Ok(s) => *s,
        Err(e) => return fail(r, format!("no info entry point: {e}")),
    };
    // Until the checks pass, the pack is known by its crate name only.
    // SAFETY: a C-unwind function returning a pointer to a static; a panic is caught.
    let info: *const PackInfo = match guard(crate_name, || Ok(unsafe { info() })) {
        Ok(p) => p,
        Err(e) => return fail(r, e.to_string()),
    };
    if info.is_null() {
        return fail(r, "the info entry point returned null".into());
    }
    // The ABI version is the only field every layout shares.
    // SAFETY: non-null pointer to the pack's static record.
    let abi = unsafe { (*info).abi };
    if abi != ABI_VERSION {
        r.status = PackStatus::Refused(Error::IncompatiblePlugin {
            path: path.to_path_buf(),
            expected: format!("abi {ABI_VERSION}: {}", opts.expected_fingerprint),
            found: format!("abi {abi}"),
        });
        return r;
    }
    // SAFETY: layout `ABI_VERSION`; strings are read a bounded length.
    let info = unsafe { &*info };
    r.name = unsafe { c_str_bounded(info.name, INFO_STR_MAX) };
    r.version = unsafe { c_str_bounded(info.version, INFO_STR_MAX) };
    r.fingerprint = unsafe { c_str_bounded(info.fingerprint, INFO_STR_MAX) };
    let found = r.fingerprint.clone().unwrap_or_default();
    if found != opts.expected_fingerprint {
        r.status = PackStatus::Refused(Error::IncompatiblePlugin {
            path: path.to_path_buf(),
            expected: opts.expected_fingerprint.clone(),
            found,
        });
        return r;
    }
    if !std::ptr::eq(info.anchor, &ANCHOR) {
        return refuse(
            r,
            "the pack and the host do not share one lumen-core: one of them carries a private copy \
             (a pack must link lumen-dylib through `lumen_dylib::declare_pack!()`, and the host must link \
             lumen-dylib too); tensors from the two copies would corrupt each other's gradients"
                .into(),
        );
    }
    // Only now is the pack's own name worth anything.
    let name = match r.name.clone() {
        Some(n) if valid_pack_name(&n) => n,
        Some(n) => return refuse(r, format!("invalid pack name '{n}' (letters, digits, '-' and '_', at most 64)")),
        None => return refuse(r, "the pack has no name".into()),
    };
    if let Some(source) = reg.packs().get(&name) {
        // Another crate (the same crate was handled before the library was opened).
        let m = format!("the pack name '{name}' is already taken by the pack from {source}; packs of the same name are not merged");
        return refuse(r, m);
    }
    // SAFETY: the symbol has the `RegisterFn` signature by the pack contract.
    let register: RegisterFn = match unsafe { lib.get::<RegisterFn>(format!("{REGISTER_PREFIX}{crate_name}").as_bytes()) } {
        Ok(s) => *s,
        Err(e) => return fail(r, format!("no register entry point: {e}")),
    };
    let (Ok(fp), Ok(source)) = (CString::new(opts.expected_fingerprint.clone()), CString::new(path.display().to_string()))
    else {
        return fail(r, "path or fingerprint contains a NUL byte".into());
    };
    let mut err = vec![0u8; ERR_LEN];
    let code = guard(&name, || {
        // SAFETY: arguments as the contract requires; a panic unwinds (C-unwind) into the guard.
        Ok(unsafe { register(fp.as_ptr(), err.as_mut_ptr() as *mut c_char, ERR_LEN) })
    });
    match code {
        Ok(0) => {}
        Ok(_) => return fail(r, buffer_message(&err)),
        Err(e) => return fail(r, e.to_string()),
    }
    // The library's own items that carry this pack's name; nothing else.
    match reg.register_items(&name, crate_name, &source.to_string_lossy(), &items.of_pack(&name)) {
        Ok(_) => {
            r.status = PackStatus::Loaded { items: items_of(reg, &name) };
            r
        }
        Err(e) => {
            r.status = PackStatus::Failed(e);
            r
        }
    }
}

/// Every item of `pack` in `reg`, of every kind, as `kind name`.
pub fn items_of(reg: &Registry, pack: &str) -> Vec<String> {
    reg.items_of(pack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_are_found_between_nuls_only() {
        let mut b = b"\x7fELF....\0lumen_plugin_info_my_pack\0lumen_plugin_register_my_pack\0".to_vec();
        b.extend(b"xxlumen_plugin_info_not_this\0"); // not preceded by NUL: a string literal
        b.extend(b"\0_lumen_plugin_info_macos_style\0");
        b.extend(b"\0lumen_plugin_info_\0"); // empty name
        b.extend(b"\0lumen_plugin_info_truncated");
        assert_eq!(entry_crates(&b), vec!["my_pack".to_string(), "macos_style".to_string()]);
        assert!(entry_crates(b"plain text, no pack here").is_empty());
    }

    #[test]
    fn pack_file_names_include_versioned_ones() {
        let ext = std::env::consts::DLL_EXTENSION;
        assert!(is_pack_file_name(&format!("libx.{ext}")));
        if cfg!(unix) {
            for ok in ["libx.so.1", "libx.so.1.2.3"].map(|n| n.replace("so", ext)) {
                assert!(is_pack_file_name(&ok), "{ok}");
            }
            for no in ["libx.so.", "libx.so.1a", "libx.so.1..2", ".so.1", "libx.sox"].map(|n| n.replace("so", ext)) {
                assert!(!is_pack_file_name(&no), "{no}");
            }
        }
        assert!(!is_pack_file_name("notes.txt") && !is_pack_file_name(&format!(".{ext}")));
    }

    #[test]
    fn pack_messages_are_bounded_and_on_one_line() {
        assert_eq!(buffer_message(b"bad\nthing\0garbage after the NUL"), "bad thing");
        let full = vec![b'x'; ERR_LEN];
        assert_eq!(buffer_message(&full), format!("{}… (truncated)", "x".repeat(MSG_MAX)));
        assert_eq!(buffer_message(b"no nul"), "no nul… (truncated)");
        let s = [b'a', b'b', 0, b'c'];
        // SAFETY: 4 readable bytes.
        assert_eq!(unsafe { c_str_bounded(s.as_ptr() as *const c_char, 4) }.as_deref(), Some("ab"));
        assert_eq!(unsafe { c_str_bounded(s.as_ptr() as *const c_char, 2) }.as_deref(), Some("ab… (truncated)"));
        assert_eq!(unsafe { c_str_bounded(std::ptr::null(), 2) }, None);
    }

    #[test]
    fn missing_and_non_library_entries_are_warnings() {
        let dir = std::env::temp_dir().join(format!("lumen-plugin-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join(format!("junk.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&junk, "not a library").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored: not a library name").unwrap();
        let missing = dir.join("does-not-exist");
        let mut reg = Registry::new();
        let rep = load_into(&mut reg, &LoadOptions::only(&[missing.clone(), dir.clone()]));
        assert!(rep.packs.is_empty());
        assert_eq!(rep.warnings.len(), 2, "{:?}", rep.warnings);
        assert!(rep.warnings[0].contains("does-not-exist") && rep.warnings[0].contains("does not exist"));
        assert!(rep.warnings[1].contains("junk") && rep.warnings[1].contains("not a lumen plugin pack"));
        // a junk file that does carry the entry-point name fails to load, with a warning
        std::fs::write(&junk, b"\0lumen_plugin_info_fake\0 but no ELF header").unwrap();
        let rep = load_into(&mut reg, &LoadOptions::only(&[junk.clone()]));
        assert!(rep.packs.is_empty());
        assert!(rep.warnings[0].starts_with("cannot load") && rep.warnings[0].contains("junk"), "{:?}", rep.warnings);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
