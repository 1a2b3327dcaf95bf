#!/usr/bin/env python3
"""Reference scores from pytorch-grad-cam's CAM metrics for lumen's `road*` and
confidence metrics (plugins/std-metrics/src/road.rs).

Reads the digits and Grad-CAM maps of tests/fixtures/gradcam/mnist-cnn.safetensors
(run tools/gradcam/make_fixtures.py first), builds the shipped mnist-cnn
(in float32, as pytorch-grad-cam's imputer requires) and writes
tests/fixtures/gradcam/road.safetensors. Run by hand, never in CI:

    /work/pyenv/venv/bin/python tools/gradcam/make_road_fixtures.py

Needs torch, grad-cam, scipy, safetensors and numpy. The noisy linear imputation
adds N(0, 0.01²) noise, which no two libraries draw alike, so the references use
pytorch-grad-cam's imputer with noise=0 (lumen's `noise=0`).

Tensors (stored as float64, float32 precision):
  cams [5,28,28]              the Grad-CAM maps the metrics judge (grad_cam_map)
  imputed_morf50 [5,1,28,28]  the input with the top half of the map imputed (MoRF 50)
  imputed_lerf30 [5,1,28,28]  the input with the least relevant 70 % imputed (LeRF 30)
  road_morf [5], road_lerf [5]  ROAD averaged over percentiles 10..90: the target
                              logit after imputation minus before
  road_combined [5]           (road_lerf - road_morf) / 2
  drop_in_confidence [5], increase_in_confidence [5]  on the input times the map
"""

import sys
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.perturbation_confidence import (AveragerAcrossThresholds, PerturbationConfidenceMetric,
                                                              RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "py"))
from lumen_torch import build_model  # noqa: E402

PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


def quiet(order):
    """ROAD at one percentile with the imputer's noise off."""
    return lambda p: PerturbationConfidenceMetric(order(p, NoisyLinearImputer(noise=0.0)))


def main():
    f = load_file(str(REPO / "tests" / "fixtures" / "gradcam" / "mnist-cnn.safetensors"))
    # float32 throughout: pytorch-grad-cam's imputer writes float32 values
    model = build_model(REPO / "models" / "weights" / "mnist-cnn.toml", "make_road_fixtures")
    x, cams = f["inputs"].float(), f["grad_cam_map"].float().numpy()
    targets = [ClassifierOutputTarget(int(c)) for c in f["first"]]
    imp = NoisyLinearImputer(noise=0.0)
    morf50 = torch.stack([RemoveMostRelevantFirst(50, imp)(x[i], torch.from_numpy(cams[i])) for i in range(len(x))])
    lerf30 = torch.stack([RemoveLeastRelevantFirst(30, imp)(x[i], torch.from_numpy(cams[i])) for i in range(len(x))])
    morf = AveragerAcrossThresholds(quiet(RemoveMostRelevantFirst), PERCENTILES)(x, cams, targets, model)
    lerf = AveragerAcrossThresholds(quiet(RemoveLeastRelevantFirst), PERCENTILES)(x, cams, targets, model)
    out = {
        "cams": torch.from_numpy(cams),
        "imputed_morf50": morf50,
        "imputed_lerf30": lerf30,
        "road_morf": torch.from_numpy(np.float64(morf)),
        "road_lerf": torch.from_numpy(np.float64(lerf)),
        "road_combined": torch.from_numpy(np.float64((lerf - morf) / 2)),
        "drop_in_confidence": torch.from_numpy(np.float64(DropInConfidence()(x, cams, targets, model))),
        "increase_in_confidence": torch.from_numpy(np.float64(IncreaseInConfidence()(x, cams, targets, model))),
    }
    dest = REPO / "tests" / "fixtures" / "gradcam" / "road.safetensors"
    save_file({k: v.contiguous().double() for k, v in out.items()}, str(dest))
    print(f"wrote {dest}: " + ", ".join(f"{k} {v.numpy().round(4).tolist()}" for k, v in out.items() if v.ndim == 1))


if __name__ == "__main__":
    main()
