#!/usr/bin/env bash
# The project's GPU check: on a machine with a CUDA GPU, JAX and PyTorch but no TensorFlow and no
# network, install the project from carried wheels, run the quick start and `sqnc bench` on the JAX
# backend, and write one JSON of epoch times and device info. Works on a CPU machine too (JAX on
# the CPU), where the install step is skipped when everything is importable already.
#
#   tools/gpu_check.sh [OUT_DIR]      # default: $OUT if set, else outputs/gpu_check
#
# Environment: WHEELS (the wheel folder, default .whl, made beforehand by tools/gpu_wheels.sh on a
# machine with network), PYTHON (default python3), GPU_CHECK_N (bench images, default 10000: the
# paper's binary CIFAR task), GPU_CHECK_REPS (timed rounds, default 3), GPU_CHECK_STACK (K values of
# the stacked sweep, default 1,2,4,8,16; used only when sqloss_nc.stacking offers the bench's hook),
# GPU_CHECK_SWEEP_PER_CLASS / _EPOCHS / _STACK (the stacked Fig. 2 sweep: images per class, default
# 5000; epochs, default 3; compute.stack, default auto).
#
# Writes OUT_DIR/gpu_check.json (device, versions, quick-start and bench epoch times), the bench's
# own OUT_DIR/bench.json and OUT_DIR/gpu_check.log (everything printed): three files, one folder,
# within what a device run brings back.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-outputs/gpu_check}}"
WHEELS="${WHEELS:-.whl}"
PY="${PYTHON:-python3}"
N="${GPU_CHECK_N:-10000}"
REPS="${GPU_CHECK_REPS:-3}"
STACK="${GPU_CHECK_STACK:-1,2,4,8,16}"
SWEEP_PER_CLASS="${GPU_CHECK_SWEEP_PER_CLASS:-5000}"
SWEEP_EPOCHS="${GPU_CHECK_SWEEP_EPOCHS:-3}"
SWEEP_STACK="${GPU_CHECK_SWEEP_STACK:-auto}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
t_start=$(date +%s)

echo "== 1. install"
if "$PY" - <<'EOF'
import importlib.util, sys
need = ["keras", "pandas", "seaborn", "matplotlib", "typer", "rich", "pydantic", "yaml", "PIL", "jax", "sqloss_nc", "cli"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
sys.exit(1 if missing else 0)
EOF
then
    echo "skipped: the project and its packages are importable already"
    INSTALL="skipped (already importable)"
elif [ -d "$WHEELS" ]; then
    # --no-index: nothing from the network; the build backend (setuptools, wheel) comes from the folder too.
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e .
    INSTALL="pip install --no-index --find-links $WHEELS -e ."
else
    echo "error: the project is not installed and there is no wheel folder $WHEELS (make it with tools/gpu_wheels.sh)" >&2
    exit 2
fi
# The console script lands beside the interpreter, which need not be on PATH.
sqnc() { "$PY" -m cli.main "$@"; }

echo "== 2. device"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi (CPU machine)"
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"

echo "== 3. quick start (KERAS_BACKEND=jax sqnc run, the shipped CIFAR-10 sample)"
t0=$EPOCHREALTIME
sqnc run --no-progress --out "$WORK/quickstart"
QS_WALL=$("$PY" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$EPOCHREALTIME")

echo "== 4. sqnc bench on JAX, N = $N synthetic 32x32x3 images (the paper's size)"
BENCH_ARGS=(--backends jax --no-torch --n "$N" --reps "$REPS" --json "$OUT_DIR/bench.json")
if "$PY" -c "import sqloss_nc.stacking as s, sys; sys.exit(0 if hasattr(s, 'bench_epochs') else 1)" 2>/dev/null; then
    BENCH_ARGS+=(--stack "$STACK")
    echo "stacked sweep: K = $STACK"
else
    echo "stacked sweep: not run (sqloss_nc.stacking has no bench_epochs hook yet)"
fi
sqnc bench "${BENCH_ARGS[@]}"

echo "== 5. the paper's Fig. 2/14-17 sweep (60 runs) stacked, $SWEEP_EPOCHS epochs with full per-epoch tracking"
# Synthetic images at the paper's size (2 x $SWEEP_PER_CLASS train, 32x32x3): the shipped sample is
# too small and the CIFAR zip too large to carry. NC only at epoch 0 here (its cost is reported
# separately); the summary extrapolates 1,000 epochs from the epochs after the first.
sqnc run configs/paper/fig2_init_wd.yaml --no-progress --out "$WORK/sweep" --stack "${SWEEP_STACK}" \
    --set data.source=synthetic --set 'data.synthetic.shape=[32,32,3]' --set data.train_per_class="$SWEEP_PER_CLASS" \
    --set data.test_per_class="$(( SWEEP_PER_CLASS / 5 ))" --set optim.epochs="$SWEEP_EPOCHS" --set 'track.nc_epochs=[0]' \
    --set 'track.margin_epochs=[0]'

echo "== 6. summary"
SWEEP_DIR="$WORK/sweep/fig2_init_wd" QS_DIR="$WORK/quickstart/quickstart/seed=0" QS_WALL="$QS_WALL" INSTALL="$INSTALL" TOTAL_S=$(( $(date +%s) - t_start )) \
OUT_DIR="$OUT_DIR" "$PY" - <<'EOF'
import csv, json, os, platform, subprocess
from pathlib import Path

out = Path(os.environ["OUT_DIR"])
bench = json.loads((out / "bench.json").read_text())
qs = Path(os.environ["QS_DIR"])
status = json.loads((qs / "status.json").read_text())
rows = list(csv.DictReader(open(qs / "metrics.csv")))
wall = float(os.environ["QS_WALL"])
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], capture_output=True, text=True, check=True).stdout.strip()
except (OSError, subprocess.CalledProcessError):
    gpu = None
