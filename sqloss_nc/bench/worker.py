"""The fresh process of one bench arm: `python <path>/worker.py serve|alone ...`.

Every arm runs in a process of its own, started by the parent (`runner.py`) and importing only
the arm's framework: a Keras arm's process sets `KERAS_BACKEND` and imports `sqloss_nc` as usual;
the PyTorch arm's process imports `sqloss_nc` *bare* (`bare_package`: the package's submodules
without its `__init__`, which would import Keras and with it TensorFlow or JAX), and so does the
parent. That is why this file is started by its path and imports nothing but the standard
library at its top.

Modes:

- `serve SPEC OPTIONS DATA`: build the arm (`arms.build_arm`) on the dataset file DATA, say
  `ready`, then answer one JSON line per command read from stdin: `{"cmd": "epoch", "e": e}` ->
  `{"ok": true, "wall": s, "cpu": s, "faults": n}` (one timed epoch, its minor page faults), `{"cmd": "finish", "reps": r, ...}` ->
  `{"ok": true, "extra": {...}}` (tracking breakdown, matmul rate, frameworks loaded, profile,
  scaling), `{"cmd": "quit"}`. A failure answers `{"ok": false, "error": ..., "user": bool}`.
  The protocol has the process's real stdout to itself: fd 1 is pointed at stderr first, so
  whatever a library prints cannot corrupt it.
- `alone ARM [--n N --reps R --epochs-warmup W --data-dir D | --data FILE --threads T --seed S]`:
  the same arm built the same way, run in a plain loop of W + R epochs with no bench around it;
  prints one JSON line `{"key", "wall": [...], "cpu": [...], "faults": [...], "frameworks_loaded"}` (the first W
  epochs are left out). The reference for "does the bench slow an arm down".

Example (shell):

    python sqloss_nc/bench/worker.py alone torch/b --n 10000 --reps 5 --data-dir cifar10-jpeg.zip
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

FRAMEWORKS = ("tensorflow", "jax", "torch")


def bare_package(name: str = "sqloss_nc"):
    """Make `name` importable without running its `__init__` (if it is not imported yet).

    `import sqloss_nc.x` first runs `sqloss_nc/__init__.py`, which registers the Keras custom
    objects and so imports Keras and its backend framework. The bench's parent and its PyTorch
    process need only framework-free submodules (config, data, measures, the bench's own), so
    they register an empty module object with the package's search path instead.

    Example: `bare_package(); import sqloss_nc.bench.timing` imports no Keras.
    """
    if name not in sys.modules:
        spec = importlib.util.find_spec(name)
        sys.modules[name] = importlib.util.module_from_spec(spec)
    return sys.modules[name]


def frameworks_loaded() -> list[str]:
    """Which of TensorFlow, JAX and PyTorch this process has imported."""
    return [m for m in FRAMEWORKS if sys.modules.get(m) is not None]


def page_faults() -> int:
    """Minor page faults of this process so far. An epoch's count shows memory handed back to
    the system and faulted in again: glibc malloc's doing, with its default thresholds, for
    PyTorch's per-step activations (issue 19: 300k faults and +20% CPU per epoch)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _import_for(framework: str) -> None:
    """Import what an arm of `framework` needs, and nothing of the other frameworks.

    The others are blocked (`sys.modules[name] = None` makes their import fail): TensorFlow, for
    one, imports JAX whenever it is installed (`tensorflow/lite/python/util.py`, guarded by
    `except ImportError`), which would put two frameworks in the TensorFlow arm's process."""
    for other in FRAMEWORKS:
        if other != framework:
            sys.modules.setdefault(other, None)
    if framework == "torch":
        bare_package()
        return
    os.environ["KERAS_BACKEND"] = framework
    import sqloss_nc  # noqa: F401  (custom objects, backend choice, startup environment)
    from sqloss_nc import backend

    backend.configure_device()


def _environment(framework: str, opts) -> dict:
    """Versions, devices and thread counts of this arm's framework, as the process sees them."""
    info = {"pid": os.getpid(), "framework": framework}
    if framework == "torch":
        import torch

        if opts.threads:
            torch.set_num_threads(opts.threads)
        info.update(versions={"torch": torch.__version__}, devices="CPU", threads=torch.get_num_threads())
    else:
        import keras

        from sqloss_nc import backend

        if opts.threads:
            backend.limit_threads(opts.threads)
        info.update(versions={"keras": keras.__version__, **backend.versions()}, devices=backend.devices())
        if framework == "tensorflow":
            import tensorflow as tf

            info["threads"] = tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)"
        else:
            info["threads"] = "default (XLA)"
    return info


