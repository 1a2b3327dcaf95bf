#!/usr/bin/env python3
"""lumen next to Captum on the same model, digits, threads and parameters.

Loads a lumen model card and its safetensors weights into the same PyTorch
architecture, checks that PyTorch and lumen agree (probabilities and maps of
`lumen explain` on a few digits), then times every workload in Captum and with
`lumen bench --json`, each workload in a process of its own on both sides, and
prints one markdown table with the lumen / Captum ratio per row.

    python bench/captum/harness.py --lumen target/release/lumen

See bench/captum/README.md. Not run in CI.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "py"))
import lumen_torch  # noqa: E402
from lumen_torch import load_card, mnist_test  # noqa: E402

# lumen's defaults that the Captum calls must match (see `lumen list`).
IG_STEPS = 50
IG_ROWS = 64  # integrated_gradients.batch_size: path points per pass
SG_N = 50
SG_SIGMA = 0.15  # smoothgrad.sigma: σ = 0.15 · (max − min) of each example
SG_ROWS = 64  # smoothgrad.batch_size: noisy copies per call of the inner method
OCC_WINDOW = 4
OCC_STRIDE = 1
OCC_ROWS = 256  # occlusion.batch_size: occluded images per forward pass
LRP_EPS = 1e-6  # lrp.epsilon
# Perturbation methods (opt-in workloads): grid7 mask, 16 features of 7×7 pixels.
GRID_CELL = 7
SVS_SAMPLES = 25  # shapley_sampling.samples: permutations per example
PERTURB_ROWS = 256  # perturbed images per forward pass, as occlusion (assumed lumen default)

# Workload -> (lumen method, what is matched). Order of the table.
WORKLOADS = [
    ("forward", "forward", "no gradient"),
    ("saliency", "saliency", "signed gradient"),
    ("input_x_gradient", "input_x_gradient", ""),
    ("ig50", "integrated_gradients", f"{IG_STEPS} Gauss–Legendre steps, zero baseline, {IG_ROWS} rows/pass, with δ"),
    ("smoothgrad50", "smoothgrad", f"n = {SG_N}, σ = {SG_SIGMA} of the range, {SG_ROWS} rows/pass"),
    ("deeplift", "deeplift", "Rescale, zero reference, whole batch in one pass"),
    ("guided_backprop", "guided_backprop", ""),
    ("deconvnet", "deconvnet", ""),
    ("occlusion", "occlusion", f"{OCC_WINDOW}×{OCC_WINDOW}, stride {OCC_STRIDE}, baseline 0, ~{OCC_ROWS} rows/pass"),
    ("lrp_eps", "lrp", f"ε = {LRP_EPS:g} on every layer, whole batch in one pass"),
]
# Workloads run only when --workloads names them (the default table leaves them out).
OPT_IN_WORKLOADS = [
    ("feature_ablation", "feature_ablation", f"grid {GRID_CELL}×{GRID_CELL} (16 features), baseline 0, "
                                             f"~{PERTURB_ROWS} rows/pass"),
    ("shapley_sampling", "shapley_sampling", f"grid {GRID_CELL}×{GRID_CELL}, {SVS_SAMPLES} permutations, "
                                             f"not antithetic, baseline 0, ~{PERTURB_ROWS} rows/pass"),
    # The peer for CAMs is pytorch-grad-cam (needs `pip install grad-cam`), not Captum.
    ("grad_cam", "grad_cam", "pytorch-grad-cam GradCAM at pool2 (its output: scaled, resized)"),
    ("score_cam", "score_cam", "pytorch-grad-cam ScoreCAM at pool2, 64 masked copies per pass"),
]
ALL_WORKLOADS = WORKLOADS + OPT_IN_WORKLOADS
LABELS = {
    "forward": "forward",
    "saliency": "saliency",
    "input_x_gradient": "input × gradient",
    "ig50": "IG, 50 steps",
    "smoothgrad50": "SmoothGrad, n = 50",
    "deeplift": "DeepLIFT (Rescale)",
    "guided_backprop": "Guided Backprop",
    "deconvnet": "Deconvnet",
    "occlusion": "occlusion 4×4, stride 1",
    "lrp_eps": "LRP-ε",
    "feature_ablation": "feature ablation, grid 7",
    "shapley_sampling": f"Shapley sampling, n = {SVS_SAMPLES}",
    "grad_cam": "Grad-CAM (pytorch-grad-cam)",
    "score_cam": "Score-CAM (pytorch-grad-cam)",
}


def lumen_params(workload, batch):
    """`lumen bench --param` pairs that make lumen do what the Captum call does."""
    method = dict((w, m) for w, m, _ in ALL_WORKLOADS)[workload]
    # Captum's DeepLift and LRP take the whole batch in one pass; lumen's default
    # chunks of 32 would be a different workload.
    if workload in ("deeplift", "lrp_eps"):
        return [f"{method}.batch_size={batch}"]
    if workload == "feature_ablation":
        return [f"{method}.mask=grid", f"{method}.cell={GRID_CELL}"]
    if workload == "shapley_sampling":
        return [f"{method}.mask=grid", f"{method}.cell={GRID_CELL}", f"{method}.samples={SVS_SAMPLES}",
                f"{method}.antithetic=false"]
    return []


# ---------------------------------------------------------------- data and model


def input_indices(batch, n):
    """lumen_eval::bench::input_indices: spread over the split, then repeated."""
    if batch <= n:
        return [i * n // batch for i in range(batch)]
    return [i % n for i in range(batch)]


def bench_inputs(batch):
    import torch

    test = mnist_test()
    idx = input_indices(batch, len(test))
    x = torch.tensor([test[i][0] for i in idx], dtype=torch.float32)
    return x.reshape(batch, 1, 28, 28)


def build_model(card_path):
    return lumen_torch.build_model(card_path, "harness")


# ---------------------------------------------------------------- memory


def status_mb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.split(":")[0] == field:
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- Captum workloads


def grid_feature_mask(cell=GRID_CELL, h=28, w=28):
    """lumen's `mask=grid cell=C`: id of pixel (y, x) = (y // C) · ⌈w / C⌉ + x // C, the
    same for every channel, as a [1, 1, h, w] Captum feature_mask (broadcast over the batch)."""
    import torch

    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((y // cell) * -(-w // cell) + x // cell).reshape(1, 1, h, w)


def captum_call(workload, model, x, target):
    """A zero-argument call that runs one workload in Captum."""
    import torch
    from captum.attr import (
        LRP, Deconvolution, DeepLift, FeatureAblation, GuidedBackprop, InputXGradient, IntegratedGradients,
        NoiseTunnel, Occlusion, Saliency, ShapleyValueSampling,
    )
    from captum.attr._utils.lrp_rules import EpsilonRule

    b = x.shape[0]
    if workload == "forward":
        def call():
            with torch.no_grad():
                return model(x)
        return call
    if workload == "saliency":
        m = Saliency(model)
        return lambda: m.attribute(x, target=target, abs=False)
    if workload == "input_x_gradient":
        m = InputXGradient(model)
        return lambda: m.attribute(x, target=target)
    if workload == "ig50":
        m = IntegratedGradients(model)
        return lambda: m.attribute(x, baselines=0.0, target=target, n_steps=IG_STEPS, method="gausslegendre",
                                   internal_batch_size=IG_ROWS, return_convergence_delta=True)
    if workload == "smoothgrad50":
        m = NoiseTunnel(Saliency(model))
        sd = smoothgrad_stdev(x)
        per_pass = max(1, min(SG_N, SG_ROWS // b))
        return lambda: m.attribute(x, nt_type="smoothgrad", nt_samples=SG_N, nt_samples_batch_size=per_pass,
                                   stdevs=sd, target=target, abs=False)
    if workload == "deeplift":
        m = DeepLift(model)
        return lambda: m.attribute(x, baselines=torch.zeros_like(x), target=target)
    if workload == "guided_backprop":
        m = GuidedBackprop(model)
        return lambda: m.attribute(x, target=target)
    if workload == "deconvnet":
        m = Deconvolution(model)
        return lambda: m.attribute(x, target=target)
    if workload == "occlusion":
        m = Occlusion(model)
        per_eval = max(1, OCC_ROWS // b)
        return lambda: m.attribute(x, sliding_window_shapes=(1, OCC_WINDOW, OCC_WINDOW),
                                   strides=(1, OCC_STRIDE, OCC_STRIDE), baselines=0.0, target=target,
                                   perturbations_per_eval=per_eval)
    if workload == "lrp_eps":
        for layer in model.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MaxPool2d)):
                layer.rule = EpsilonRule(epsilon=LRP_EPS)
        m = LRP(model)
        return lambda: m.attribute(x, target=target)
    if workload == "feature_ablation":
        m = FeatureAblation(model)
        mask = grid_feature_mask()
        per_eval = max(1, PERTURB_ROWS // b)
        return lambda: m.attribute(x, baselines=0.0, target=target, feature_mask=mask,
                                   perturbations_per_eval=per_eval)
    if workload == "shapley_sampling":
        m = ShapleyValueSampling(model)
        mask = grid_feature_mask()
        per_eval = max(1, PERTURB_ROWS // b)
        return lambda: m.attribute(x, baselines=0.0, target=target, feature_mask=mask, n_samples=SVS_SAMPLES,
                                   perturbations_per_eval=per_eval)
    if workload in ("grad_cam", "score_cam"):
        from pytorch_grad_cam import GradCAM, ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        cam = (GradCAM if workload == "grad_cam" else ScoreCAM)(model=model, target_layers=[model.pool2])
        cam.batch_size = 64  # Score-CAM's masked copies per forward pass (lumen's batch_size)
        targets = [ClassifierOutputTarget(int(t)) for t in target]
        # The parameters are frozen (as for Captum), so the backward needs the input to
        # require a gradient: its cheapest way to reach the layer (lumen's backward
        # stops at the layer).
        xg = x.clone().requires_grad_(workload == "grad_cam")
        return lambda: cam(input_tensor=xg, targets=targets)
    raise SystemExit(f"harness: unknown workload '{workload}'")


def smoothgrad_stdev(x):
    """lumen's σ is per example (sigma · (max − min)); Captum takes one σ per input
    tensor. The benchmark digits all span [0, 1], so the two agree; say so if not."""
    flat = x.flatten(1)
    sd = (SG_SIGMA * (flat.max(1).values - flat.min(1).values)).tolist()
    if max(sd) - min(sd) > 1e-7:
        print(f"harness: note: per-example σ differ ({min(sd):.4f}..{max(sd):.4f}); Captum gets their mean",
              file=sys.stderr)
    return sum(sd) / len(sd)


def worker(args):
    """One Captum workload in this process: warm-up, reps, one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.card)
    for p in model.parameters():
        p.requires_grad_(False)
    x = bench_inputs(args.batch)
    with torch.no_grad():
        target = model(x).argmax(1).tolist()
    call = captum_call(args.worker, model, x, target)
    base = status_mb("VmRSS")
    call()
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"workload": args.worker, "batch": args.batch, "median_ms": statistics.median(times),
                      "min_ms": min(times), "peak_rss_mb": status_mb("VmHWM"), "base_rss_mb": base,
                      "threads": torch.get_num_threads()}))


