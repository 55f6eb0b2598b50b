"""A PyTorch reference of the paper's experiment, for `sqnc bench` (arms `torch/b`, `torch/c`) and cross-checks.

The same network, objective and optimizer as the project (SPEC §3–§4), written the way the
paper's authors would in PyTorch: 3x3 stride-2 convs without bias, `BatchNorm2d(affine=False)`
(momentum 0.1, eps 1e-5), ReLU, flatten, `Linear(bias=False)`; `MSELoss` (mean over B·C) on
one-hot targets; `SGD(lr, momentum, weight_decay)` (coupled weight decay, PyTorch momentum).
Data stay in memory as channels-first tensors; each epoch draws a permutation and gathers
minibatches from it, like the project's `epoch_batches`.

Padding: Keras' `padding="same"` with stride 2 on an even input pads 0 rows/columns before and 1
after (TensorFlow puts the odd pixel at the end), whereas `Conv2d(padding=1)` pads 1 on both
sides, which shifts every window by one pixel. `padding="same"` (the default here) computes
TensorFlow's function without a padding op: mirrored left-right and top-bottom, TensorFlow's
(0, 1) padding is (1, 0), which `Conv2d(padding=1)` does (its extra trailing row is never
reached at stride 2). So the net flips its input images once per batch, runs the authors' plain
`Conv2d(padding=1)` layers on mirrored activations (BatchNorm and ReLU do not care), and keeps
its conv kernels mirrored and its classifier's rows in mirrored order: a fixed relabelling of
the same weights, which SGD, momentum and weight decay do not see (`mirrored`; the Keras weight
conversions undo it). An explicit `F.pad` before each conv did the same with 33x33 inputs, and
cost 22-39% more per step on the CPU (measured, issue 19: oneDNN's convolution backward and the
pad copies). `padding="symmetric"` is the authors' `Conv2d(padding=1)` on unflipped images. All
cost the same FLOPs (the output size is identical).

torch is an optional dependency (`pip install -e ".[bench]"`); this module imports it at import
time, so import it only when torch is wanted. It imports no Keras: the bench's PyTorch process
loads it with `sqloss_nc` bare (`worker.bare_package`), so that process holds PyTorch alone.

Example:

```python
import numpy as np
from sqloss_nc.bench.torch_reference import TorchConvNet, copy_from_keras, make_optimizer, train_epoch
net = TorchConvNet(widths=(32, 64, 128), in_channels=3, num_classes=2, input_hw=(32, 32))
copy_from_keras(net, keras_network)           # same initial weights as the project's model
opt = make_optimizer(net, lr=0.01, momentum=0.9, weight_decay=0.01)
x, y = to_torch_data(x_nhwc, labels)
train_epoch(net, opt, x, y, batch_size=128, generator=torch.Generator().manual_seed(0))
```
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import measures


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of `Conv2d(padding=pad)` along one axis."""
    return (size + 2 * pad - kernel) // stride + 1