def _build(spec_d: dict, opts_d: dict, data_path: str | None):
    _import_for(spec_d["framework"])  # first: it decides whether `sqloss_nc` is imported whole or bare
    from sqloss_nc.bench.arms import ArmSpec, bench_config, bench_dataset, build_arm, read_dataset
    from sqloss_nc.bench.options import BenchOptions

    spec, opts = ArmSpec(**spec_d), BenchOptions.from_dict(opts_d)
    info = _environment(spec.framework, opts)
    ds = read_dataset(data_path) if data_path else bench_dataset(opts.n, opts.n_test, opts.data_dir, opts.seed)
    cfg = bench_config(opts.batch_size)
    return spec, opts, cfg, ds, build_arm(spec, ds, cfg, opts), info


def _finish(spec, opts, cfg, ds, arm, msg: dict) -> dict:
    from sqloss_nc.bench.flops import matmul_gflops

    reps = int(msg.get("reps", 1))
    extra = dict(arm.finish(reps))
    if msg.get("profile"):
        from sqloss_nc.bench.flops import profile_kernels, profile_training

        extra["profile"] = profile_training(ds, cfg, reps, opts.seed)
        extra["profile"]["kernels"] = profile_kernels(cfg, ds.x_train.shape[1:], opts.batch_size)
    if msg.get("scaling"):
        from sqloss_nc.bench.scaling import scaling_nc, scaling_train

        extra["scaling"] = {
            "train": scaling_train(cfg, opts.sizes, reps, opts.seed),
            "nc": scaling_nc(opts.sizes, opts.nc_dims, len(ds.y_train), int(msg.get("features", 2048))),
        }
    extra["matmul"] = matmul_gflops(spec.framework, opts.matmul_size, max(reps, 3))
    extra["frameworks_loaded"] = frameworks_loaded()
    return extra


def _error(err: BaseException) -> dict:
    from sqloss_nc.errors import UserError

    return {
        "ok": False,
        "error": f"{type(err).__name__}: {err}" if not isinstance(err, UserError) else str(err),
        "user": isinstance(err, UserError),
    }


def serve(spec_json: str, opts_json: str, data_path: str) -> int:
    """Build the arm, then answer commands on stdin until `quit` or end of input."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints go to stderr; the protocol keeps the real stdout
    sys.stdout = sys.stderr

    def send(msg):
        proto.write(json.dumps(msg) + "\n")

    try:
        spec, opts, cfg, ds, arm, info = _build(json.loads(spec_json), json.loads(opts_json), data_path)
    except Exception as err:  # noqa: BLE001  (reported to the parent, which stops the bench)
        send(_error(err))
        return 1
    send({"ok": True, "ready": info})
    try:
        for line in sys.stdin:
            msg = json.loads(line)
            try:
                if msg["cmd"] == "epoch":
                    f0 = page_faults()
                    wall, cpu = arm.epoch(int(msg["e"]))
                    send({"ok": True, "wall": wall, "cpu": cpu, "faults": page_faults() - f0})
                elif msg["cmd"] == "finish":
                    send({"ok": True, "extra": _finish(spec, opts, cfg, ds, arm, msg)})
                elif msg["cmd"] == "quit":
                    break
                else:
                    send({"ok": False, "error": f"unknown command {msg['cmd']!r}", "user": False})
            except Exception as err:  # noqa: BLE001
                send(_error(err))
    finally:
        arm.close()
    return 0


def alone(argv: list[str]) -> int:
    """`alone ARM ...`: the arm in a plain loop in this fresh process; one JSON line on stdout."""
    p = argparse.ArgumentParser(prog="worker.py alone", description=alone.__doc__)
    p.add_argument("arm", help="framework/kind, e.g. torch/b, tensorflow/c, jax/b")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=2_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--epochs-warmup", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--data", default=None, help="a dataset file written by the bench (instead of --data-dir)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    framework, _, kind = a.arm.partition("/")
    opts_d = {
        "n": a.n,
        "n_test": a.n_test,
        "reps": a.reps,
        "epochs_warmup": a.epochs_warmup,
        "batch_size": a.batch_size,
        "data_dir": a.data_dir,
        "threads": a.threads,
        "seed": a.seed,
    }
    spec, opts, _, _, arm, info = _build({"framework": framework, "kind": kind}, opts_d, a.data)
    wall, cpu, faults = [], [], []
    try:
        for e in range(opts.epochs_warmup + opts.reps):
            f0 = page_faults()
            w, c = arm.epoch(e)
            if e >= opts.epochs_warmup:
                wall.append(w)
                cpu.append(c)
                faults.append(page_faults() - f0)
    finally:
        arm.close()
    out = {"key": spec.key, "wall": wall, "cpu": cpu, "faults": faults, "environment": info, "frameworks_loaded": frameworks_loaded()}
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Started by path, this file's folder heads sys.path: the package's modules must not be
    # importable under their bare names, and the package's root must be.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    root = os.path.dirname(os.path.dirname(here))
    if root not in sys.path:
        sys.path.insert(0, root)
    if argv and argv[0] == "serve" and len(argv) == 4:
        return serve(*argv[1:])
    if argv and argv[0] == "alone":
        return alone(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
