//! Helpers shared by the integration-test modules.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `lumen` binary built by cargo for this profile.
#[allow(dead_code)]
pub fn lumen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lumen"))
}

/// Runs `lumen` with arguments and returns its output.
#[allow(dead_code)]
pub fn lumen(args: &[&str]) -> Output {
    Command::new(lumen_bin()).args(args).output().expect("run lumen")
}

/// A fresh temporary directory for one test.
#[allow(dead_code)]
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lumen-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

/// The repository root.
#[allow(dead_code)]
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("root").to_path_buf()
}

/// The network with every parameter in f64.
#[allow(dead_code)]
pub fn in_f64(net: &lumen_core::Network) -> lumen_core::Network {
    let mut net = net.clone();
    let cast = |t: &mut Option<lumen_core::candle::Tensor>| {
        if let Some(v) = t {
            *v = v.to_dtype(lumen_core::candle::DType::F64).unwrap();
        }
    };
    for node in net.nodes_mut() {
        for t in [&mut node.weight, &mut node.bias, &mut node.running_mean, &mut node.running_var] {
            cast(t);
        }
    }
    net
}
