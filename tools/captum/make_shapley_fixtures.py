#!/usr/bin/env python3
"""Reference outputs from Captum for lumen's model-agnostic attribution tests
(feature ablation, exact Shapley values, KernelSHAP).

Builds the shipped mnist-cnn card in PyTorch with its safetensors weights, in
float64, takes five test digits (the model's predicted class, its logit, zero
baseline) and writes tests/fixtures/captum_shapley/mnist-cnn.safetensors, plus
the stripe mask as stripes7.png and stripes7.safetensors (for lumen's
`mask=file mask_file=...`). Run by hand, never in CI; the tests only read the
output:

    /work/pyenv/venv/bin/python tools/captum/make_shapley_fixtures.py

Needs torch, captum, safetensors, numpy and scikit-learn (Captum's KernelShap
fits its linear model with it). Takes a few minutes on two cores: the exact
grid7 Shapley values evaluate the model on all 2^16 coalitions of each digit.

Masks (feature ids per pixel, the same for every channel):
  grid7     cell 7 on 28x28: id = (y // 7) * ceil(28 / 7) + (x // 7), 16 features
  stripes7  vertical stripes of width 4: id = x // 4, 7 features

Tensors (float64 unless said otherwise):
  inputs [5,1,28,28]  digits [5] int64 (test-split indices)  targets [5] int64
  grid7, stripes7 [28,28] int64
  f_x [5], f_baseline [5]            target logit of the input and of the zero baseline
  feature_ablation_grid7 [5,1,28,28] Captum FeatureAblation, baselines=0
  shapley_values_stripes7 [5,1,28,28] Captum ShapleyValues (all 7! permutations); Captum
                                     sums in float32, so these hold float32 precision only
  shapley_exact_stripes7 [5,1,28,28] the same by subset enumeration (here), full float64
  shapley_exact_grid7 [5,1,28,28]    exact Shapley values by subset enumeration (here)
  kernel_shap_grid7 [5,1,28,28]      Captum KernelShap, n_samples=4096,
                                     torch.manual_seed(0) before each digit (Captum
                                     returns float32 here too; stored as float64)
"""

import argparse
import math
import struct
import sys
import time
import zlib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from captum.attr import FeatureAblation, KernelShap, ShapleyValues
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "py"))
import lumen_torch  # noqa: E402

SCRIPT = "tools/captum/make_shapley_fixtures.py"
DIGITS = [0, 250, 437, 618, 918]  # indices into the test split: a 0, 2, 4, 6 and 9 (as tools/zennit)
MODEL = "mnist-cnn"
H = W = 28
GRID_CELL = 7
STRIPE_WIDTH = 4
KS_SAMPLES = 4096
KS_PER_EVAL = 256
SV_PER_EVAL = 128  # ShapleyValues: perturbations per forward pass (x5 digits rows)
ENUM_ROWS = 1024  # exact enumeration: rows per forward pass


def grid_mask(cell=None):
    cell = cell or GRID_CELL
    per_row = math.ceil(W / cell)
    y, x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return ((y // cell) * per_row + (x // cell)).to(torch.int64)


def stripe_mask(width=None):
    width = width or STRIPE_WIDTH
    x = torch.arange(W).expand(H, W)
    return (x // width).to(torch.int64).contiguous()


def write_png_gray8(path, values):
    """An 8-bit grayscale PNG (no filter, zlib) whose gray value is values[y][x]."""
    h, w = values.shape
    raw = b"".join(b"\x00" + bytes(int(v) for v in row) for row in values.tolist())

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    Path(path).write_bytes(png)


def target_logits(model, x, target, rows=ENUM_ROWS):
    """model(x)[:, target] in passes of `rows`."""
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], rows):
            out.append(model(x[s:s + rows])[:, target])
    return torch.cat(out)


def coalition_values(model, x1, mask, target, n_features):
    """f(S) for every coalition S (bit i of the index = feature i present; absent
    features take the zero baseline) of one digit x1 [1,C,H,W]: [2^M] float64."""
    onehot = torch.stack([(mask == i) for i in range(n_features)]).to(x1.dtype)  # [M,H,W]
    values = torch.empty(1 << n_features, dtype=torch.float64)
    bits = torch.tensor([1 << i for i in range(n_features)], dtype=torch.int64)
    with torch.no_grad():
        for s in range(0, 1 << n_features, ENUM_ROWS):
            idx = torch.arange(s, min(s + ENUM_ROWS, 1 << n_features))
            present = ((idx[:, None] & bits) != 0).to(x1.dtype)  # [B,M]
            keep = torch.einsum("bm,mhw->bhw", present, onehot)[:, None]  # 0/1 exactly
            values[idx] = model(x1 * keep)[:, target]
    return values


def shapley_from_values(values, n_features):
    """phi_i = sum over S without i of |S|!(M-|S|-1)!/M! (f(S+i) - f(S))."""
    m = n_features
    v = values.numpy()
    idx = np.arange(1 << m)
    size = np.array([bin(i).count("1") for i in idx])
    weight = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])
    phi = np.empty(m)
    for i in range(m):
        without = idx[(idx >> i) & 1 == 0]
        phi[i] = np.sum(weight[size[without]] * (v[without | (1 << i)] - v[without]))
    return torch.from_numpy(phi)


