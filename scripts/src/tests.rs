//! Engine-level tests: positions in error messages, try/catch, limits, the output
//! sandbox, data access and explanation fields. Composition against Rust is in
//! tests/script.rs.

use crate::*;
use lumen_core::candle::Device;
use lumen_core::Registry;
use std::sync::Arc;

fn registry() -> Arc<Registry> {
    lumen_std_gradients::link();
    let _ = lumen_models::models_dirs;
    Arc::new(Registry::from_inventory().expect("registry"))
}

fn opts(name: &str) -> ScriptOptions {
    let dir = std::env::temp_dir().join(format!("lumen-script-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    ScriptOptions { out_dir: dir, ..Default::default() }
}

fn run(name: &str, src: &str) -> lumen_core::Result<rhai::Dynamic> {
    eval_source(name, src, registry(), &opts(name))
}

fn err(name: &str, src: &str) -> String {
    match run(name, src) {
        Ok(v) => panic!("{name}: expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_line_column_and_problem() {
    // A misspelt parameter: the registry's message, at the call's position.
    let e = err("param", "let m = method(\"saliency\", #{batch_size: 2});\nlet n = method(\"saliency\", #{bach_size: 2});");
    assert!(e.contains("param:2:9:") && e.contains("unknown parameter 'bach_size'") && e.contains("batch_size"), "{e}");
    // An ill-typed parameter value.
    let e = err("type", "\n\nmethod(\"saliency\", #{batch_size: \"big\"})");
    assert!(e.contains("type:3:1:") && e.contains("'batch_size'") && e.contains("expected an integer"), "{e}");
    // A Rhai-level type error: no `explain` takes a number as the input.
    let e = err("sig", "let net = model(\"mnist-cnn\");\nexplain(net, 3, method(\"saliency\"))");
    assert!(e.contains("sig:2:1:") && e.contains("explain") && e.contains("i64"), "{e}");
    // An unknown method lists the known ones.
    let e = err("unknown", "let x = 1;\nlet m = method(\"salincy\");");
    assert!(e.contains("unknown:2:9:") && e.contains("unknown method 'salincy'") && e.contains("saliency"), "{e}");
    // A typo in a variable name is caught before anything runs.
    let e = err("var", "let net = 1;\nprint(nte);");
    assert!(e.contains("var:2:7:") && e.contains("nte"), "{e}");
}

#[test]
fn errors_can_be_caught() {
    let v = run("catch", "let r = \"\";\ntry { method(\"nope\"); } catch (e) { r = `caught: ${e}`; }\nr").unwrap();
    let s = v.into_string().unwrap();
    assert!(s.starts_with("caught: ") && s.contains("unknown method 'nope'"), "{s}");
}

#[test]
fn limits_stop_runaway_scripts() {
    let e = err("loop", "let i = 0;\nloop { i += 1; }");
    assert!(e.contains("Too many operations"), "{e}");
    let e = err("rec", "fn f(x) { f(x + 1) }\nf(0)");
    assert!(e.to_lowercase().contains("stack overflow") || e.contains("call"), "{e}");
}

#[test]
fn writes_stay_inside_the_output_directory() {
    for bad in ["../escape.txt", "/tmp/escape.txt", "a/../../escape.txt"] {
        let e = err("sandbox", &format!("\nwrite_text(\"{bad}\", \"x\")"));
        assert!(e.contains("sandbox:2:1:") && e.contains("refused"), "{bad}: {e}");
    }
    let o = opts("inside");
    let v = eval_source("inside", "write_csv(\"a/b.csv\", [#{x: 1, y: \"p,q\"}])", registry(), &o).unwrap();
    let p = std::path::PathBuf::from(v.into_string().unwrap());
    assert!(p.starts_with(o.out_dir.canonicalize().unwrap()));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "x,y\n1,\"p,q\"\n");
}

#[test]
fn data_sets_index_and_iterate() {
    let v = run("data", "let d = mnist(\"test\").first_of_each_class();\nlet s = 0;\nfor x in d { s += x.label; }\n[d.len(), s, d[3].label, d[-1].label, mnist(\"test\")[100].label]").unwrap();
    let a: Vec<i64> = v.into_array().unwrap().into_iter().map(|d| d.as_int().unwrap()).collect();
    assert_eq!(a, vec![10, 45, 3, 9, 1]);
    let e = err("range", "mnist(\"test\")[5000]");
    assert!(e.contains("range:1:") && e.contains("out of range"), "{e}");
}

#[test]
fn top_mask_marks_the_largest_entries_per_example() {
    let t = lumen_core::candle::Tensor::new(&[[3f32, 1., 2., 0.], [0., 0., 5., 4.]], &Device::Cpu).unwrap();
    let m = top_mask(&t, 0.5).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(m, vec![vec![1., 0., 1., 0.], vec![0., 0., 1., 1.]]);
    // Ties keep the earlier position.
    let z = lumen_core::candle::Tensor::zeros((1, 4), lumen_core::candle::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(top_mask(&z, 0.25).unwrap().to_vec2::<f32>().unwrap(), vec![vec![1., 0., 0., 0.]]);
}

#[test]
fn explanation_fields_are_readable() {
    let src = "let net = model(\"mnist-cnn\");\nlet s = mnist(\"test\")[0];\n\
               let e = explain(net, s, method(\"saliency\"), #{target: contrast(0, 6)});\n\
               [e.attribution.shape, e.method, e.target, e.tensors, e.params.batch_size, net.predict(s.image)]";
    let v = run("fields", src).unwrap().into_array().unwrap();
    assert_eq!(v[0].to_string(), "[1, 28, 28]");
    assert_eq!(v[1].to_string(), "saliency");
    assert_eq!(v[2].to_string(), "0-6");
    assert_eq!(v[3].to_string(), "[\"attribution\"]");
    assert_eq!(v[4].to_string(), "64");
    assert!(v[5].as_int().is_ok());
}

/// `eval_data` is lumen-eval's data set (masks included), `stats` its report summary.
#[test]
fn eval_data_and_stats_come_from_lumen_eval() {
    let v = run("evaldata", "let d = eval_data(\"biased\", 3, 1); [d.masks.sum(), d.targets, d.index, d.inputs.shape]").unwrap();
    let a = v.into_array().unwrap();
    let d = lumen_eval::data::load("biased", 3, 1, &Device::Cpu).unwrap();
    let mask_sum: f32 = d.masks.unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert_eq!(a[0].as_float().unwrap() as f32, mask_sum);
    let targets: Vec<i64> = a[1].clone().into_typed_array().unwrap();
    assert_eq!(targets, vec![8, 8, 8]);
    let index: Vec<i64> = a[2].clone().into_typed_array().unwrap();
    assert_eq!(index, d.index.iter().map(|i| *i as i64).collect::<Vec<_>>());
    let v = run("stats", "let s = stats([1.0, 3]); [s.mean, s.n]").unwrap().into_array().unwrap();
    assert_eq!((v[0].as_float().unwrap(), v[1].as_int().unwrap()), (2.0, 2));
    assert!(err("evaldata-bad", "eval_data(\"nope\", 1, 0)").contains("unknown --data 'nope'"));
}