class TorchConvNet(nn.Module):
    """The paper's convnet in PyTorch, layer for layer the project's `convnet` (SPEC §3).

    Args:
        widths: output channels of the hidden convs (the paper: 32, 64, 128).
        in_channels: input channels (3 for CIFAR-10).
        num_classes: C, the classifier's outputs.
        input_hw: input height and width (to size the classifier and the 'same' padding).
        batchnorm: insert `BatchNorm2d(affine=False)` after each conv.
        padding: "same" (TensorFlow's placement, weights interchangeable with Keras) or
            "symmetric" (`Conv2d(padding=1)`, the authors' code).
        kernel: conv kernel size; stride: conv stride.

    Attributes:
        mirrored: True when the net runs on mirrored images (see the module's docstring): its
            conv kernels are stored flipped in height and width and its classifier's columns
            follow the mirrored flatten order. `copy_from_keras` / `torch_to_keras_weights`
            account for it; `forward` takes ordinary (unflipped) NCHW images either way.

    Example:

    ```python
    net = TorchConvNet((32, 64, 128), 3, 2, (32, 32))
    net(torch.zeros(4, 3, 32, 32)).shape  # torch.Size([4, 2])
    ```
    """

    def __init__(
        self,
        widths=(32, 64, 128),
        in_channels: int = 3,
        num_classes: int = 2,
        input_hw=(32, 32),
        batchnorm: bool = True,
        padding: str = "same",
        kernel: int = 3,
        stride: int = 2,
    ):
        super().__init__()
        if padding not in ("same", "symmetric"):
            raise ValueError(f"padding must be 'same' or 'symmetric', got {padding!r}")
        # Per layer and axis: TensorFlow's (before, after) pads, the input size, the output size.
        sizes, pads, hw = [], [], tuple(input_hw)
        for _ in widths:
            pads.append(tuple(_same_padding(n, kernel, stride) for n in hw))
            out = tuple(-(-n // stride) for n in hw)
            sizes.append((hw, out))
            hw = out
        if padding == "symmetric":
            conv_pads, self.mirrored, self.pads = [(kernel // 2, kernel // 2)] * len(widths), False, [None] * len(widths)
            hw = tuple(input_hw)
            for _ in widths:
                hw = tuple(_conv_out(n, kernel, stride, kernel // 2) for n in hw)
        else:
            # Mirrored, TensorFlow's (before, after) is (after, before): `Conv2d(padding=after)`
            # gives it when its extra trailing pad adds no output (always at stride >= 2, as
            # after - before <= 1). Symmetric layers are the same mirrored or not.
            fits = all(
                _conv_out(n, kernel, stride, after) == m for ((ns, ms), p) in zip(sizes, pads) for n, m, (_, after) in zip(ns, ms, p)
            )
            self.mirrored = fits and any(before != after for p in pads for before, after in p)
            if fits:
                conv_pads, self.pads = [tuple(after for _, after in p) for p in pads], [None] * len(widths)
            else:  # not expressible as a Conv2d padding: pad explicitly (F.pad takes left, right, top, bottom)
                conv_pads, self.pads = [(0, 0)] * len(widths), [(*p[1], *p[0]) for p in pads]
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for width, conv_pad in zip(widths, conv_pads):
            self.convs.append(nn.Conv2d(c, width, kernel, stride=stride, padding=conv_pad, bias=False))
            self.norms.append(nn.BatchNorm2d(width, affine=False, momentum=0.1, eps=1e-5) if batchnorm else nn.Identity())
            c = width
        self.feature_shape = (c, *hw)
        self.classifier = nn.Linear(c * hw[0] * hw[1], num_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """h(x): the flattened last hidden activation (channels-first order; mirrored in height
        and width when `self.mirrored`, the order the classifier's columns follow)."""
        if self.mirrored:
            x = x.flip((-2, -1))
        for pad, conv, norm in zip(self.pads, self.convs, self.norms):
            if pad is not None:
                x = F.pad(x, pad)
            x = F.relu(norm(conv(x)))
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def kernels(self) -> list[torch.Tensor]:
        """The weight tensors W_1..W_L (classifier last), in this net's layout (see `mirrored`)."""
        return [conv.weight for conv in self.convs] + [self.classifier.weight]


def frobenius_init_(net: TorchConvNet, scale: float, seed: int = 0) -> None:
    """N(0, 1) entries rescaled to Frobenius norm `scale`, for every weight tensor (SPEC §3).

    Args:
        net: the network, changed in place.
        scale: the Frobenius norm of every weight tensor.
        seed: seed of the draws (not the same numbers as Keras' initializer; use
            `copy_from_keras` for identical weights).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for w in net.kernels():
            w.copy_(torch.randn(w.shape, generator=g))
            w.mul_(scale / w.norm())


def keras_to_torch_weights(keras_kernels: list[np.ndarray], feature_shape: tuple[int, int, int], mirrored: bool = False) -> list[np.ndarray]:
    """Keras kernels -> the corresponding PyTorch weights.

    Conv kernels go HWIO -> OIHW. The dense kernel is (p, C) with p in Keras' channels-last
    flatten order (h, w, c); PyTorch flattens channels-first (c, h, w) and stores (C, p), so its
    rows are permuted, then it is transposed. A `mirrored` net (`TorchConvNet.mirrored`) holds
    every conv kernel and the classifier's (h, w) positions flipped in height and width.

    Args:
        keras_kernels: [conv kernels..., dense kernel] as numpy arrays.
        feature_shape: (channels, height, width) of the last conv output.
        mirrored: the target net's `mirrored`.
    """
    c, h, w = feature_shape
    flip = (slice(None, None, -1) if mirrored else slice(None),) * 2
    out = [np.ascontiguousarray(k[flip].transpose(3, 2, 0, 1)) for k in keras_kernels[:-1]]
    dense = keras_kernels[-1].reshape(h, w, c, -1)[flip]
    out.append(np.ascontiguousarray(dense.transpose(2, 0, 1, 3).reshape(c * h * w, -1).T))
    return out


def torch_to_keras_weights(net: TorchConvNet) -> list[np.ndarray]:
    """The inverse of `keras_to_torch_weights`: the network's weights in Keras layout."""
    c, h, w = net.feature_shape
    flip = (slice(None, None, -1) if net.mirrored else slice(None),) * 2
    kernels = [k.detach().cpu().numpy() for k in net.kernels()]
    out = [np.ascontiguousarray(k.transpose(2, 3, 1, 0)[flip]) for k in kernels[:-1]]
    dense = kernels[-1].T.reshape(c, h, w, -1).transpose(1, 2, 0, 3)[flip]
    out.append(np.ascontiguousarray(dense.reshape(c * h * w, -1)))
    return out


def copy_from_keras(net: TorchConvNet, keras_network) -> None:
    """Give `net` the weights of the project's Keras network (same initial point).

    Args:
        net: the PyTorch network, changed in place.
        keras_network: the project's `convnet` (from `sqloss_nc.models.build_network`).
    """
    from keras import ops

    from ..models import weight_layers

    kernels = [ops.convert_to_numpy(layer.kernel) for layer in weight_layers(keras_network)]
    with torch.no_grad():
        for w, value in zip(net.kernels(), keras_to_torch_weights(kernels, net.feature_shape, net.mirrored)):
            if tuple(w.shape) != value.shape:
                raise ValueError(f"weight shape {tuple(w.shape)} != {value.shape} from Keras")
            w.copy_(torch.from_numpy(value))


def make_optimizer(net: nn.Module, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.01) -> torch.optim.SGD:
    """PyTorch SGD with coupled weight decay on every parameter (all are kernels here)."""
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def to_torch_data(x_nhwc: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Channels-last float images + int labels -> contiguous channels-first tensors."""
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(x_nhwc, dtype=np.float32).transpose(0, 3, 1, 2)))
    return x, torch.from_numpy(np.asarray(y, dtype=np.int64))


def train_step(net: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One SGD step on a minibatch (call `net.train()` first); returns the batch loss at the
    weights before the step, as a detached scalar tensor (no host synchronisation per step)."""
    opt.zero_grad(set_to_none=True)
    f = net(xb)
    loss = F.mse_loss(f, F.one_hot(yb, num_classes).to(f.dtype))
    loss.backward()
    opt.step()
    return loss.detach()


def train_epoch(net: nn.Module, opt, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
    """One epoch over a fresh permutation (last batch partial, like `drop_last=False`).

    Returns:
        the mean batch loss (training mode), synchronised once at the end.
    """
    net.train()
    n = len(y)
    num_classes = net.classifier.out_features
    order = torch.randperm(n, generator=generator)
    total = torch.zeros(())
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        total += train_step(net, opt, x.index_select(0, idx), y.index_select(0, idx), num_classes)
    return float(total) / math.ceil(n / batch_size)


def _square_loss(f: np.ndarray, y: np.ndarray) -> float:
    # `losses.np_loss("square", "onehot", ...)` in float64; that module imports Keras, which this
    # process must not (the tests check the two agree).
    f = np.asarray(f, dtype=np.float64)
    return float(np.mean(np.square(f - np.eye(f.shape[1])[y])))


def _accuracy(f: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(f, axis=1) == y))


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Outputs f(x) in inference mode (BatchNorm with moving statistics), as float32 numpy."""
    net.eval()
    return torch.cat([net(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def track(net: TorchConvNet, x_train, y_train, x_test, y_test, weight_decay: float, batch_size: int = 1000) -> dict:
    """The per-epoch tracking the project does, in PyTorch: inference passes over the training
    and test sets, norms, ρ (classifier norm: the BN net is scale invariant below it), losses,
    accuracies and the margin statistics (with the project's float64 `measures`
    functions, so the post-processing cost is identical). No files are written.

    Args:
        net: the network. x_train, y_train, x_test, y_test: tensors (channels-first, int64).
        weight_decay: λ, for the objective.
        batch_size: inference batch size.

    Returns:
        a dict shaped like the project's metrics row (a subset of its columns).
    """
    f_train, f_test = predict(net, x_train, batch_size), predict(net, x_test, batch_size)
    y_tr, y_te = y_train.numpy(), y_test.numpy()
    norms = [measures.frobenius(w.detach().numpy()) for w in net.kernels()]
    rho = norms[-1]
    loss = _square_loss(f_train, y_tr)
    m = measures.margins(f_train, y_tr)
    return {
        "train_loss": loss,
        "train_objective": loss + 0.5 * weight_decay * sum(v * v for v in norms),
        "train_acc": _accuracy(f_train, y_tr),
        "test_loss": _square_loss(f_test, y_te),
        "test_acc": _accuracy(f_test, y_te),
        "rho": rho,
        **measures.margin_stats(m, rho),
    }
