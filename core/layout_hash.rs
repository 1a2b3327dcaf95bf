// Shared by build.rs and a unit test in src/plugin (through `include!`): the `layout`
// part of the plugin fingerprint.
//
// Rust has no stable ABI, so a pack is compatible only with the very type definitions,
// trait method orders and function signatures of the lumen-core it was compiled
// against. Rather than pick out "the public types" by hand (and miss one), this hashes
// lumen-core's whole source in a canonical form: every `.rs` file under `src/`, by
// relative path, with each line trimmed and blank and comment-only lines dropped, so
// that reindenting or editing comments does not change it while any change to code does.

/// FNV-1a, 64 bit: stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// The canonical form of one source file.
fn canonical_source(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with("//") {
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The layout hash of the sources: `(relative path, text)` pairs, in any order.
fn layout_hash(files: &[(String, String)]) -> String {
    let mut files: Vec<&(String, String)> = files.iter().collect();
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, text) in files {
        fnv1a(&mut h, path.as_bytes());
        fnv1a(&mut h, b"\0");
        fnv1a(&mut h, canonical_source(text).as_bytes());
        fnv1a(&mut h, b"\0");
    }
    format!("{h:016x}")
}

/// Every `.rs` file under `dir`, with its path relative to `dir` ('/'-separated).
fn source_files(dir: &std::path::Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|e| e.to_str()) == Some("rs") {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&p)?));
            }
        }
    }
    Ok(out)
}
