//! Finding and loading packs: discovery order, checks, registration, reports.

use super::{mark_dynamic, InfoFn, PackInfo, RegisterFn, ABI_VERSION, ANCHOR, FINGERPRINT, INFO_PREFIX, REGISTER_PREFIX};
use crate::registry::guard;
use crate::{Error, Registry};
use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The discovery order: `LUMEN_PLUGIN_PATH`, then `plugins/` next to the binary, then
/// the cargo target directory when run through cargo (`cargo run`, `cargo test`).
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
    crate_name: String,
    lib: &'static libloading::Library,
}

static OPENED: Mutex<Vec<Opened>> = Mutex::new(Vec::new());

const ERR_LEN: usize = 4096;

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

fn is_library(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
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

fn load_file(reg: &mut Registry, opts: &LoadOptions, path: &Path, kind: SearchKind, report: &mut LoadReport) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            report.warnings.push(format!("cannot read {}: {e}; skipped", path.display()));
            return;
        }
    };
    let crates = entry_crates(&bytes);
    drop(bytes);
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
        // A pack linked into the host, or loaded from another file, is registered once.
        if let Some((pack, source)) =
            reg.packs().iter().find(|(p, _)| p.replace('-', "_") == crate_name).map(|(p, s)| (p.clone(), s.clone()))
        {
            let from_here = source == path.display().to_string();
            if !from_here {
                report.packs.push(PackReport {
                    name: Some(pack.clone()),
                    status: PackStatus::AlreadyLoaded { by: format!("{pack} ({source})") },
                    ..base
                });
                continue;
            }
        }
        let (lib, opened_from) = match open(path, &crate_name) {
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
        let r = check_and_register(reg, opts, lib, &opened_from, &crate_name, base);
        report.packs.push(r);
    }
}

/// Opens `path` once per process, or returns the library that already provides
/// `crate_name` (and the file it came from): one crate, one copy.
fn open(path: &Path, crate_name: &str) -> std::result::Result<(&'static libloading::Library, PathBuf), String> {
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(o) = opened.iter().find(|o| o.crate_name == crate_name || o.path == path) {
        return Ok((o.lib, o.path.clone()));
    }
    mark_dynamic(crate_name);
    // SAFETY: running the library's initialisers. Only files exporting a lumen entry
    // point get here; RTLD_NOW makes a pack built against another lumen-dylib fail
    // here, on a missing symbol, instead of at its first call.
    #[cfg(unix)]
    let lib = unsafe {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        Library::open(Some(path), RTLD_NOW | RTLD_LOCAL).map(libloading::Library::from)
    };
    #[cfg(not(unix))]
    let lib = unsafe { libloading::Library::new(path) };
    let lib = lib.map_err(|e| {
        let mut m = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            m = format!("{m}: {src}");
        }
        if m.contains("undefined symbol") || m.contains("Symbol not found") {
            // Same fingerprint, different build of lumen-dylib (e.g. other features).
            m.push_str(" (the pack was built against another build of lumen-dylib; rebuild it together with the host)");
        }
        m
    })?;
    // Never unloaded (see the module docs).
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    opened.push(Opened { path: path.to_path_buf(), crate_name: crate_name.to_string(), lib });
    Ok((lib, path.to_path_buf()))
}

fn c_str(p: *const c_char) -> Option<String> {
    // SAFETY: the pack promises NUL-terminated static strings.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn check_and_register(
    reg: &mut Registry,
    opts: &LoadOptions,
    lib: &'static libloading::Library,
    path: &Path,
    crate_name: &str,
    mut r: PackReport,
) -> PackReport {
    let fail = |mut r: PackReport, msg: String| {
        r.status = PackStatus::Failed(Error::Plugin { path: path.to_path_buf(), message: msg });
        r
    };
    // SAFETY: the symbol has the `InfoFn` signature by the pack contract.
    let info: InfoFn = match unsafe { lib.get::<InfoFn>(format!("{INFO_PREFIX}{crate_name}").as_bytes()) } {
        Ok(s) => *s,
        Err(e) => return fail(r, format!("no info entry point: {e}")),
    };
    // SAFETY: a C function returning a pointer to a static.
    let info: *const PackInfo = unsafe { info() };
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
    // SAFETY: layout `ABI_VERSION`.
    let info = unsafe { &*info };
    r.name = c_str(info.name);
    r.version = c_str(info.version);
    r.fingerprint = c_str(info.fingerprint);
    let name = r.name.clone().unwrap_or_else(|| crate_name.to_string());
    // Its constructors have run: its items are in the inventory, but not as static.
    mark_dynamic(&name);
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
        r.status = PackStatus::Refused(Error::Plugin {
            path: path.to_path_buf(),
            message: "the pack and the host do not share one lumen-core: one of them carries a private copy \
                      (a pack must link lumen-dylib through `lumen_dylib::declare_pack!()`, and the host must link \
                      lumen-dylib too); tensors from the two copies would corrupt each other's gradients"
                .into(),
        });
        return r;
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
    let mut err = vec![0 as c_char; ERR_LEN];
    let code = guard(&name, || {
        // SAFETY: arguments as the contract requires; `reg` outlives the call.
        Ok(unsafe { register(fp.as_ptr(), reg as *mut Registry as *mut c_void, source.as_ptr(), err.as_mut_ptr(), ERR_LEN) })
    });
    match code {
        Ok(0) => {
            let items = items_of(reg, &name);
            r.status = PackStatus::Loaded { items };
            r
        }
        Ok(_) => {
            let msg = c_str(err.as_ptr()).unwrap_or_default();
            fail(r, msg)
        }
        Err(e) => fail(r, e.to_string()),
    }
}

/// Every item of `pack` in `reg`, as `kind name`.
pub fn items_of(reg: &Registry, pack: &str) -> Vec<String> {
    let mut v = vec![];
    v.extend(reg.methods().filter(|(_, o)| o.pack == pack).map(|(e, _)| format!("method {}", e.name)));
    v.extend(reg.models().filter(|(_, o)| o.pack == pack).map(|(e, _)| format!("model {}", e.name)));
    v.extend(reg.generators().filter(|(_, o)| o.pack == pack).map(|(e, _)| format!("generator {}", e.name)));
    v.extend(reg.samplers().filter(|(_, o)| o.pack == pack).map(|(e, _)| format!("sampler {}", e.name)));
    v
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
