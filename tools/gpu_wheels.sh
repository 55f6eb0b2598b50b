#!/usr/bin/env bash
# Download, on a machine with network, the wheels tools/gpu_check.sh installs the project from on a
# GPU machine that has Python 3.12, JAX and PyTorch but no TensorFlow and no network.
#
#   tools/gpu_wheels.sh [DIR]        # default DIR: .whl (add "/.whl/" to .git/info/exclude)
#
# What is fetched: the project's core dependencies as pyproject.toml lists them (keras, numpy,
# pandas, seaborn, matplotlib, typer, rich, pydantic, pyyaml, pillow; no TensorFlow: it is the
# `tensorflow` extra) with all their dependencies, plus the build backend `pip install -e .` needs
# (setuptools, wheel), as binary wheels for CPython 3.12 on manylinux x86-64. Then the wheels of what
# JAX and PyTorch themselves require are removed: that machine has JAX and PyTorch, so it has those
# (numpy, scipy, ml_dtypes, opt_einsum; typing_extensions, filelock, sympy, mpmath, networkx,
# jinja2, markupsafe, fsspec). The folder must travel with the working tree (64 MiB in all, the
# repository itself ~5 MiB), so the script prints its size and fails above 56 MiB.
#
# GPU_HAS="pandas matplotlib ..." removes more: packages the target is known to have (an image with
# the scientific Python stack has pandas, matplotlib, seaborn, pillow, h5py, fonttools, ...; pip
# there uses an installed package whenever its version satisfies the requirement). Example:
#   GPU_HAS="pandas matplotlib seaborn pillow h5py fonttools kiwisolver contourpy" tools/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-.whl}"
PYVER="${GPU_PYTHON_VERSION:-3.12}"
LIMIT_MIB="${GPU_WHEELS_LIMIT_MIB:-56}"
mkdir -p "$DIR"

# The requirement strings, from pyproject.toml (one source of truth for what the project needs).
mapfile -t REQS < <(python3 - <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as fh:
    project = tomllib.load(fh)
frameworks = {"tensorflow", "tensorflow-datasets", "jax", "jaxlib", "torch"}
for req in project["project"]["dependencies"] + project["build-system"]["requires"]:
    name = req.split(";")[0].split("[")[0]
    for op in "<>=!~ ":
        name = name.split(op)[0]
    if name.strip().lower() not in frameworks:
        print(req)
EOF
)
echo "requirements: ${REQS[*]}"

# pip matches manylinux tags exactly: list the ones that machine's glibc accepts.
PLATFORMS=()
for tag in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
    PLATFORMS+=(--platform "$tag")
done
python3 -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp "${PLATFORMS[@]}" -d "$DIR" "${REQS[@]}"

# What JAX and PyTorch require is on that machine already (and a second numpy could only clash).
for name in numpy scipy ml_dtypes opt_einsum typing_extensions filelock sympy mpmath networkx jinja2 markupsafe fsspec ${GPU_HAS:-}; do
    rm -f "$DIR"/"$name"-*.whl "$DIR"/"${name//_/-}"-*.whl
done

ls -1 "$DIR"
size_kib=$(du -sk "$DIR" | cut -f1)
echo "wheels: $(ls -1 "$DIR"/*.whl | wc -l) files, $((size_kib / 1024)) MiB in $DIR"
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "error: $DIR holds more than $LIMIT_MIB MiB; the working tree that travels may hold 64 MiB in all" >&2
    exit 1
fi
