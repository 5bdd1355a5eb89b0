"""digits-torch: a tiny CNN on the 8x8 handwritten digits, saved as TorchScript."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from builders.common import SEED, confident_rows, metrics, split, write_examples, write_reference

EPOCHS = 20
BATCH = 32


class DigitsCNN(nn.Module):
    """Raw pixels (0..16) in, logits out; the scaling to 0..1 is part of the model."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
        )  # fmt: skip

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image / 16.0)


class Classifier(nn.Module):
    """What is saved: image float32 [-1, 1, 8, 8] -> (label int64 [-1], probabilities [-1, 10])."""

    def __init__(self, net: DigitsCNN):
        super().__init__()
        self.net = net

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        probabilities = torch.softmax(self.net(image), dim=1)
        return probabilities.argmax(dim=1), probabilities


def build(package_dir: Path) -> dict:
    digits = load_digits()
    x_train, x_test, y_train, y_test = split(digits.images[:, None].astype(np.float32), digits.target)
    model = Classifier(train(x_train, y_train)).eval()
    torch.jit.script(model).save(str(package_dir / "model.pt"))
    write_reference(package_dir / "reference.csv", "image", x_train)
    with torch.no_grad():
        proba = model(torch.from_numpy(x_test))[1].numpy()
    rows = confident_rows(y_test, proba, classes=[0, 3, 8])
    write_examples(package_dir / "examples.json", "image", x_test[rows], y_test[rows])
    return metrics(y_test, proba.argmax(axis=1))


def train(x: np.ndarray, y: np.ndarray) -> DigitsCNN:
    """Adam on shuffled mini-batches; one thread and a fixed seed make it repeatable."""
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    net, images, targets = DigitsCNN(), torch.from_numpy(x), torch.from_numpy(y)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(images)).split(BATCH):
            optimiser.zero_grad()
            nn.functional.cross_entropy(net(images[batch]), targets[batch]).backward()
            optimiser.step()
    return net
