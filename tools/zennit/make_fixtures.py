#!/usr/bin/env python3
"""Reference LRP maps from Zennit for lumen's integration tests (tests/zennit.rs).

Builds each shipped MNIST model card in PyTorch with its safetensors weights,
applies Zennit's composites and single-rule composites to five test digits (the
predicted class, a one-hot output gradient) and writes one safetensors file per
model under tests/fixtures/zennit/. Run by hand; the tests only read the output.

    /work/pyenv/venv/bin/python tools/zennit/make_fixtures.py

Needs torch, zennit (0.5.x) and safetensors.
"""

import argparse
import gzip
import tomllib
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from zennit.attribution import Gradient
from zennit.composites import (EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus,
                               EpsilonPlusFlat, LayerMapComposite, layer_map_base)
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus
from zennit.types import Linear as ParamLayer

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO / "core" / "data" / "mnist_5k.csv.gz"
PER_CLASS_TRAIN = 400  # lumen's mnist-5k split: the first 400 of each class train
DIGITS = [0, 250, 437, 618, 918]  # indices into the test split: a 0, 2, 4, 6 and 9
MODELS = ["mnist-cnn", "mnist-allcnn"]


def test_split():
    """The test split in lumen's order (by label, then file order), pixels in [0, 1]."""
    with gzip.open(MNIST, "rt") as f:
        rows = [[int(t) for t in line.split(",")] for line in f if line.strip()]
    seen, test = [0] * 10, []
    for i, r in enumerate(rows):
        if seen[r[784]] >= PER_CLASS_TRAIN:
            test.append(i)
        seen[r[784]] += 1
    test.sort(key=lambda i: (rows[i][784], i))
    return [[p / 255.0 for p in rows[i][:784]] for i in test]


class CardNet(torch.nn.Module):
    """A model card's layer list as modules named like the card, so the weights load
    by name and Zennit sees each layer as a module of its own type."""

    def __init__(self, layers):
        super().__init__()
        self.order = []
        for spec in layers:
            kind, name = spec["kind"], spec["name"]
            if kind == "conv2d":
                m = torch.nn.Conv2d(spec["in_channels"], spec["out_channels"], spec["kernel"],
                                    stride=spec.get("stride", 1), padding=spec.get("padding", 0),
                                    bias=spec.get("bias", True))
            elif kind == "linear":
                m = torch.nn.Linear(spec["in_features"], spec["out_features"], bias=spec.get("bias", True))
            elif kind == "relu":
                m = torch.nn.ReLU()
            elif kind == "max_pool2d":
                m = torch.nn.MaxPool2d(spec["kernel"], stride=spec.get("stride", spec["kernel"]))
            elif kind == "global_avg_pool":
                m = torch.nn.AdaptiveAvgPool2d(1)  # a Zennit AvgPool: the Norm rule
            elif kind == "flatten":
                m = None
            else:
                raise SystemExit(f"make_fixtures: layer kind '{kind}' is not supported")
            if m is not None:
                self.add_module(name, m)
            self.order.append((name, kind))

    def forward(self, x):
        for name, kind in self.order:
            x = x.flatten(1) if kind == "flatten" else getattr(self, name)(x)
        return x.flatten(1)


def load_model(name):
    card_path = REPO / "models" / "weights" / f"{name}.toml"
    with open(card_path, "rb") as f:
        card = tomllib.load(f)
    if card.get("normalization"):
        raise SystemExit("make_fixtures: cards with input normalisation are not supported")
    net = CardNet(card["layers"])
    net.load_state_dict(load_file(str(card_path.parent / card["weights"])), strict=True)
    return net.eval()


def single(rule):
    """One rule on every conv and linear layer, with Zennit's base map (activations
    pass, sums and average pools take Norm)."""
    return lambda: LayerMapComposite(layer_map=layer_map_base() + [(ParamLayer, rule)])


# fixture key -> a fresh composite
COMPOSITES = {
    "epsilon_gamma_box": lambda: EpsilonGammaBox(low=0.0, high=1.0),
    "epsilon_plus": EpsilonPlus,
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_alpha2beta1": EpsilonAlpha2Beta1,
    "epsilon_alpha2beta1_flat": EpsilonAlpha2Beta1Flat,
    "rule_epsilon": single(Epsilon()),
    "rule_gamma": single(Gamma()),
    "rule_zplus": single(ZPlus()),
    "rule_alpha2beta1": single(AlphaBeta(alpha=2.0, beta=1.0)),
    "rule_flat": single(Flat()),
    "rule_wsquare": single(WSquare()),
    "rule_zbox": single(ZBox(low=0.0, high=1.0)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "zennit"), help="output folder")
    args = ap.parse_args()
    torch.set_num_threads(2)
    test = test_split()
    x = torch.tensor([test[i] for i in DIGITS], dtype=torch.float32).reshape(len(DIGITS), 1, 28, 28)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        model = load_model(name)
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            logits = model(x)
        target = logits.argmax(1)
        onehot = torch.nn.functional.one_hot(target, logits.shape[1]).to(x)
        tensors = {"input": x.contiguous(), "logits": logits.contiguous(),
                   "target": target.to(torch.int64).contiguous(), "digits": torch.tensor(DIGITS, dtype=torch.int64)}
        for key, make in COMPOSITES.items():
            with Gradient(model=model, composite=make()) as attributor:
                _, relevance = attributor(x.clone(), onehot)
            tensors[key] = relevance.detach().contiguous()
        path = out / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={"zennit": version("zennit"), "torch": torch.__version__,
            "digits": ",".join(map(str, DIGITS))})
        print(f"wrote {path} ({', '.join(COMPOSITES)})")


if __name__ == "__main__":
    main()
