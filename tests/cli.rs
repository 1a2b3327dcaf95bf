//! The `lumen` binary from the outside.

use crate::util::lumen;

#[test]
fn list_shows_methods_models_and_parameters() {
    let out = lumen(&["list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("saliency") && s.contains("batch_size") && s.contains("mnist-cnn"), "{s}");
    let metrics = s.split("\nmetrics:\n").nth(1).unwrap_or_else(|| panic!("no metrics section: {s}"));
    assert!(metrics.contains("deletion") && metrics.contains("sanity_randomization"), "{metrics}");
}

#[test]
fn unknown_device_is_one_line_error() {
    let out = lumen(&["--device", "cuda:0", "list"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.starts_with("error: ") && e.contains("cuda"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}
