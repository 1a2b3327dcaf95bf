//! Median timings on `mnist-cnn` at batch 64: forward, saliency, integrated gradients
//! (50 steps), SmoothGrad (n = 50) and guided backprop. Run with
//! `cargo bench -p lumen-std-gradients`; it prints figures and asserts nothing.

use lumen_core::candle::Device;
use lumen_core::data::{Mnist, Split};
use lumen_core::{Params, Registry, Target};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut() -> lumen_core::Result<()>) -> lumen_core::Result<f64> {
    f()?; // warm-up
    let mut t = vec![];
    for _ in 0..reps {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok(median(t))
}

fn main() -> lumen_core::Result<()> {
    lumen_std_gradients::link();
    lumen_std_propagation::link();
    let dev = Device::Cpu;
    let model = lumen_models::load_shipped("mnist-cnn", &dev)?;
    let data = Mnist::load()?;
    // The test split is ordered by class: spread the 64 over all ten.
    let idx: Vec<usize> = (0..64).map(|i| i * 1000 / 64).collect();
    let (x, _) = data.batch(Split::Test, &idx, &dev)?;
    let registry = Registry::from_inventory()?;
    let target = Target::Predicted;
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = |n: usize| if quick { 1 } else { n };

    println!("mnist-cnn, batch 64, {} threads", lumen_core::candle::utils::get_num_threads());
    let t = time(reps(20), || model.forward(&x).map(|_| ()))?;
    println!("{:<34} {:>10.1} ms", "forward", t * 1e3);
    let cases: [(&str, &str, Params, usize); 4] = [
        ("saliency", "saliency", Params::new(), 10),
        ("integrated_gradients (50 steps)", "integrated_gradients", Params::new().with("steps", 50usize), 3),
        ("smoothgrad (n = 50)", "smoothgrad", Params::new().with("n", 50usize), 3),
        ("guided_backprop", "guided_backprop", Params::new(), 10),
    ];
    for (label, name, params, n) in cases {
        let m = registry.build_method(name, &params)?;
        let t = time(reps(n), || m.attribute(model.as_ref(), &x, &target).map(|_| ()))?;
        println!("{label:<34} {:>10.1} ms", t * 1e3);
    }
    Ok(())
}