# ---------------------------------------------------------------- cross-check


def cross_check(args, model_name):
    """PyTorch and lumen agree on a few digits: the top-3 probabilities of `lumen
    explain` and its maps, against PyTorch (and Captum) on the same weights.

    The opt-in perturbation workloads are not compared here: feature ablation is
    checked against Captum in lumen's tests (tests/fixtures/captum_shapley, made by
    tools/captum/make_shapley_fixtures.py), and Shapley sampling draws its
    permutations from a different RNG on each side, so its maps agree only
    statistically."""
    import torch
    from captum.attr import Deconvolution, GuidedBackprop, IntegratedGradients, Occlusion, Saliency
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    model = build_model(args.card)
    test = mnist_test()
    digits = [0, 437, 918]  # a 0, a 4 and a 9
    checks = {
        "saliency": lambda x, t: Saliency(model).attribute(x, target=t, abs=False),
        "integrated_gradients": lambda x, t: IntegratedGradients(model).attribute(
            x, baselines=0.0, target=t, n_steps=IG_STEPS, method="gausslegendre"),
        "guided_backprop": lambda x, t: GuidedBackprop(model).attribute(x, target=t),
        "deconvnet": lambda x, t: Deconvolution(model).attribute(x, target=t),
        "occlusion": lambda x, t: Occlusion(model).attribute(
            x, sliding_window_shapes=(1, OCC_WINDOW, OCC_WINDOW), strides=(1, OCC_STRIDE, OCC_STRIDE),
            baselines=0.0, target=t, perturbations_per_eval=64),
    }
    worst = {"probabilities": 0.0, **{m: 0.0 for m in checks}}
    with tempfile.TemporaryDirectory() as tmp:
        for d in digits:
            x = torch.tensor(test[d][0], dtype=torch.float32).reshape(1, 1, 28, 28)
            with torch.no_grad():
                p = torch.softmax(model(x), 1)[0]
            t = int(p.argmax())
            for method, ref in checks.items():
                out = Path(tmp) / f"{d}-{method}"
                run([args.lumen, "explain", "--model", model_name, "--input", f"mnist:test:{d}",
                     "--method", method, "--out", str(out)], env=lumen_env(args))
                meta = json.loads(next(out.glob("*.json")).read_text())
                tensors = load_file(str(next(out.glob("*.safetensors"))))
                if not torch.equal(tensors["input"].reshape(x.shape), x):
                    raise SystemExit(f"cross-check: lumen's mnist:test:{d} is not the harness's digit {d}")
                for top in meta["top3"]:
                    worst["probabilities"] = max(worst["probabilities"],
                                                 abs(top["probability"] - float(p[top["class"]])))
                if meta["top3"][0]["class"] != t:
                    raise SystemExit(f"cross-check: digit {d}: lumen predicts {meta['top3'][0]['class']}, PyTorch {t}")
                a_lumen = tensors["attribution"].reshape(x.shape).double()
                a_ref = ref(x, t).detach().double()
                rel = float((a_lumen - a_ref).abs().max() / a_ref.abs().max().clamp_min(1e-30))
                worst[method] = max(worst[method], rel)
    print(f"cross-check on test digits {digits}: max |Δp| = {worst['probabilities']:.1e}; "
          + ", ".join(f"{m} max |Δ| / max |map| = {worst[m]:.1e}" for m in checks), file=sys.stderr)
    bad = [m for m in worst if worst[m] > (1e-5 if m == "probabilities" else 1e-4)]
    if bad:
        raise SystemExit(f"cross-check failed for {', '.join(bad)}: PyTorch and lumen disagree")
    return worst