def per_pixel(phi, mask):
    """Each pixel gets its feature's value: [1,1,H,W]."""
    return phi[mask].reshape(1, 1, H, W)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "captum_shapley"), help="output folder")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()

    model = lumen_torch.build_model(REPO / "models" / "weights" / f"{MODEL}.toml", "make_shapley_fixtures").double()
    for p in model.parameters():
        p.requires_grad_(False)
    test = [pixels for pixels, _ in lumen_torch.mnist_test()]
    x = torch.tensor([test[i] for i in DIGITS], dtype=torch.float64).reshape(len(DIGITS), 1, H, W)
    with torch.no_grad():
        logits = model(x)
        targets = logits.argmax(1)
        f_x = logits.gather(1, targets[:, None])[:, 0]
        f_base = model(torch.zeros_like(x)).gather(1, targets[:, None])[:, 0]
    tlist = targets.tolist()
    print(f"digits {DIGITS}: targets {tlist}, f(x) {f_x.tolist()}, f(0) {f_base.tolist()}")

    grid7, stripes7 = grid_mask(), stripe_mask()
    n_grid, n_stripes = int(grid7.max()) + 1, int(stripes7.max()) + 1
    assert n_grid == math.ceil(H / GRID_CELL) * math.ceil(W / GRID_CELL) and n_stripes == math.ceil(W / STRIPE_WIDTH)
    grid_fm, stripes_fm = grid7.reshape(1, 1, H, W), stripes7.reshape(1, 1, H, W)

    # --- feature ablation, grid7
    t = time.perf_counter()
    fa = FeatureAblation(model).attribute(x, target=tlist, baselines=0.0, feature_mask=grid_fm,
                                          perturbations_per_eval=n_grid)
    assert fa.dtype == torch.float64, fa.dtype
    print(f"FeatureAblation grid7: {time.perf_counter() - t:.1f} s")
    # by hand: f(x) - f(x with feature i at 0)
    for d in range(len(DIGITS)):
        ablated = torch.stack([x[d] * (grid7 != i).to(x.dtype) for i in range(n_grid)])
        by_hand = f_x[d] - target_logits(model, ablated, tlist[d])
        got = fa[d, 0][torch.stack([(grid7 == i).nonzero()[0] for i in range(n_grid)]).unbind(1)]
        gap = float((got - by_hand).abs().max())
        assert gap <= 1e-9, f"FeatureAblation digit {DIGITS[d]}: |captum - by hand| = {gap:.3e}"
        # constant within each cell
        assert torch.equal(fa[d, 0], got[grid7]), "FeatureAblation is not constant per feature"
    print("FeatureAblation matches f(x) - f(x without feature) to 1e-9")

    # --- exact Shapley values (Captum, all permutations), stripes7
    t = time.perf_counter()
    sv = ShapleyValues(model).attribute(x, target=tlist, baselines=0.0, feature_mask=stripes_fm,
                                        perturbations_per_eval=SV_PER_EVAL)
    print(f"ShapleyValues stripes7 ({math.factorial(n_stripes)} permutations): {time.perf_counter() - t:.1f} s")

    # --- exact Shapley values by subset enumeration: stripes7 (to check Captum) and grid7
    t = time.perf_counter()
    exact_grid, exact_stripes = [], []
    for d in range(len(DIGITS)):
        v7 = coalition_values(model, x[d:d + 1], stripes7, tlist[d], n_stripes)
        phi7 = shapley_from_values(v7, n_stripes)
        exact_stripes.append(per_pixel(phi7, stripes7))
        v16 = coalition_values(model, x[d:d + 1], grid7, tlist[d], n_grid)
        assert abs(float(v16[-1] - f_x[d])) < 1e-9 and abs(float(v16[0] - f_base[d])) < 1e-9
        phi16 = shapley_from_values(v16, n_grid)
        gap = float(phi16.sum() - (f_x[d] - f_base[d]))
        print(f"  digit {DIGITS[d]}: exact grid7 efficiency gap sum(phi) - (f(x) - f(0)) = {gap:.3e} "
              f"(f(x) - f(0) = {float(f_x[d] - f_base[d]):.6f})")
        assert abs(gap) < 1e-9
        exact_grid.append(per_pixel(phi16, grid7))
    exact_grid, exact_stripes = torch.cat(exact_grid), torch.cat(exact_stripes)
    print(f"exact enumeration (2^{n_grid} and 2^{n_stripes} coalitions per digit): {time.perf_counter() - t:.1f} s")
    # Captum's ShapleyValues sums its attributions in float32 (whatever the input
    # dtype), so over 5040 permutations it matches the float64 enumeration only to
    # ~1e-5 of the largest value (measured 1.6e-5 on digit 0).
    print(f"ShapleyValues returns {sv.dtype}")
    sv = sv.double()
    for d in range(len(DIGITS)):
        rel = float((sv[d] - exact_stripes[d]).abs().max() / exact_stripes[d].abs().max())
        print(f"  digit {DIGITS[d]}: ShapleyValues stripes7 vs enumeration: max |diff| / max |exact| = {rel:.3e}")
        assert rel < 1e-4, "Captum's ShapleyValues disagree with the subset enumeration"

    # --- KernelSHAP, grid7, one digit at a time, seed 0 before each
    t = time.perf_counter()
    ks = []
    ks_err = []
    for d in range(len(DIGITS)):
        torch.manual_seed(0)
        a = KernelShap(model).attribute(x[d:d + 1], target=tlist[d], baselines=0.0, feature_mask=grid_fm,
                                        n_samples=KS_SAMPLES, perturbations_per_eval=KS_PER_EVAL)
        if d == 0:
            print(f"KernelShap returns {a.dtype}")
        ks.append(a.double())
        rel = float((a - exact_grid[d:d + 1]).abs().max() / exact_grid[d].abs().max())
        ks_err.append(rel)
        print(f"  digit {DIGITS[d]}: KernelShap max |ks - exact| / max |exact| = {rel:.3e}")
    ks = torch.cat(ks)
    print(f"KernelShap grid7 (n_samples {KS_SAMPLES}): {time.perf_counter() - t:.1f} s")

    tensors = {
        "inputs": x, "digits": torch.tensor(DIGITS, dtype=torch.int64), "targets": targets.to(torch.int64),
        "grid7": grid7, "stripes7": stripes7, "f_x": f_x, "f_baseline": f_base,
        "feature_ablation_grid7": fa, "shapley_values_stripes7": sv, "shapley_exact_stripes7": exact_stripes,
        "shapley_exact_grid7": exact_grid, "kernel_shap_grid7": ks,
    }
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    for k, v in tensors.items():
        assert v.dtype == (torch.int64 if k in ("digits", "targets", "grid7", "stripes7") else torch.float64), k
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "script": SCRIPT, "model": MODEL, "torch": torch.__version__, "captum": version("captum"),
        "numpy": np.__version__, "scikit-learn": version("scikit-learn"), "dtype": "float64",
        "digits": ",".join(map(str, DIGITS)), "targets": ",".join(map(str, tlist)), "baseline": "0",
        "grid7": f"id = (y // {GRID_CELL}) * ceil(28 / {GRID_CELL}) + (x // {GRID_CELL})",
        "stripes7": f"id = x // {STRIPE_WIDTH}",
        "kernel_shap": f"n_samples={KS_SAMPLES} perturbations_per_eval={KS_PER_EVAL} torch.manual_seed(0) per digit",
        "kernel_shap_rel_err": ",".join(f"{e:.3e}" for e in ks_err),
        "shapley_values": f"exact, all {math.factorial(n_stripes)} permutations, perturbations_per_eval={SV_PER_EVAL}; "
                          "Captum accumulates in float32, so float32 precision (shapley_exact_stripes7 is float64)",
    }
    path = out / f"{MODEL}.safetensors"
    save_file(tensors, str(path), metadata=meta)
    save_file({"mask": stripes7.contiguous()}, str(out / "stripes7.safetensors"),
              metadata={"script": SCRIPT, "mask": meta["stripes7"]})
    write_png_gray8(out / "stripes7.png", stripes7)
    print(f"wrote {path}, {out / 'stripes7.safetensors'}, {out / 'stripes7.png'} "
          f"in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
