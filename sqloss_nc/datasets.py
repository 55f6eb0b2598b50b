"""The image datasets the tool knows by name (`data.name`): classes, native size, channel statistics.

One table, read by the config validator (the number of classes bounds `data.classes` before
anything is loaded or written) and by `data.py` (which TFDS dataset to load, how to standardize).
It imports nothing heavy, so `config.py` can use it.

The channel statistics are the conventional per-channel mean and standard deviation of the
pixels / 255 over the *training* split (population std over all pixels of all images), as the
neural-collapse and CIFAR literature normalizes. They are conventions, not properties the loader
checks; where they come from:

- `cifar10`: (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616), SPEC §2 (over the 50,000 training
  images; the also-copied std (0.2023, 0.1994, 0.2010) is a different, smaller statistic).
- `cifar100`: (0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762), computed on the training set in
  weiaicunzai/pytorch-cifar100 `conf/global_settings.py` (0.50707…, 0.48654…, 0.44091… /
  0.26733…, 0.25643…, 0.27615…), rounded to 4 digits.
- `mnist`: 0.1307 / 0.3081, pytorch/examples `mnist/main.py`.
- `fashion_mnist`: 0.2860 / 0.3530, the values in common use for the 60,000 training images.
- `svhn_cropped`: (0.4377, 0.4438, 0.4728) / (0.1980, 0.2010, 0.1970), the values in common use for
  the 73,257 `train` images (the `extra` split is not used).
- `stl10`: (0.4467, 0.4398, 0.4066) / (0.2603, 0.2566, 0.2713), the values in common use for the
  5,000 labelled `train` images (the `unlabelled` split is not used).

Example:

```python
DATASETS["mnist"].shape, DATASETS["cifar100"].num_classes  # (28, 28, 1), 100
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DatasetName = Literal["cifar10", "cifar100", "mnist", "fashion_mnist", "svhn_cropped", "stl10"]


@dataclass(frozen=True)
class ImageDataset:
    """What the tool needs to know about one TFDS image classification dataset.

    Args:
        name: the TFDS name (also the `data.name` value).
        num_classes: C, the number of labels (`data.classes` index 0..C-1 in TFDS label order).
        shape: native (H, W, channels) of one image.
        mean: per-channel mean of pixels / 255 over the training split.
        std: per-channel standard deviation of pixels / 255 over the training split.

    Example:

    ```python
    ImageDataset("mnist", 10, (28, 28, 1), (0.1307,), (0.3081,)).channels  # 1
    ```
    """

    name: str
    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return self.shape[-1]


DATASETS: dict[str, ImageDataset] = {
    d.name: d
    for d in (
        ImageDataset("cifar10", 10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        ImageDataset("cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        ImageDataset("mnist", 10, (28, 28, 1), (0.1307,), (0.3081,)),
        ImageDataset("fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,)),
        ImageDataset("svhn_cropped", 10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
        ImageDataset("stl10", 10, (96, 96, 3), (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
    )
}