# ---------------------------------------------------------------- driver


def lumen_env(args):
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(args.threads)
    return env


def run(cmd, env=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"harness: {' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def captum_run(args, workload, batch):
    out = run([sys.executable, __file__, "--worker", workload, "--batch", batch, "--reps", args.reps,
               "--threads", args.threads, "--card", args.card])
    return json.loads(out.strip().splitlines()[-1])


def lumen_run(args, workload, batch, model_name, tmp):
    method = dict((w, m) for w, m, _ in ALL_WORKLOADS)[workload]
    js = Path(tmp) / f"{workload}-{batch}.json"
    cmd = [args.lumen, "bench", "--model", model_name, "--batch", batch, "--methods", method,
           "--reps", args.reps, "--threads", args.threads, "--json", js]
    for p in lumen_params(workload, batch):
        cmd += ["--param", p]
    run(cmd, env=lumen_env(args))
    return json.loads(js.read_text())[0]


def combine(runs):
    """One side's rounds of a workload: the median of the rounds' medians, the least
    minimum and the largest peak RSS, with every round's median kept."""
    out = dict(runs[0])
    out["median_ms"] = statistics.median(r["median_ms"] for r in runs)
    out["min_ms"] = min(r["min_ms"] for r in runs)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["round_medians_ms"] = [r["median_ms"] for r in runs]
    return out


def versions(args):
    import captum
    import torch

    v = run([args.lumen, "--version"]).strip()
    return {"lumen": v, "torch": torch.__version__, "captum": captum.__version__,
            "python": sys.version.split()[0], "threads": args.threads, "cpus": os.cpu_count()}


def fmt(ms):
    return f"{ms:,.1f}" if ms < 1000 else f"{ms:,.0f}"


def table(rows, info):
    lines = [
        f"mnist-cnn, {info['threads']} threads on both sides, {info['cpus']} CPUs; {info['lumen']}, "
        f"torch {info['torch']}, Captum {info['captum']}, Python {info['python']}; {info.get('rounds', 1)} "
        f"alternating rounds (Captum, then lumen) of {info['reps']} timed calls after 1 warm-up, each in a "
        "process of its own; the median of the rounds' medians.",
        "",
        "| workload | batch | Captum ms | lumen ms | lumen / Captum | Captum peak RSS MiB | lumen peak RSS MiB | matched |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        c, l = r["captum"], r["lumen"]
        lines.append(
            f"| {LABELS[r['workload']]} | {r['batch']} | {fmt(c['median_ms'])} | {fmt(l['median_ms'])} | "
            f"{l['median_ms'] / c['median_ms']:.2f} | {c['peak_rss_mb']:.0f} | {l['peak_rss_mb']:.0f} | {r['matched']} |")
    ig = [r for r in rows if r["workload"] == "ig50" and r["batch"] == 64]
    if ig:
        c, l = ig[0]["captum"], ig[0]["lumen"]
        lines += ["", f"IG-50, batch 64, peak process RSS: Captum {c['peak_rss_mb']:.0f} MiB "
                      f"({c['base_rss_mb']:.0f} before the workload), lumen {l['peak_rss_mb']:.0f} MiB "
                      f"({l['base_rss_mb']:.0f} before); lumen / Captum = {l['peak_rss_mb'] / c['peak_rss_mb']:.2f}."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lumen", default=str(REPO / "target" / "release" / "lumen"), help="the lumen binary")
    ap.add_argument("--card", default=str(REPO / "models" / "weights" / "mnist-cnn.toml"), help="model card")
    ap.add_argument("--batches", default="64,1", help="comma-separated batch sizes")
    ap.add_argument("--workloads", default=",".join(w for w, _, _ in WORKLOADS),
                    help="comma-separated workloads (default: all but the opt-in "
                         + ", ".join(w for w, _, _ in OPT_IN_WORKLOADS) + ")")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per workload after one warm-up")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per workload, each one Captum process then one lumen process (a slow spell "
                         "of a shared machine then hits both sides); the table takes the median of the "
                         "rounds' medians")
    ap.add_argument("--threads", type=int, default=2, help="threads for PyTorch and lumen")
    ap.add_argument("--out", default=str(REPO / "out" / "bench-captum"), help="where results.json and table.md go")
    ap.add_argument("--skip-check", action="store_true", help="skip the PyTorch/lumen cross-check")
    ap.add_argument("--merge", nargs="+", metavar="RESULTS", help="print one table from results.json files of earlier runs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.merge:
        runs = [json.loads(Path(f).read_text()) for f in args.merge]
        info = dict(runs[0]["info"])
        reps = sorted({r["info"]["reps"] for r in runs})
        info["reps"] = " or ".join(map(str, reps))
        print(table([row for r in runs for row in r["rows"]], info))
        return None

    if not Path(args.lumen).is_file():
        raise SystemExit(f"harness: no lumen binary at {args.lumen} (cargo build --release --workspace)")
    model_name = load_card(args.card)["name"]
    shipped = REPO / "models" / "weights" / f"{model_name}.toml"
    if Path(args.card).resolve() != shipped.resolve():
        raise SystemExit("harness: --card must be a shipped card (lumen is called with --model NAME)")
    known = [w for w, _, _ in ALL_WORKLOADS]
    workloads = [w.strip() for w in args.workloads.split(",")]
    for w in workloads:
        if w not in known:
            raise SystemExit(f"harness: unknown workload '{w}' (known: {', '.join(known)})")
    batches = [int(b) for b in args.batches.split(",")]

    info = versions(args)
    info["reps"] = args.reps
    info["rounds"] = args.rounds
    check = None if args.skip_check else cross_check(args, model_name)
    rows = []
    matched = dict((w, m) for w, _, m in ALL_WORKLOADS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for b in batches:
            for w in workloads:
                cs, ls = [], []
                for r in range(args.rounds):
                    print(f"harness: {w}, batch {b}, round {r + 1}/{args.rounds}: Captum ...", end="",
                          file=sys.stderr, flush=True)
                    cs.append(captum_run(args, w, b))
                    print(f" {fmt(cs[-1]['median_ms'])} ms; lumen ...", end="", file=sys.stderr, flush=True)
                    ls.append(lumen_run(args, w, b, model_name, tmp))
                    print(f" {fmt(ls[-1]['median_ms'])} ms", file=sys.stderr, flush=True)
                rows.append({"workload": w, "batch": b, "captum": combine(cs), "lumen": combine(ls),
                             "matched": matched[w]})
                # After every row, so an interrupted run keeps what it measured.
                (out / "results.json").write_text(json.dumps({"info": info, "cross_check": check, "rows": rows},
                                                             indent=2))
    text = table(rows, info)
    print(text)
    (out / "table.md").write_text(text + "\n")
    print(f"\nwrote {out / 'results.json'} and {out / 'table.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
