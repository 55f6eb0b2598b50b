"""How a claim's evidence is produced: a `Protocol` per claim, scale and role (`sqnc reproduce`).

A protocol is one experiment: a config of this repository, the `--set` overrides and the sweep grid
that shrink or keep it, and the number of SGD steps each run takes (protocols count steps, not
epochs: SPEC §13). The planner (`sqloss_nc.reproduce`) turns it into runs under
`OUT/<experiment>/...`; the claim's rule then reads those runs from the analysis tables by their
experiment name. A claim has, per scale (`cpu`: reduced for a budget on this machine; `paper`: the
source's own protocol, for a GPU), its `evidence` protocols and at least one `control` protocol: a
setting where its prediction must fail, judged by the same rule.

Two protocols with the same experiment name must be the same experiment (same config, overrides,
sweep, steps): the planner runs it once and every claim that names it reads it.

Example:

```python
from sqloss_nc.protocol import Protocol
p = Protocol(
    experiment="fig2_init_wd",
    config="configs/paper/fig2_init_wd.yaml",
    overrides={"data.train_per_class": 500, "optim.lr": 0.05},
    sweep={"model.init_scale": [0.01, 5], "optim.weight_decay": [0.01], "seed": [0, 1]},
    steps=6000,
    rationale="5k steps at eta*lambda = 5e-4 is 30 tau: rho settles; N shrunk 10x, which does not enter tau.",
)
p.n_runs  # 4
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

ROLES = ("evidence", "control")
SCALES = ("cpu", "paper")


@dataclass(frozen=True)
class Protocol:
    """One experiment that a claim's rule reads (or its negative control reads).

    Args:
        experiment: the experiment name its runs get under OUT (set as the config's `name`); the
            claim's rule finds its runs by it.
        config: the base config, a path relative to the repository root.
        overrides: dotted key -> value, applied like `--set` (data sizes, optim, track, ...).
            `optim.epochs` is not set here: the planner derives it from `steps`.
        sweep: dotted key -> values; replaces the config's own `sweep` when given (an empty dict
            keeps the config's sweep; `{"seed": [0]}` is a single run).
        steps: SGD steps per run (epochs = ceil(steps / steps per epoch)).
        rationale: what is kept, what is shrunk, and why the verdict still speaks to the claim.
        role: `evidence` or `control`.
    """

    experiment: str
    config: str
    steps: int
    rationale: str
    overrides: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    role: Literal["evidence", "control"] = "evidence"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Protocol.role must be one of {ROLES}, got {self.role!r}")
        if "optim.epochs" in self.overrides:
            raise ValueError(f"{self.experiment}: a protocol counts steps; set `steps`, not optim.epochs")
        if self.steps <= 0:
            raise ValueError(f"{self.experiment}: steps must be positive")

    @property
    def n_runs(self) -> int:
        """Runs in the sweep grid (1 without a sweep)."""
        return math.prod(len(v) for v in self.sweep.values()) if self.sweep else 1

    def key(self) -> tuple:
        """What makes two protocols the same experiment (for de-duplication in a plan)."""

        def freeze(d: dict) -> tuple:
            return tuple(sorted((k, repr(v)) for k, v in d.items()))

        return (self.experiment, self.config, freeze(self.overrides), freeze(self.sweep), self.steps)
