"""Plain PyTorch, written the way a PyTorch user would: the paper's experiment, timed per epoch.

The yardstick for `sqnc bench`'s `torch/b` arm (issue 19: "a PyTorch arm as fast as plain
PyTorch"). It shares no code with `sqloss_nc`: its own data loading (JPEGs straight out of the
CIFAR-10 zip with PIL), its own network (`nn.Sequential`), `nn.MSELoss`, `torch.optim.SGD`.

The experiment (SPEC §2–§4, the project's default config):

- data: CIFAR-10 classes 1 (automobile) and 2 (bird), the first N/2 training images of each in
  sorted file order, pixels / 255 standardized by CIFAR-10's channel means and stds, then every
  image scaled to L2 norm 1; labels 0, 1. Or, with `--data FILE`, the `.npz` the bench writes
  (channels-last float32 `x_train`, int `y_train`), so both train on the same bytes.
- network: three 3x3 stride-2 `Conv2d(padding=1, bias=False)` of 32, 64, 128 channels, each
  followed by `BatchNorm2d(affine=False)` and ReLU; flatten; `Linear(2048, 2, bias=False)`.
  Every weight tensor drawn N(0, 1) and rescaled to Frobenius norm 0.01.
- objective: `MSELoss()` (mean over B·C) against one-hot targets; weight decay 0.01 coupled
  (`SGD(weight_decay=...)`), SGD lr 0.01, momentum 0.9, batch 128, a fresh permutation each
  epoch, the last batch partial.

Prints one JSON line: {"wall": [s per timed epoch], "cpu": [...], "loss": [...], "faults": [minor
page faults per epoch], "threads", ...}.
The first `--warmup` epochs are run and left out.

Example (from the repository root):

    python tools/plain_torch_epoch.py --data-dir ../shared/data/cifar10-jpeg.zip --epochs 5
    python tools/plain_torch_epoch.py --data /tmp/bench-data.npz --epochs 3 --threads 2
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import time
import zipfile

import numpy as np
import torch
from torch import nn

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)


def load_cifar_two_classes(path: str, n: int, classes=("automobile", "bird")) -> tuple[np.ndarray, np.ndarray]:
    """The first n // 2 training JPEGs of each class (sorted names) -> (N, 32, 32, 3) float32, labels."""
    from PIL import Image

    xs, ys = [], []
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        for label, cls in enumerate(classes):
            files = sorted(f for f in names if f.startswith(f"cifar10/train/{cls}/") and f.endswith(".jpg"))[: n // 2]
            for f in files:
                xs.append(np.asarray(Image.open(io.BytesIO(z.read(f))).convert("RGB")))
                ys.append(label)
    x = (np.stack(xs).astype(np.float32) / 255.0 - CIFAR_MEAN) / CIFAR_STD
    x /= np.sqrt((x.astype(np.float64) ** 2).reshape(len(x), -1).sum(1)).reshape(-1, 1, 1, 1).astype(np.float32)
    return x, np.asarray(ys, dtype=np.int64)


def make_net(num_classes: int = 2, widths=(32, 64, 128), init_norm: float = 0.01, seed: int = 0) -> nn.Module:
    layers, c = [], 3
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w, affine=False), nn.ReLU()]
        c = w
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * 4 * 4, num_classes, bias=False))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
            p.mul_(init_norm / p.norm())
    return net


def main() -> None:
    p = argparse.ArgumentParser(description="Plain PyTorch epoch time of the paper's convnet (the bench's yardstick).")
    p.add_argument("--data-dir", help="cifar10-jpeg.zip")
    p.add_argument("--data", help="the bench's dataset .npz (instead of --data-dir)")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.data:
        with np.load(a.data) as z:
            x_nhwc, y_np = np.array(z["x_train"])[: a.n], np.array(z["y_train"])[: a.n]
    elif a.data_dir:
        x_nhwc, y_np = load_cifar_two_classes(a.data_dir, a.n)
    else:
        p.error("give --data-dir or --data")
    x = torch.tensor(x_nhwc).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(y_np, dtype=torch.int64)
    torch.manual_seed(a.seed)
    net = make_net(int(y.max()) + 1, seed=a.seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=0.01)
    loss_fn = nn.MSELoss()
    targets = nn.functional.one_hot(y).float()

    wall, cpu, losses, faults = [], [], [], []
    for epoch in range(a.warmup + a.epochs):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        net.train()
        perm = torch.randperm(len(y))
        total, steps = 0.0, 0
        for i in range(0, len(y), a.batch_size):
            idx = perm[i : i + a.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), targets[idx])
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        t1, c1 = time.perf_counter(), time.process_time()
        if epoch >= a.warmup:
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
            losses.append(total / steps)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(json.dumps({"wall": wall, "cpu": cpu, "loss": losses, "faults": faults, "threads": torch.get_num_threads(), "torch": torch.__version__, "n": len(y)}))


if __name__ == "__main__":
    main()
