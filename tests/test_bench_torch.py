"""The bench's PyTorch reference: TensorFlow's 'same' padding without a padding op (issue 19).

The expected outputs come from Keras' own `Conv2D(padding="same")` layers, so the mirrored
construction in `torch_reference` is checked against TensorFlow's padding rule itself, for even,
odd and mixed input sizes and for a kernel/stride that needs the explicit-pad fallback.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sqloss_nc.bench import torch_reference as tr  # noqa: E402


def _keras_convnet(input_shape, widths, kernel, stride, num_classes):
    """Conv2D('same', no bias) -> BN without affine -> ReLU, flatten, Dense(no bias): the
    project's convnet layer for layer, built from plain Keras layers for any kernel and stride."""
    import keras

    layers = [keras.Input(input_shape)]
    for w in widths:
        layers += [
            keras.layers.Conv2D(w, kernel, strides=stride, padding="same", use_bias=False),
            keras.layers.BatchNormalization(center=False, scale=False, momentum=0.9, epsilon=1e-5),
            keras.layers.ReLU(),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(num_classes, use_bias=False)]
    return keras.Sequential(layers)


@pytest.mark.parametrize(
    "hw, kernel, stride, mirrored",
    [
        ((32, 32), 3, 2, True),  # the paper's: TensorFlow pads (0, 1), the net runs mirrored
        ((9, 9), 3, 2, False),  # 9, 5, 3: odd at every layer, symmetric padding, nothing to mirror
        ((14, 9), 3, 2, True),  # even height, odd width
        ((10, 12), 4, 2, True),  # kernel 4 at stride 2: pads (1, 1) here, (1, 2) after a 5-wide layer
        ((8, 8), 4, 1, False),  # stride 1, pads (1, 2): no Conv2d padding gives it, F.pad fallback
    ],
)
def test_same_padding_net_computes_keras_function(hw, kernel, stride, mirrored):
    from keras import ops

    widths, c_in, classes = (4, 6, 5), 3, 3
    model = _keras_convnet((*hw, c_in), widths, kernel, stride, classes)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if getattr(layer, "kernel", None) is not None:
            layer.kernel.assign(rng.standard_normal(tuple(layer.kernel.shape)).astype(np.float32))
    net = tr.TorchConvNet(widths, c_in, classes, hw, kernel=kernel, stride=stride)
    assert net.mirrored is mirrored
    if stride > 1:
        assert all(pad is None for pad in net.pads)  # no explicit padding op in the step
    kernels = [ops.convert_to_numpy(layer.kernel) for layer in model.layers if getattr(layer, "kernel", None) is not None]
    with torch.no_grad():
        for w, value in zip(net.kernels(), tr.keras_to_torch_weights(kernels, net.feature_shape, net.mirrored)):
            w.copy_(torch.from_numpy(value))
    for a, b in zip(kernels, tr.torch_to_keras_weights(net)):
        np.testing.assert_array_equal(a, b)  # the layout conversion round-trips exactly

    x = rng.standard_normal((8, *hw, c_in)).astype(np.float32)
    expected = ops.convert_to_numpy(model(x, training=True))  # batch statistics, both sides
    net.train()
    got = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).detach().numpy()
    assert np.abs(expected).max() > 1e-2  # not a vanishing function
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_mirroring_matters():
    """The check above can fail: the unmirrored symmetric net (the authors' `Conv2d(padding=1)`)
    given the same Keras weights computes a different function on 32x32 images."""
    from keras import ops

    model = _keras_convnet((32, 32, 3), (4, 6), 3, 2, 2)
    kernels = [ops.convert_to_numpy(layer.kernel) for layer in model.layers if getattr(layer, "kernel", None) is not None]
    net = tr.TorchConvNet((4, 6), 3, 2, (32, 32), padding="symmetric")
    assert not net.mirrored
    with torch.no_grad():
        for w, value in zip(net.kernels(), tr.keras_to_torch_weights(kernels, net.feature_shape)):
            w.copy_(torch.from_numpy(value))
    x = np.random.default_rng(1).standard_normal((8, 32, 32, 3)).astype(np.float32)
    expected = ops.convert_to_numpy(model(x, training=True))
    net.train()
    got = net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).detach().numpy()
    assert np.abs(got - expected).max() > 1e-2 * np.abs(expected).max()