import jax

summary = {
    "install": os.environ["INSTALL"],
    "device": {"jax_devices": [str(d) for d in jax.devices()], "nvidia_smi": gpu, "status_json_device": (status.get("environment") or {}).get("device"),
               "python": platform.python_version(), "jax": jax.__version__},
    "quickstart": {"epochs": len(rows) - 1, "wall_s": wall, "s_per_epoch_with_tracking": wall / max(len(rows) - 1, 1),
                   "final": {k: rows[-1][k] for k in ("epoch", "train_loss", "train_acc", "test_acc", "rho") if k in rows[-1]},
                   "state": status.get("state")},
    "bench": {"n_train": bench["data"]["n_train"], "reps": bench["options"]["reps"],
              "arms": {k: {"epoch_s": a["epoch_s"]["median"], "min": a["epoch_s"]["min"], "max": a["epoch_s"]["max"],
                           "per_run_epoch_s": a["per_run_epoch_s"], "run_epochs_per_s": a["run_epochs_per_s"],
                           "device": (a.get("environment") or {}).get("devices")} for k, a in bench["arms"].items()},
              "ratios": {k: v["median"] for k, v in bench["ratios"].items()},
              "stacking": bench.get("stacking")},
    "total_s": int(os.environ["TOTAL_S"]),
}
# The stacked sweep: wall seconds per epoch of the whole sweep (all 60 runs, training + per-epoch
# tracking), from the runs' elapsed_s after epoch 1 (compilation and epoch 0's NC excluded).
sweep = Path(os.environ["SWEEP_DIR"])
runs = sorted(sweep.glob("*/metrics.csv"))
if runs:
    per_epoch, stacks = [], set()
    for m in runs:
        r = list(csv.DictReader(open(m)))
        if len(r) >= 3:
            per_epoch.append((float(r[-1]["elapsed_s"]) - float(r[1]["elapsed_s"])) / (len(r) - 2))
        st = json.loads((m.parent / "status.json").read_text())
        stacks.add(len(st.get("stack") or [m.parent.name]))
    sweep_epoch_s = max(per_epoch) if per_epoch else None
    summary["fig2_sweep"] = {"runs": len(runs), "stack_sizes": sorted(stacks), "sweep_epoch_s": sweep_epoch_s,
                             "extrapolated_1000_epochs_min": sweep_epoch_s * 1000 / 60 if sweep_epoch_s else None,
                             "note": "training + per-epoch tracking of every run; the ~20 log-spaced NC epochs come on top"}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF
echo "wrote $OUT_DIR/gpu_check.json"
