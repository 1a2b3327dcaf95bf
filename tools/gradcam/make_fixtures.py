#!/usr/bin/env python3
"""Reference CAMs from pytorch-grad-cam for lumen's CAM tests (plugins/std-cam).

Builds the shipped mnist-cnn card in PyTorch with its safetensors weights, in
float64, picks five test digits whose two largest logits are close (so that the
maps for the first and the second class differ visibly) and writes
tests/fixtures/gradcam/mnist-cnn.safetensors. Run by hand, never in CI; the tests
only read the output:

    /work/pyenv/venv/bin/python tools/gradcam/make_fixtures.py

Needs torch, grad-cam (pytorch-grad-cam), captum, safetensors and numpy.

pytorch-grad-cam's pipeline per image: the raw CAM at the layer's resolution,
ReLU, min-max scaling to [0, 1] (x - min, then / (1e-7 + max)), then cv2.resize
with bilinear interpolation (half-pixel centres, the edge clamped: the same as
torch's interpolate(mode="bilinear", align_corners=False)) in float32.

Tensors (float64 unless said otherwise):
  inputs [5,1,28,28]   digits [5] int64 (test-split indices)
  first [5], second [5] int64: the classes with the largest and second largest logit
  {method}_cam [5,7,7]       the CAM at pool2 for class `first`, after ReLU (float64,
                             from the method's get_cam_image on the stored
                             activations and gradients)
  {method}_map [5,28,28]     pytorch-grad-cam's output for class `first` (float32
                             precision: scaled and resized by cv2 in float32)
  {method}_second_cam [5,7,7] the same CAM for class `second`
  grad_cam_conv2_cam [5,14,14], grad_cam_conv2_map [5,28,28]: Grad-CAM at conv2
                             (before its ReLU, so activations of both signs)
  {eigen}_projection [5,7,7]  the first principal component's projection (float32:
                             get_2d_projection returns float32; sign arbitrary) at
                             pool2, for eigen_cam, eigen_grad_cam and
                             grad_cam_eigen_smooth (Grad-CAM's weighted maps)
  grad_cam_aug_smooth_map [5,28,28]  Grad-CAM at pool2 with aug_smooth=True (the mean
                             of six test-time augmentations' scaled maps; float32)
  captum_layer_grad_cam_{pool2,conv2} [5,7,7], [5,14,14]  Captum's LayerGradCam,
                             relu_attributions=False (float64)
  full_grad_map [5,28,28]     FullGrad over conv1 and conv2's biases and the input
                             (float32 precision)
for method in grad_cam, grad_cam_plus_plus, hires_cam, xgrad_cam, layer_cam,
score_cam and ablation_cam (their weights pass through float32 in
pytorch-grad-cam: Score-CAM's scores and softmax, Ablation-CAM's scores).
"""

import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import (AblationCAM, EigenCAM, EigenGradCAM, FullGrad, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM,
                             ScoreCAM, XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "py"))
from lumen_torch import build_model, mnist_test  # noqa: E402

METHODS = {
    "grad_cam": GradCAM,
    "grad_cam_plus_plus": GradCAMPlusPlus,
    "hires_cam": HiResCAM,
    "xgrad_cam": XGradCAM,
    "layer_cam": LayerCAM,
    "score_cam": ScoreCAM,
    "ablation_cam": AblationCAM,
}
# The PCA CAMs: their raw projections (the sign of a principal component is
# arbitrary; the tests align it).
PROJECTIONS = {"eigen_cam": EigenCAM, "eigen_grad_cam": EigenGradCAM}


def cams(cls, model, layer, x, classes, eigen_smooth=False, relu=True):
    """(raw CAM at the layer, after ReLU unless relu=False, pytorch-grad-cam's
    scaled output)."""
    cam = cls(model=model, target_layers=[layer])
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    out = cam(input_tensor=x, targets=targets, eigen_smooth=eigen_smooth)
    acts = cam.activations_and_grads.activations[0].numpy()
    grads = cam.activations_and_grads.gradients[0].numpy() if cam.activations_and_grads.gradients else None
    raw = cam.get_cam_image(x, layer, targets, acts, grads, eigen_smooth)
    cam.activations_and_grads.release()
    return (np.maximum(raw, 0) if relu else raw), out


def main():
    torch.set_grad_enabled(True)
    model = build_model(REPO / "models" / "weights" / "mnist-cnn.toml", "make_fixtures").double()
    test = mnist_test()
    xs = torch.tensor([p for p, _ in test], dtype=torch.float64).reshape(-1, 1, 28, 28)
    with torch.no_grad():
        logits = model(xs)
    top2 = logits.topk(2, dim=1)
    margin = (top2.values[:, 0] - top2.values[:, 1]).numpy()
    # The five closest calls with a margin of at least 0.5 (so that float32 and
    # float64 agree on the order).
    order = [int(i) for i in np.argsort(margin) if margin[i] >= 0.5][:5]
    x = xs[order].clone()
    first, second = top2.indices[order, 0], top2.indices[order, 1]
    out = {
        "inputs": x,
        "digits": torch.tensor(order, dtype=torch.int64),
        "first": first.clone(),
        "second": second.clone(),
    }
    for name, cls in METHODS.items():
        raw, scaled = cams(cls, model, model.pool2, x, first)
        out[f"{name}_cam"] = torch.from_numpy(raw.astype(np.float64))
        out[f"{name}_map"] = torch.from_numpy(scaled.astype(np.float64))
        raw2, _ = cams(cls, model, model.pool2, x, second)
        out[f"{name}_second_cam"] = torch.from_numpy(raw2.astype(np.float64))
    for name, cls in PROJECTIONS.items():
        raw, _ = cams(cls, model, model.pool2, x, first, relu=False)
        out[f"{name}_projection"] = torch.from_numpy(raw.astype(np.float64))
    raw, _ = cams(GradCAM, model, model.pool2, x, first, eigen_smooth=True, relu=False)
    out["grad_cam_eigen_smooth_projection"] = torch.from_numpy(raw.astype(np.float64))
    from captum.attr import LayerGradCam
    for name, layer in [("pool2", model.pool2), ("conv2", model.conv2)]:
        a = LayerGradCam(model, layer).attribute(x.clone(), target=first.tolist(), relu_attributions=False)
        out[f"captum_layer_grad_cam_{name}"] = a.detach()[:, 0]
    cam = GradCAM(model=model, target_layers=[model.pool2])
    out["grad_cam_aug_smooth_map"] = torch.from_numpy(cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in first], aug_smooth=True).astype(np.float64))
    fg = FullGrad(model=model, target_layers=[])
    out["full_grad_map"] = torch.from_numpy(fg(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in first]).astype(np.float64))
    raw, scaled = cams(GradCAM, model, model.conv2, x, first)
    out["grad_cam_conv2_cam"] = torch.from_numpy(raw.astype(np.float64))
    out["grad_cam_conv2_map"] = torch.from_numpy(scaled.astype(np.float64))
    dest = REPO / "tests" / "fixtures" / "gradcam" / "mnist-cnn.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "grad-cam": version("grad-cam"), "digits": ",".join(map(str, order))}
    save_file({k: v.contiguous() for k, v in out.items()}, str(dest), metadata=meta)
    print(f"wrote {dest}: digits {order}, first {first.tolist()}, second {second.tolist()}, margins "
          f"{[round(float(margin[i]), 3) for i in order]}")


if __name__ == "__main__":
    main()
