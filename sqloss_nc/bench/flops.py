"""FLOPs and where a step's time goes: the analytic FLOP count of the convnet, a framework's
float32 matmul rate (the reference an epoch's effective GFLOP/s is set against), and the
TensorFlow per-stage / per-kernel profile of one training step (`sqnc bench --profile`).

`count_flops` and `matmul_gflops` run on any framework; the profile uses TensorFlow's own kernels
(`Conv2DBackpropFilter`, ...) and is only offered on the TensorFlow backend.

Example:

```python
from sqloss_nc.bench.flops import count_flops
count_flops()["train"]      # 15,065,088 FLOPs per image, forward + backward, the paper's convnet
```
"""

from __future__ import annotations

import time

import numpy as np

from .timing import spread, timed

FLOP_CONVENTION = (
    "forward conv: 2*H_out*W_out*k^2*C_in*C_out per image, dense: 2*p*C; backward = 2x forward "
    "(gradients w.r.t. weights and inputs) except the first layer, whose input gradient is not "
    "computed (backward = 1x forward); BatchNorm, ReLU, loss and optimizer update not counted"
)


def count_flops(widths=(32, 64, 128), input_shape=(32, 32, 3), num_classes: int = 2, kernel: int = 3, stride: int = 2) -> dict:
    """Analytic FLOPs of the convnet per image (a multiply-add counts 2), see `FLOP_CONVENTION`.

    Args:
        widths: hidden conv widths.
        input_shape: (H, W, C_in) of one image.
        num_classes: C (classifier outputs).
        kernel, stride: conv geometry ('same' padding, so H_out = ceil(H / stride)).

    Returns:
        {"layers": [{"name", "forward", "backward"}...], "forward", "backward", "train",
        "inference", "convention"}; `train` = forward + backward per image.

    Example:

    ```python
    count_flops()["train"]  # 15,065,088 for the paper's convnet on 32x32x3, C = 2
    ```
    """
    h, w, c_in = input_shape
    layers = []
    for k, width in enumerate(widths, start=1):
        h, w = -(-h // stride), -(-w // stride)
        fwd = 2 * h * w * kernel * kernel * c_in * width
        layers.append({"name": f"conv{k}", "forward": fwd})
        c_in = width
    p = h * w * c_in
    layers.append({"name": "classifier", "forward": 2 * p * num_classes})
    for i, layer in enumerate(layers):
        # The first layer's input is the data: only its weight gradient is needed.
        layer["backward"] = layer["forward"] * (1 if i == 0 else 2)
    fwd = sum(layer["forward"] for layer in layers)
    bwd = sum(layer["backward"] for layer in layers)
    return {
        "layers": layers,
        "forward": fwd,
        "backward": bwd,
        "train": fwd + bwd,
        "inference": fwd,
        "features": p,
        "convention": FLOP_CONVENTION,
    }


def matmul_gflops(framework: str, size: int = 2048, reps: int = 5) -> dict:
    """A framework's float32 matmul rate (GFLOP/s of a size x size product), in this process.

    Each arm's process measures its own framework, so an arm's share of the matmul rate compares
    its convolutions with the same library's dense product. One untimed product warms the thread
    pool and caches; each timed one is forced to finish by reading one element back.

    Args:
        framework: "torch", or anything else for the Keras backend's `keras.ops.matmul`.
        size: matrix side.
        reps: timed products.

    Returns:
        `spread` of the rates plus "size".

    Example: `matmul_gflops("jax", 256, 3)["median"]` (GFLOP/s, > 0).
    """
    a, b = np.random.default_rng([size, 7]).standard_normal((2, size, size), dtype=np.float32)
    if framework == "torch":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def product():
            return float((ta @ tb)[0, 0])

    else:
        from keras import ops

        ka, kb = ops.convert_to_tensor(a), ops.convert_to_tensor(b)

        def product():
            return float(ops.convert_to_numpy(ops.matmul(ka, kb)[0, 0]))

    out = spread(2.0 * size**3 / t / 1e9 for t in timed(product, reps)["wall"]["values"])
    out["size"] = size
    return out


def profile_training(ds, cfg, reps: int = 1, seed: int = 0) -> dict:
    """Where one (b) epoch goes on TensorFlow: seconds per epoch of each stage, on pre-built batches.

    - `data`: iterating the epoch's numpy batches alone (permutation + gather);
    - `forward`: the network in training mode;
    - `forward_backward`: the objective and its gradients (`_objective_and_grads`);
    - `train_step`: the full step (gradients, optimizer update, metrics), no `fit` loop;
    - the difference to the (b) fit epoch is `fit`'s own per-step overhead.

    Args:
        ds, cfg, seed: data, config and seed. reps: timed passes per stage (median).

    Returns:
        {stage: spread of seconds per epoch}.
    """
    import tensorflow as tf

    from ..batches import array_batches
    from .arms import project_training

    network, trainer, _ = project_training(cfg, ds, seed)
    bs = cfg.optim.batch_size
    batches = list(array_batches(ds.x_train, ds.y_train, bs, seed, 1, 1))
    fwd = tf.function(lambda x: tf.reduce_sum(network(x, training=True)), reduce_retracing=True, autograph=False)
    # Element 3 of `_objective_and_grads` is the gradient list; reduce it so nothing is pruned.
    grads = tf.function(
        lambda x, y: tf.add_n([tf.reduce_sum(g) for g in trainer._objective_and_grads(x, y)[3]]), reduce_retracing=True, autograph=False
    )
    step = tf.function(lambda x, y: trainer.train_step((x, y))["batch_loss"], reduce_retracing=True, autograph=False)

    def over_batches(fn):
        def run():
            out = None
            for xb, yb in batches:
                out = fn(xb, yb)
            return out.numpy()

        return run

    def data_pass():
        for _ in array_batches(ds.x_train, ds.y_train, bs, seed, 2, 2):
            pass

    stages = {
        "data": data_pass,
        "forward": over_batches(lambda x, y: fwd(x)),
        "forward_backward": over_batches(grads),
        "train_step": over_batches(step),
    }
    # The untimed first call traces both the full and the partial last batch.
    return {name: timed(fn, reps)["wall"] for name, fn in stages.items()}


def profile_kernels(cfg, input_shape=(32, 32, 3), batch_size: int = 128, reps: int = 20) -> list[dict]:
    """Where a training step's time goes, kernel by kernel, at the step's own shapes.

    Each hidden conv layer's three kernels (forward `Conv2D`, weight gradient
    `Conv2DBackpropFilter`, input gradient `Conv2DBackpropInput`; the first layer needs no input
    gradient) and its BatchNorm + ReLU in training mode (forward and backward, as Keras computes
    them) are timed alone, each a compiled function called `reps` times, one thread pool. The conv
    rows carry their GFLOP/s, to set beside the matmul rate: a kernel far below it is where a
    step loses to the matmul peak.

    Args:
        cfg: the config (widths, normalization).
        input_shape: one image's (H, W, C).
        batch_size: the minibatch.
        reps: timed calls per kernel (the median is kept).

    Returns:
        [{"layer", "kernel", "ms", "gflops" (None for BatchNorm/ReLU)}].
    """
    import tensorflow as tf

    def timed_ms(fn, *args):
        f = tf.function(fn, autograph=False)  # plain ops: nothing to convert
        for _ in range(3):
            f(*args)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(*args).numpy()
            times.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(times))

    def bn_relu(h):
        with tf.GradientTape() as tape:
            tape.watch(h)
            mean, var = tf.nn.moments(h, axes=[0, 1, 2])
            out = tf.nn.relu(tf.nn.batch_normalization(h, mean, var, None, None, 1e-5))
            total = tf.reduce_sum(out * out)
        return tape.gradient(total, h)[0, 0, 0, 0]

    rows = []
    h, w, c_in = input_shape
    rng = tf.random.Generator.from_seed(0)
    for k, width in enumerate(cfg.model.widths, start=1):
        ho, wo = -(-h // 2), -(-w // 2)
        x = rng.normal((batch_size, h, w, c_in))
        kernel = rng.normal((3, 3, c_in, width))
        dy = rng.normal((batch_size, ho, wo, width))
        flops = 2.0 * batch_size * ho * wo * 9 * c_in * width
        ops = {
            "forward (Conv2D)": lambda x=x, kernel=kernel: tf.nn.conv2d(x, kernel, 2, "SAME")[0, 0, 0, 0],
            "weight gradient (Conv2DBackpropFilter)": lambda x=x, dy=dy, kernel=kernel: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME"
            )[0, 0, 0, 0],
        }
        if k > 1:
            ops["input gradient (Conv2DBackpropInput)"] = lambda x=x, dy=dy, kernel=kernel: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=kernel, out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME"
            )[0, 0, 0, 0]
        for name, fn in ops.items():
            ms = timed_ms(fn)
            rows.append({"layer": f"conv{k}", "kernel": name, "ms": ms, "gflops": flops / ms / 1e6})
        if cfg.model.normalization == "batchnorm":
            rows.append(
                {
                    "layer": f"norm{k}+relu{k}",
                    "kernel": "BatchNorm + ReLU, forward and backward",
                    "ms": timed_ms(bn_relu, dy),
                    "gflops": None,
                }
            )
        h, w, c_in = ho, wo, width
    return rows
