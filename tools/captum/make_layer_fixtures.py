#!/usr/bin/env python3
"""Reference outputs from Captum for lumen's layer and neuron attribution tests
(plugins/std-layer).

Builds the shipped mnist-cnn card in PyTorch with its safetensors weights, in
float64, takes four test digits (the model's predicted class, zero baseline,
Captum's defaults of 50 steps and Gauss-Legendre, which are lumen's defaults
too) and writes tests/fixtures/captum_layer/mnist-cnn.safetensors. Run by hand,
never in CI; the tests only read the output:

    /work/pyenv/venv/bin/python tools/captum/make_layer_fixtures.py

Needs torch, captum, safetensors and numpy.

Tensors (float64 unless said otherwise):
  inputs [4,1,28,28]  digits [4] int64 (test-split indices)  targets [4] int64
  f_x [4], f_baseline [4]           target logit of the input and of the zero baseline
  layer_conductance_{conv2,pool2,fc1}          Captum LayerConductance (layer's shape)
  layer_integrated_gradients_{conv2,pool2,fc1} Captum LayerIntegratedGradients
                                               (attribute_to_layer_input=False: the
                                               layer's outputs interpolated)
  internal_influence_{conv2,fc1}               Captum InternalInfluence
  layer_gradient_x_activation_{conv2,fc1}      Captum LayerGradientXActivation
  neuron_{conv2,fc1} int64                     the neuron (channel[, y, x]): the
                                               largest activation of digit 0 there
  neuron_conductance_{conv2,fc1} [4,1,28,28]   Captum NeuronConductance for the
                                               target class through that neuron
                                               (method=gausslegendre: Captum's default
                                               here is riemann_trapezoid)
  neuron_integrated_gradients_{conv2,fc1}      Captum NeuronIntegratedGradients of
                                               that neuron
"""

import sys
from importlib.metadata import version
from pathlib import Path

import torch
from captum.attr import (InternalInfluence, LayerConductance, LayerGradientXActivation, LayerIntegratedGradients,
                         NeuronConductance, NeuronIntegratedGradients)
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "py"))
import lumen_torch  # noqa: E402

DIGITS = [0, 250, 437, 918]  # indices into the test split: a 0, 2, 4 and 9
STEPS = 50
METHOD = "gausslegendre"


def main():
    torch.set_grad_enabled(True)
    model = lumen_torch.build_model(REPO / "models" / "weights" / "mnist-cnn.toml", "make_layer_fixtures").double()
    test = lumen_torch.mnist_test()
    x = torch.tensor([test[i][0] for i in DIGITS], dtype=torch.float64).reshape(-1, 1, 28, 28)
    base = torch.zeros_like(x)
    with torch.no_grad():
        logits = model(x)
        targets = logits.argmax(1)
        f_x = logits.gather(1, targets[:, None])[:, 0]
        f_b = model(base).gather(1, targets[:, None])[:, 0]
    t = targets.tolist()
    out = {"inputs": x, "digits": torch.tensor(DIGITS, dtype=torch.int64), "targets": targets.clone(),
           "f_x": f_x, "f_baseline": f_b}
    layers = {"conv2": model.conv2, "pool2": model.pool2, "fc1": model.fc1}
    for name, layer in layers.items():
        out[f"layer_conductance_{name}"] = LayerConductance(model, layer).attribute(
            x, baselines=base, target=t, n_steps=STEPS, method=METHOD)
        out[f"layer_integrated_gradients_{name}"] = LayerIntegratedGradients(model, layer).attribute(
            x, baselines=base, target=t, n_steps=STEPS, method=METHOD)
    for name in ["conv2", "fc1"]:
        layer = layers[name]
        out[f"internal_influence_{name}"] = InternalInfluence(model, layer).attribute(
            x, baselines=base, target=t, n_steps=STEPS, method=METHOD)
        out[f"layer_gradient_x_activation_{name}"] = LayerGradientXActivation(model, layer).attribute(x, target=t)
        # the neuron: digit 0's largest activation at the layer
        acts = {}
        h = layer.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o.detach()))
        with torch.no_grad():
            model(x[:1])
        h.remove()
        a0 = acts["a"][0]
        neuron = tuple(int(v) for v in torch.unravel_index(a0.argmax(), a0.shape))
        out[f"neuron_{name}"] = torch.tensor(neuron, dtype=torch.int64)
        out[f"neuron_conductance_{name}"] = NeuronConductance(model, layer).attribute(
            x, neuron_selector=neuron, baselines=base, target=t, n_steps=STEPS, method=METHOD)
        out[f"neuron_integrated_gradients_{name}"] = NeuronIntegratedGradients(model, layer).attribute(
            x, neuron_selector=neuron, baselines=base, n_steps=STEPS, method=METHOD)
    out = {k: v.detach().contiguous() for k, v in out.items()}
    dest = REPO / "tests" / "fixtures" / "captum_layer" / "mnist-cnn.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "captum": version("captum"), "digits": ",".join(map(str, DIGITS)),
            "steps": str(STEPS), "method": METHOD}
    save_file(out, str(dest), metadata=meta)
    summary = {k: list(v.shape) for k, v in out.items()}
    print(f"wrote {dest}: targets {t}, neurons conv2 {out['neuron_conv2'].tolist()} fc1 {out['neuron_fc1'].tolist()}")
    print(summary)


if __name__ == "__main__":
    main()
