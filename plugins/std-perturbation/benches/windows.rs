//! Occlusion and PDA with incremental forward passes against the plain path (the
//! same model behind a wrapper that hides its network), plus DeepLIFT, on
//! `mnist-cnn`: `cargo bench --workspace --bench windows [-- --quick]`. Prints
//! median times and the largest relative difference; asserts nothing about time.

use lumen_core::candle::{Device, Tensor};
use lumen_core::data::{Mnist, Split};
use lumen_core::model::{Forward, ForwardOptions, ModelInfo};
use lumen_core::{Attributor, Classifier, Params, Registry, Result, Target};
use lumen_std_perturbation::{ConditionalGaussian, GaussianConfig, Occlusion, OcclusionConfig, Pda, PdaConfig};
use std::sync::Arc;
use std::time::Instant;

/// The model without its network: methods take the plain path.
struct Opaque(Arc<dyn Classifier>);

impl Classifier for Opaque {
    fn info(&self) -> &ModelInfo {
        self.0.info()
    }
    fn device(&self) -> &Device {
        self.0.device()
    }
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.0.forward(xs)
    }
    fn forward_with(&self, xs: &Tensor, opts: &ForwardOptions) -> Result<Forward> {
        self.0.forward_with(xs, opts)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(reps: usize, mut f: impl FnMut() -> Result<Tensor>) -> Result<(f64, Tensor)> {
    let mut t = vec![];
    let mut out = f()?; // warm-up
    for _ in 0..reps {
        let s = Instant::now();
        out = f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok((median(t), out))
}

/// max |a − b| / max |b|.
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    d / b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(f32::MIN_POSITIVE)
}

fn main() -> Result<()> {
    lumen_std_relevance::link();
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 1 } else { 3 };
    let dev = Device::Cpu;
    let model = lumen_models::load_shipped("mnist-cnn", &dev)?;
    let plain: Arc<dyn Classifier> = Arc::new(Opaque(model.clone()));
    let data = Mnist::load()?;
    let idx: Vec<usize> = (0..64).map(|i| i * 1000 / 64).collect();
    let (x, _) = data.batch(Split::Test, &idx, &dev)?;
    let target = Target::Predicted;
    println!("mnist-cnn, {} threads, median of {reps}", lumen_core::candle::utils::get_num_threads());

    let occ = Occlusion::new(OcclusionConfig::default());
    let run = |m: &dyn Classifier| move || Ok(occ.attribute(m, &x, &target)?.attribution);
    let (t_inc, a_inc) = time(reps, run(model.as_ref()))?;
    let (t_plain, a_plain) = time(reps, run(plain.as_ref()))?;
    println!(
        "occlusion 4×4 stride 1, batch 64:  plain {:>9.1} ms  incremental {:>9.1} ms  (max rel diff {:.1e})",
        t_plain * 1e3,
        t_inc * 1e3,
        rel(&a_inc, &a_plain)
    );

    let (train, _) = data.all(Split::Train, &dev)?;
    let g = Arc::new(ConditionalGaussian::fit(GaussianConfig::default(), &train)?);
    let x1 = x.narrow(0, 0, 1)?;
    let pda = Pda::new(PdaConfig { window: 4, samples: 10, ..Default::default() }, g);
    let run = |m: &dyn Classifier| move || Ok(pda.attribute(m, &x1, &target)?.attribution);
    let (t_inc, a_inc) = time(reps, run(model.as_ref()))?;
    let (t_plain, a_plain) = time(reps, run(plain.as_ref()))?;
    println!(
        "pda k=4 S=10 stride 1, 1 image:     plain {:>9.1} ms  incremental {:>9.1} ms  (max rel diff {:.1e})",
        t_plain * 1e3,
        t_inc * 1e3,
        rel(&a_inc, &a_plain)
    );

    let registry = Registry::from_inventory()?;
    for rule in ["rescale", "revealcancel"] {
        let m = registry.build_method("deeplift", &Params::new().with("rule", rule))?;
        let (t, _) = time(reps * 3, || Ok(m.attribute(model.as_ref(), &x, &target)?.attribution))?;
        println!("deeplift ({rule}), batch 64: {:>9.1} ms", t * 1e3);
    }
    Ok(())
}
