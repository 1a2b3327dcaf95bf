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
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file
from zennit.attribution import Gradient
from zennit.composites import (EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus,
                               EpsilonPlusFlat, LayerMapComposite, layer_map_base)
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, WSquare, ZBox, ZPlus
from zennit.types import Linear as ParamLayer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "py"))
import lumen_torch  # noqa: E402
DIGITS = [0, 250, 437, 618, 918]  # indices into the test split: a 0, 2, 4, 6 and 9
MODELS = ["mnist-cnn", "mnist-allcnn"]


def test_split():
    """The test split in lumen's order, pixels in [0, 1]."""
    return [pixels for pixels, _ in lumen_torch.mnist_test()]


def load_model(name):
    return lumen_torch.build_model(REPO / "models" / "weights" / f"{name}.toml", "make_fixtures")


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
