"""Shared by the hand-run Python scripts (bench/captum/harness.py,
tools/zennit/make_fixtures.py): lumen's MNIST test split and its model cards as
PyTorch modules with the shipped safetensors weights. Needs torch and safetensors."""

import gzip
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MNIST = REPO / "core" / "data" / "mnist_5k.csv.gz"
TRAIN_PER_CLASS = 400  # lumen's mnist-5k split: the first 400 of each class train


def mnist_test():
    """The MNIST-5k test split as lumen orders it (by label, then file order):
    [(pixels in [0, 1], label)]."""
    rows = []
    with gzip.open(MNIST, "rt") as f:
        for line in f:
            if line.strip():
                v = [int(t) for t in line.split(",")]
                rows.append((v[:784], v[784]))
    seen, test = [0] * 10, []
    for i, (_, label) in enumerate(rows):
        if seen[label] >= TRAIN_PER_CLASS:
            test.append(i)
        seen[label] += 1
    test.sort(key=lambda i: (rows[i][1], i))
    return [([p / 255.0 for p in rows[i][0]], rows[i][1]) for i in test]


def load_card(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def build_model(card_path, who="lumen_torch"):
    """The card's layers as modules named like the card (so the weights load by name,
    and Captum and Zennit see each layer as a module of its own type)."""
    import torch
    from safetensors.torch import load_file

    card = load_card(card_path)
    if card.get("normalization"):
        raise SystemExit(f"{who}: cards with input normalisation are not supported")

    class CardNet(torch.nn.Module):
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
                    m = torch.nn.AdaptiveAvgPool2d(1)  # for Zennit an AvgPool: the Norm rule
                elif kind == "flatten":
                    m = None  # functional, so Captum's LRP sees only layers it has rules for
                else:
                    raise SystemExit(f"{who}: layer kind '{kind}' is not supported")
                if m is not None:
                    self.add_module(name, m)
                self.order.append((name, kind))

        def forward(self, x):
            for name, kind in self.order:
                x = x.flatten(1) if kind == "flatten" else getattr(self, name)(x)
            return x.flatten(1)

    net = CardNet(card["layers"])
    net.load_state_dict(load_file(str(Path(card_path).parent / card["weights"])), strict=True)
    return net.eval()
