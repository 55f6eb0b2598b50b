"""`run_bench`: every arm in a fresh process of its own, interleaved over rounds. No framework here.

The parent (this module) makes the data once, starts one worker process per arm (`worker.py
serve`: a Keras arm's process with `KERAS_BACKEND` set to its backend, the PyTorch arm's with no
Keras at all, each with the environment as given: no `OMP_WAIT_POLICY`, each framework's default
threads), lets every worker build its arm, then drives the rounds: in round r it tells each
worker in turn (order rotated by r) to train one epoch and waits for its seconds, so exactly one
arm computes at any moment and the others sleep on their pipe. Warm-up (tracing, XLA compiles)
happens in the untimed first rounds inside each worker and never reaches the timings; frameworks
never share a process, so none runs after another in the same address space. After the rounds
each worker measures its own framework's matmul rate and the tracking breakdown, and
`opts.alone` arms are timed once more, alone, in a fresh process (`worker.py alone`), and so is
the independent plain PyTorch script when `opts.alone` names `torch/plain` (`run_plain_torch`).

Example:

```python
from sqloss_nc.bench import BenchOptions, run_bench
result = run_bench(BenchOptions(n=1000, reps=2, backends=("jax",), torch=False))
result["ratios"]["jax/c / jax/b"]["median"]
```
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from .arms import ArmSpec, arm_specs, bench_config, bench_dataset, save_dataset
from .flops import count_flops
from .options import KERAS_BACKENDS, BenchError, BenchOptions, installed
from .timing import paired_ratio, ratio_of_medians, run_rounds, spread
from .worker import frameworks_loaded

WORKER = Path(__file__).with_name("worker.py")
# `--alone torch/plain`: not an arm of the bench but the independent plain PyTorch script of the
# same experiment, timed alone; a checkout's file (the wheel ships the package only).
PLAIN_TORCH = "torch/plain"
PLAIN_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "plain_torch_epoch.py"
# Variables that change CPU timings (OpenMP spin-waiting and threads, oneDNN kernels, devices,
# glibc malloc's mmap and trim thresholds): recorded, never set by the bench. The malloc ones
# matter to PyTorch: by default glibc hands its per-step activations (MBs each) back to the
# system and faults them in again, unless an earlier free of a larger block (up to 32 MiB)
# raised the threshold; measured (issue 19): plain PyTorch 300k page faults and +20% CPU per
# epoch, gone with MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864. And to
# TensorFlow's step alone (issue 27, an AMD EPYC 2-core machine): its threads' per-thread arenas
# faulted 730k pages per epoch, which those thresholds leave and MALLOC_ARENA_MAX=1 with them
# (or the same as GLIBC_TUNABLES) removes (2.3 -> 1.2 s per epoch; README Benchmark).
TIMING_ENV = (
    "OMP_WAIT_POLICY",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
    "XLA_FLAGS",
    "CUDA_VISIBLE_DEVICES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_ARENA_MAX",
    "GLIBC_TUNABLES",
)


def _worker_env(spec: ArmSpec) -> dict:
    env = dict(os.environ)
    # The workers import the package from where this parent did (a checkout need not be installed).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    if spec.framework in KERAS_BACKENDS:
        env["KERAS_BACKEND"] = spec.framework
    return env


class WorkerProcess:
    """The parent's handle on one arm's process (`worker.py serve`): call it to time an epoch.

    Args:
        spec: the arm. opts: the (resolved) options. data_path: the dataset file.
        log_dir: where the process's stderr goes (`<key>.log`; its tail is quoted on failure).

    Example:

    ```python
    w = WorkerProcess(ArmSpec("torch", "b"), opts, data, logs)
    w.ready()                  # build info: versions, threads, devices
    wall, cpu = w(0)           # one epoch, timed inside the worker
    w.finish(3); w.close()
    ```
    """

    def __init__(self, spec: ArmSpec, opts: BenchOptions, data_path: Path, log_dir: Path):
        self.spec, self.key = spec, spec.key
        self.log_path = Path(log_dir) / f"{spec.key.replace('/', '_')}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (the worker writes to it until close())
        argv = [sys.executable, str(WORKER), "serve", json.dumps(spec.to_dict()), json.dumps(opts.to_dict()), str(data_path)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=_worker_env(spec)
        )
        self.info: dict | None = None
        self.faults: dict[int, int] = {}  # epoch -> its minor page faults in the process

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            raise BenchError(f"{self.key}: its process ended (exit {rc}): {self._log_tail()}")
        msg = json.loads(line)
        if not msg["ok"]:
            raise (
                BenchError(f"{self.key}: {msg['error']}")
                if msg.get("user")
                else RuntimeError(f"{self.key}: {msg['error']} (log: {self.log_path})")
            )
        return msg

    def _send(self, msg: dict) -> dict:
        """One command and its reply; the process runs only meanwhile (stopped again after)."""
        self._signal(signal.SIGCONT)
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            return self._reply()
        finally:
            self._signal(signal.SIGSTOP)

    def _log_tail(self) -> str:
        self._log.flush()
        lines = [ln for ln in Path(self.log_path).read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else "no output"

    def ready(self) -> dict:
        """Wait until the arm is built; its process's environment (versions, threads, devices).
        The process is then stopped (SIGSTOP) until its next epoch."""
        if self.info is None:
            self.info = self._reply()["ready"]
            self._signal(signal.SIGSTOP)
        return self.info

    def _signal(self, sig) -> None:
        # An idle arm must cost nothing while another arm is timed: OpenMP and Eigen worker threads
        # spin-wait after their last task (PyTorch's by default for up to ~200 ms per region),
        # which on a 2-core machine stole half the CPU from the timed arm (measured: PyTorch 1.56 s
        # per epoch in the bench against 0.96 s alone). A stopped process cannot spin.
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def __call__(self, e: int) -> tuple[float, float]:
        msg = self._send({"cmd": "epoch", "e": e})
        self.faults[e] = msg.get("faults")
        return msg["wall"], msg["cpu"]

    def finish(self, reps: int, **extra) -> dict:
        return self._send({"cmd": "finish", "reps": reps, **extra})["extra"]

    def close(self) -> None:
        self._signal(signal.SIGCONT)
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _fresh_process(argv: list[str], env: dict, what: str) -> dict:
    """Run `argv` to its end in a fresh process; the last stdout line, a JSON object, parsed."""
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = [ln for ln in done.stderr.splitlines() if ln.strip()]
        raise BenchError(f"{what}: exit {done.returncode}: {tail[-1] if tail else 'no output'}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_alone(spec: ArmSpec, opts: BenchOptions, data_path: Path) -> dict:
    """The arm alone in a fresh process (`worker.py alone`), a plain loop of warm-up + reps epochs.

    Returns:
        {"epoch_s": spread, "cpu_s": spread, "page_faults_per_epoch", "environment", "frameworks_loaded"}.
    """
    argv = [sys.executable, str(WORKER), "alone", spec.key, "--data", str(data_path), "--seed", str(opts.seed)]
    argv += ["--reps", str(opts.reps), "--epochs-warmup", str(opts.epochs_warmup), "--batch-size", str(opts.batch_size)]
    if opts.threads:
        argv += ["--threads", str(opts.threads)]
    out = _fresh_process(argv, _worker_env(spec), f"{spec.key} alone")
    return {
        "epoch_s": spread(out["wall"]),
        "cpu_s": spread(out["cpu"]),
        "page_faults_per_epoch": _median(out.get("faults")),
        "environment": out["environment"],
        "frameworks_loaded": out["frameworks_loaded"],
    }


def run_plain_torch(opts: BenchOptions, data_path: Path) -> dict:
    """`PLAIN_TORCH`: the independent plain PyTorch script (`tools/plain_torch_epoch.py`: its own
    `nn.Sequential` with `Conv2d(padding=1)`, `MSELoss`, `SGD`, `x[idx]` batches, torch's default
    threads unless `opts.threads`) on the bench's dataset file, alone in a fresh process, warm-up
    + reps epochs. The yardstick of `torch/b` (issue 19).

    Returns:
        {"epoch_s": spread, "cpu_s": spread, "page_faults_per_epoch", "environment", "frameworks_loaded"}.
    """
    argv = [sys.executable, str(PLAIN_SCRIPT), "--data", str(data_path), "--seed", str(opts.seed)]
    argv += ["--epochs", str(opts.reps), "--warmup", str(opts.epochs_warmup), "--batch-size", str(opts.batch_size)]
    if opts.threads:
        argv += ["--threads", str(opts.threads)]
    out = _fresh_process(argv, _worker_env(ArmSpec("torch", "plain")), f"{PLAIN_TORCH} (plain PyTorch)")
    return {
        "epoch_s": spread(out["wall"]),
        "cpu_s": spread(out["cpu"]),
        "page_faults_per_epoch": _median(out.get("faults")),
        "environment": {"framework": "torch", "versions": {"torch": out["torch"]}, "threads": out["threads"], "script": PLAIN_SCRIPT.name},
        "frameworks_loaded": ["torch"],
    }


def _check_request(opts: BenchOptions, specs: list[ArmSpec]) -> None:
    keys = {s.key for s in specs}
    if not specs:
        raise BenchError("nothing to time: no Keras backend installed and no --torch")
    for key in opts.alone:
        if key == PLAIN_TORCH:
            if not installed("torch"):
                raise BenchError(f'--alone {PLAIN_TORCH}: PyTorch is not installed (pip install -e ".[bench]")')
            if not PLAIN_SCRIPT.is_file():
                raise BenchError(f"--alone {PLAIN_TORCH}: the plain PyTorch script {PLAIN_SCRIPT} is not here (it is in a checkout's tools/)")
        elif key not in keys:
            raise BenchError(f"--alone: {key!r} is not an arm of this bench (arms: {', '.join(sorted(keys))}, or {PLAIN_TORCH})")
    if opts.profile and "tensorflow" not in opts.backends:
        raise BenchError("--profile: the kernel profile times TensorFlow's kernels; it needs the tensorflow backend in --backends")


def run_bench(opts: BenchOptions, log=None) -> dict:
    """Time every requested arm, each in its own fresh process, in interleaved rounds.

    Args:
        opts: what to measure (automatic choices are made by `opts.resolved()`).
        log: callable(str) told about each stage (e.g. `console.log`), or None.

    Returns:
        {"schema", "options", "environment", "data", "flops", "arms" (per arm: label, framework,
        kind, runs, epoch_s / cpu_s spreads, per_run_epoch_s, run_epochs_per_s, gflops, matmul,
        environment), "rounds" (each timed round's wall seconds per arm), "ratios" (paired),
        "targets", "tracking" (per (c) arm), "stacking", "alone", "plain_torch" (the (b) arms
        against plain PyTorch alone), "profile", "scaling"}; times
        in seconds, rates in GFLOP/s.

    Example:

    ```python
    result = run_bench(BenchOptions(n=1000, reps=1, epochs_warmup=1, torch=True, alone=("torch/b",)))
    result["alone"]["torch/b"]["in_bench_over_alone"]
    ```
    """
    opts = opts.resolved()
    opts.check()
    specs = arm_specs(opts)
    _check_request(opts, specs)
    say = log or (lambda msg: None)
    cfg = bench_config(opts.batch_size)
    w, r = opts.epochs_warmup, opts.reps
    with tempfile.TemporaryDirectory(prefix="sqnc-bench-") as tmp:
        say(f"data: {opts.n} training images ({'CIFAR-10 from ' + str(opts.data_dir) if opts.data_dir else 'synthetic'})")
        ds = bench_dataset(opts.n, opts.n_test, opts.data_dir, opts.seed)
        data_path = save_dataset(ds, Path(tmp) / "data.npz")
        flops = count_flops(cfg.model.widths, ds.x_train.shape[1:], ds.num_classes)
        flops["train_per_epoch"] = flops["train"] * len(ds.y_train)
        say(f"starting {len(specs)} arm processes: {', '.join(s.key for s in specs)}")
        workers = [WorkerProcess(s, opts, data_path, Path(tmp)) for s in specs]
        try:
            for wk in workers:
                wk.ready()
            say(f"{w + r} rounds of one epoch per arm, the first {w} untimed")
            paired, times = run_rounds(workers, w + r, w)
            extras = {}
            for wk in workers:
                say(f"{wk.key}: matmul rate{' and tracking pieces' if wk.spec.kind == 'c' else ''}")
                primary_b = wk.spec == ArmSpec(opts.backends[0], "b") if opts.backends else False
                extras[wk.key] = wk.finish(
                    r, profile=opts.profile and primary_b, scaling=opts.scaling and primary_b, features=flops["features"]
                )
                extras[wk.key]["page_faults"] = [n for e, n in sorted(wk.faults.items()) if e >= w and n is not None]
        finally:
            for wk in workers:
                wk.close()
        alone = {}
        for key in opts.alone:
            say(f"{key}: alone in a fresh process, {w + r} epochs")
            if key == PLAIN_TORCH:
                alone[key] = run_plain_torch(opts, data_path)
            else:
                alone[key] = run_alone(next(s for s in specs if s.key == key), opts, data_path)
    return assemble(opts, specs, ds, flops, paired, times, {wk.key: wk.info for wk in workers}, extras, alone)


def assemble(
    opts: BenchOptions, specs: list[ArmSpec], ds, flops: dict, paired: list[dict], times: dict, infos: dict, extras: dict, alone: dict
) -> dict:
    """The result dict from the measurements (split from `run_bench` so it is testable alone)."""
    arms: dict[str, dict] = {}
    tracking = {}
    for s in specs:
        t, ex = times[s.key], extras.get(s.key, {})
        wall, cpu = list(t["wall"]), list(t["cpu"])
        arm = {"label": s.label, "framework": s.framework, "kind": s.kind, "runs": s.runs}
        if "tracking" in ex:  # (c) = its fit epoch + the amortized NC / margins epochs
            tk = tracking[s.key] = ex["tracking"]
            arm["fit_epoch_s"] = spread(wall)
            wall = [x + tk["nc_amortized_per_epoch_s"] for x in wall]
            cpu = [x + tk["nc_amortized_per_epoch_cpu_s"] for x in cpu]
            for row in paired:
                row[s.key] += tk["nc_amortized_per_epoch_s"]
        arm["epoch_s"], arm["cpu_s"] = spread(wall), spread(cpu)
        med = arm["epoch_s"]["median"]
        arm["per_run_epoch_s"] = med / s.runs
        arm["run_epochs_per_s"] = s.runs / med
        arm["gflops"] = flops["train_per_epoch"] * s.runs / med / 1e9
        arm["matmul"] = ex.get("matmul")
        arm["page_faults_per_epoch"] = _median(ex.get("page_faults"))
        if "stack_mode" in ex:  # a stacked arm: the mode it trained in (auto's choice) and why
            arm["stack_mode"], arm["stack_mode_note"] = ex["stack_mode"], ex.get("stack_mode_note")
        arm["fraction_of_matmul"] = arm["gflops"] / ex["matmul"]["median"] if ex.get("matmul") else None
        arm["environment"] = {**(infos.get(s.key) or {}), "frameworks_loaded": ex.get("frameworks_loaded")}
        arms[s.key] = arm
    for key, a in alone.items():
        if key in arms:
            a["in_bench_epoch_s"] = arms[key]["epoch_s"]["median"]
            a["in_bench_over_alone"] = a["in_bench_epoch_s"] / a["epoch_s"]["median"]
    profile = next((ex["profile"] for ex in extras.values() if "profile" in ex), None)
    scaling = next((ex["scaling"] for ex in extras.values() if "scaling" in ex), None)
    result = {
        "schema": 2,
        "options": opts.to_dict(),
        "environment": {
            "sqloss_nc": _version(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": _cpu_name(),
            "cores": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "parent_frameworks_loaded": frameworks_loaded(),
            "env": {k: os.environ.get(k) for k in TIMING_ENV},
        },
        "data": {
            "n_train": len(ds.y_train),
            "n_test": len(ds.y_test),
            "source": "folder" if opts.data_dir else "synthetic",
            "classes": ds.class_names,
        },
        "flops": flops,
        "arms": arms,
        "rounds": paired,
        "tracking": tracking,
        "stacking": stacking_table(arms),
        "alone": alone,
        "plain_torch": plain_torch_table(arms, alone),
        "profile": profile,
        "scaling": scaling,
    }
    result["ratios"] = ratios(result)
    result["floors"] = tracking_floors(result)
    result["targets"] = targets(result)
    return result


def tracking_floors(result: dict) -> dict:
    """What SPEC's per-epoch tracking must cost at least, as floors of c/b per (c) arm: one
    inference pass over the training and the test set each epoch. "flops": at the training step's
    own efficiency (inference FLOPs × (N + N_test) against training FLOPs × N); "measured": those
    passes at their measured speed in that arm's process, against its (b) epoch."""
    f, d, arms = result["flops"], result["data"], result["arms"]
    by_flops = 1.0 + f["inference"] * (d["n_train"] + d["n_test"]) / (f["train"] * d["n_train"])
    out = {}
    for key, tk in (result.get("tracking") or {}).items():
        b = arms.get(key[: -len("/c")] + "/b")
        bd = tk["breakdown"]
        passes = bd["predict_train_s"]["median"] + bd["predict_test_s"]["median"]
        out[key] = {"flops": by_flops, "measured": 1.0 + passes / b["epoch_s"]["median"] if b else None}
    return out


def ratio_pairs(arms: dict) -> list[tuple[str, str]]:
    """(numerator, denominator) arm keys of every ratio reported: within each Keras backend c/b,
    a/b, b/(b+variant), stack<K>/b; across frameworks (b, c against PyTorch; JAX against TensorFlow)."""
    pairs = []
    keras = [b for b in KERAS_BACKENDS if f"{b}/b" in arms]
    for b in keras:
        pairs += [(f"{b}/{k}", f"{b}/b") for k in ("c", "a") if f"{b}/{k}" in arms]
        pairs += [(f"{b}/b", k) for k in arms if k.startswith(f"{b}/b+")]
        pairs += [(k, f"{b}/b") for k in arms if k.startswith(f"{b}/stack")]
        if "torch/b" in arms:
            pairs += [(f"{b}/b", "torch/b"), (f"{b}/c", "torch/b"), (f"{b}/c", "torch/c")]
    if len(keras) == 2:
        pairs += [(f"{keras[1]}/{k}", f"{keras[0]}/{k}") for k in ("b", "c")]
    if "torch/c" in arms and "torch/b" in arms:
        pairs.append(("torch/c", "torch/b"))
    return [(n, d) for n, d in pairs if n in arms and d in arms]


def ratios(result: dict) -> dict:
    """Every `ratio_pairs` ratio of per-run epoch times: "wall" is the paired `spread` over the
    rounds (its median is the reported ratio), "cpu" the ratio of the medians of process CPU time.

    A stacked arm's epoch trains K runs, so its time is divided by K: stack<K>/b < 1 means
    stacking trains a run-epoch faster than one run alone.
    """
    arms, rounds = result["arms"], result["rounds"]
    out = {}
    for num, den in ratio_pairs(arms):
        kn, kd = arms[num]["runs"], arms[den]["runs"]
        per_run = [{num: row[num] / kn, den: row[den] / kd} for row in rounds if num in row and den in row]
        cpu = ratio_of_medians([v / kn for v in arms[num]["cpu_s"]["values"]], [v / kd for v in arms[den]["cpu_s"]["values"]])
        out[f"{num} / {den}"] = {"num": num, "den": den, **paired_ratio(per_run, num, den), "cpu": cpu}
    return out


def targets(result: dict) -> list[dict]:
    """The issues' targets, on the first Keras backend B: B/c ≤ 1.10·B/b (tracking costs at most
    10%), B/a ≥ 1.30·B/b, B/c ≤ torch/b (with tracking at least as fast as PyTorch without), (b)'s
    effective rate ≥ 75% of its framework's matmul rate, an arm timed alone (`--alone`)
    within 15% of its time in the bench, and `torch/b` within 10% of plain PyTorch alone
    (`--alone torch/plain`).

    Returns:
        [{"name", "what", "value", "op", "threshold", "pass"}]; value and pass None when the arms
        were not measured.
    """
    arms, r = result["arms"], result["ratios"]
    b = next((k for k in KERAS_BACKENDS if f"{k}/b" in arms), None)

    def ratio(name):
        return r[name]["median"] if name in r else None

    out = []
    if b is not None:
        out += [
            _target(f"{b}/c / {b}/b", "tracking overhead: (c) at most 10% over (b)", ratio(f"{b}/c / {b}/b"), "<=", 1.10),
            _target(f"{b}/a / {b}/b", "(b) at least 1.3x faster than plain Keras fit (a)", ratio(f"{b}/a / {b}/b"), ">=", 1.30),
            _target(f"{b}/c / torch/b", "project with tracking at least as fast as PyTorch", ratio(f"{b}/c / torch/b"), "<=", 1.00),
            _target(
                f"{b}/b rate / matmul",
                "effective training rate >= 75% of the matmul rate",
                arms[f"{b}/b"]["fraction_of_matmul"],
                ">=",
                0.75,
            ),
        ]
    for key, a in result.get("alone", {}).items():
        if "in_bench_over_alone" in a:
            out.append(
                _target(f"{key} bench / alone", "an arm in the bench within 15% of the same code alone", a["in_bench_over_alone"], "<=", 1.15)
            )
    plain = {row["arm"]: row["over_plain"] for row in (result.get("plain_torch") or {}).get("rows", [])}
    if "torch/b" in plain:
        out.append(_target("torch/b / plain PyTorch", "the bench's PyTorch arm within 10% of plain PyTorch alone", plain["torch/b"], "<=", 1.10))
    return out


def plain_torch_table(arms: dict, alone: dict) -> dict:
    """The (b) arms and `torch/b` alone against plain PyTorch alone (`--alone torch/plain`):
    {"epoch_s": plain's median, "rows": [{"arm", "epoch_s", "over_plain"}]}, or {} without it.
    The ratios are of medians of processes run at different times (unpaired): on a shared machine
    read them with the min–max of each side."""
    if PLAIN_TORCH not in alone:
        return {}
    plain = alone[PLAIN_TORCH]["epoch_s"]["median"]
    rows = [(k, a["epoch_s"]["median"]) for k, a in arms.items() if a["kind"] == "b"]
    if "torch/b" in alone:
        rows.append(("torch/b alone", alone["torch/b"]["epoch_s"]["median"]))
    return {"epoch_s": plain, "rows": [{"arm": k, "epoch_s": v, "over_plain": v / plain} for k, v in rows]}


def _target(name: str, what: str, value, op: str, threshold: float) -> dict:
    ok = None if value is None else bool(value <= threshold if op == "<=" else value >= threshold)
    return {"name": name, "what": what, "value": value, "op": op, "threshold": threshold, "pass": ok}


def stacking_table(arms: dict) -> dict:
    """Per backend with stacked arms: one row per K (K = 1 is that backend's (b)): epoch seconds,
    per-run epoch seconds, sweep throughput (run-epochs per second), and speed-up over K = 1."""
    out = {}
    for backend in KERAS_BACKENDS:
        rows = [a for a in arms.values() if a["framework"] == backend and (a["kind"].startswith("stack") or a["kind"] == "b")]
        if not any(a["kind"].startswith("stack") for a in rows):
            continue
        base = arms.get(f"{backend}/b")
        out[backend] = [
            {
                "k": a["runs"],
                "arm": f"{backend}/{a['kind']}",
                "epoch_s": a["epoch_s"]["median"],
                "per_run_epoch_s": a["per_run_epoch_s"],
                "run_epochs_per_s": a["run_epochs_per_s"],
                "speedup_per_run": base["per_run_epoch_s"] / a["per_run_epoch_s"] if base else None,
            }
            for a in sorted(rows, key=lambda a: (a["runs"], a["kind"] != "b"))
        ]
    return out


def _median(values) -> float | None:
    """The median of a list of counts, or None when there are none (older workers, no data)."""
    return spread(values)["median"] if values else None


def _version() -> str:
    try:
        return metadata.version("sqloss-nc")
    except metadata.PackageNotFoundError:
        return "unknown"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
