"""Build the CIFAR-10 sample shipped inside the package (sqloss_nc/assets/cifar10_sample.zip).

The sample is the offline default data source: all 10 classes, the first TRAIN (test: TEST)
images of each class in sorted file-name order, copied byte for byte from the shared JPEG
archive (no re-encoding, so the pixels equal those of a run on the full folder).

    python tools/make_sample.py ../shared/data/cifar10-jpeg.zip sqloss_nc/assets/cifar10_sample.zip
"""

import sys
import zipfile
from collections import defaultdict

TRAIN, TEST = 300, 50


def main(src: str, dst: str) -> None:
    per_split_class = defaultdict(list)
    with zipfile.ZipFile(src) as zin:
        for name in zin.namelist():
            parts = name.split("/")
            # cifar10/<split>/<class>/<file>.jpg
            if len(parts) == 4 and parts[3].endswith(".jpg"):
                per_split_class[(parts[1], parts[2])].append(name)
        with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zout:
            for (split, cls), names in sorted(per_split_class.items()):
                keep = sorted(names)[: TRAIN if split == "train" else TEST]
                for name in keep:
                    info = zipfile.ZipInfo(f"{split}/{cls}/{name.split('/')[-1]}", (2020, 1, 1, 0, 0, 0))
                    zout.writestr(info, zin.read(name))


if __name__ == "__main__":
    main(*sys.argv[1:3])
