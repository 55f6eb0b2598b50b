"""The experiments the claims' protocols run, per scale, defined once so that claims that read the
same runs name the same `Protocol` (the planner runs an experiment once; SPEC §13).

`cpu` protocols are sized for a 2-hour plan on a 2-core CPU with 2 jobs (measured: the paper's BN
convnet trains 8k steps of batch 128 on 1,000 images in about 4.5 min with tracking, ~30 steps/s).
They count steps, not epochs, and where a claim is about an equilibrium they raise η·λ so that τ =
(1 − β)/(ηλ) shrinks to 200 steps (η = 0.01, λ = 0.05, β = 0.9; the paper's η = λ = 0.01 gives
1,000) and the runs live >= 10 τ. It is λ that is raised, not η: the BN convnet at η = 0.05 (and
0.02) diverged within its first two epochs at every init of Fig. 2 (0.01, 1, 5), while η = 0.01,
λ = 0.05 interpolated 1,000 images in 2,000 steps with ρ settled (0.345 at init 0.01, 0.368 at
init 5; measured on this machine). The learning-rate decay of the paper's NC runs is dropped at this
scale: a decay by 10 makes the later steps count a tenth of a τ each. Settings that are compared
have 2 seeds and equal steps. NC is measured on log-spaced epochs only where a claim reads it.

`paper` protocols are the source's own (the configs' headers give the figures they reproduce),
with steps = epochs x steps per epoch of the config, plus the controls the paper did not run.

`role` is set by the claim that uses a protocol (`as_control`); the planner de-duplicates by
`Protocol.key()`, which ignores the role.

Example: `CPU_FIG2.n_runs` (12) and `CPU_FIG2.steps` (3,000: 15 τ at τ = 200 steps).
"""

from __future__ import annotations

from dataclasses import replace

from ..protocol import Protocol

SEEDS2 = [0, 1]
# The binary task (CIFAR-10 automobile vs bird) shrunk to 1,000 + 1,000 images: 8 steps per epoch at
# batch 128. N does not enter τ; it sets how fast the net interpolates and the test error's
# binomial error (~1.3 points at 1,000 test images).
BIN_CPU = {"data.train_per_class": 500, "data.test_per_class": 500, "optim.lr": 0.01, "optim.schedule": "constant"}
WD_CPU = 0.05  # τ = (1 − 0.9)/(0.01 · 0.05) = 200 steps
SMALL_CPU = {"data.train_per_class": 100, "data.test_per_class": 250}  # 200 train images: GD steps are affordable

FIG2 = "configs/paper/fig2_init_wd.yaml"
FIG6 = "configs/paper/fig6_nc_step.yaml"
# `sqnc run` with no config: one run, 10.9 τ, interpolating and collapsing (issue 30), so the claims
# that one weight-decay run can judge read it too.
QUICKSTART = "configs/quickstart.yaml"
FIG11 = "configs/paper/fig11_random_labels.yaml"
EXP = "configs/claims/exp_loss_nc1_batch.yaml"
RANK = "configs/claims/rank_batch_wd.yaml"
RANK_GD = "configs/claims/rank_full_batch.yaml"
NOISE = "configs/claims/sgd_noise.yaml"
RANDOM_NC = "configs/claims/random_labels_nc.yaml"
RESNET_CPU = "configs/nc/resnet18_narrow_cifar10_cpu.yaml"
RESNET_MSE = "configs/nc/resnet18_cifar10_mse.yaml"
RESNET_CE = "configs/nc/resnet18_cifar10_ce.yaml"


def as_control(p: Protocol) -> Protocol:
    """The same experiment, read as a claim's negative control."""
    return replace(p, role="control")


# ----------------------------------------------------------------------------- cpu scale

CPU_FIG2 = Protocol(
    "cpu_fig2",
    FIG2,
    3000,
    "Fig. 2's grid (BN convnet, binary CIFAR-10, square loss, batch 128, β = 0.9) at 3 inits x WD {0.05, 0} x 2 seeds, "
    "on 1,000 images and λ = 0.05 (η = 0.01) so that τ = 200 steps: 3,000 steps are 15 τ (the paper's 1,000 epochs are ~78 τ). "
    "15, not 10: at 2,000 steps (10 τ) the init-5 runs' ρ still moved 6.4%/τ (> the 5% settledness bound) while the three "
    "inits' final ρ were already within 1.08x (measured, sqnc reproduce --claims rho_wd_init --jobs 2, 14.6 min). "
    "The WD-0 runs have no τ; they are compared with the WD runs at the same 3,000 steps.",
    overrides={**BIN_CPU, "track.nc_epochs": "none", "track.margin_epochs": "log"},
    sweep={"model.init_scale": [0.01, 1, 5], "optim.weight_decay": [WD_CPU, 0], "seed": SEEDS2},
)
CPU_FIG2_EARLY = Protocol(
    "cpu_fig2_early",
    FIG2,
    100,
    "cpu_fig2's settings stopped after 100 steps (0.5 τ): far from the equilibrium every equilibrium claim is about; "
    "an equilibrium rule must not come out supported here.",
    overrides={**BIN_CPU, "track.nc_epochs": "none", "track.margin_epochs": [0]},
    sweep={"model.init_scale": [0.01, 5], "optim.weight_decay": [WD_CPU, 0], "seed": [0]},
)
CPU_NC = Protocol(
    "cpu_nc",
    FIG6,
    3000,
    "Fig. 6's NC run (BN convnet, binary CIFAR-10, square loss, init 3 as the paper) on 1,000 images, η = 0.01 constant "
    "(τ = 200 steps at WD 0.05, 400 at 0.025): 3,000 steps are 15 τ and 7.5 τ, enough for the terminal phase to last >= 5 τ. "
    "WD {0.05, 0.025, 0} x 2 seeds: the WD-0 runs are the controls of the NC claims, 0.025 the control of 'WD is necessary'. "
    "NC on log-spaced epochs.",
    overrides={**BIN_CPU, "model.init_scale": 3.0, "track.nc_epochs": "log", "track.nc_test": False, "track.margin_epochs": [0]},
    sweep={"optim.weight_decay": [WD_CPU, WD_CPU / 2, 0], "seed": SEEDS2},
)
CPU_NC_BIAS = Protocol(
    "cpu_nc_bias",
    FIG6,
    3000,
    "cpu_nc at WD 0.05 with a biased classifier: Eq. 35 (<w_c, μ_G> = 1/C) is derived for a bias-free one, so the instrument "
    "check must not pass here.",
    overrides={**BIN_CPU, "model.init_scale": 3.0, "model.bias": True, "track.nc_epochs": "log", "track.nc_test": False, "track.margin_epochs": [0]},
    sweep={"optim.weight_decay": [WD_CPU], "seed": [0]},
)
CPU_NC_GD = Protocol(
    "cpu_nc_gd",
    FIG6,
    2000,
    "Full-batch GD on 200 images of the binary task, BN convnet, square loss, η = 0.01, λ = 0.05: τ = 200 steps, 2,000 steps = 10 τ. "
    "WD {0.05, 0} x 2 seeds; WD 0 is the control (NC claims need WD).",
    overrides={**SMALL_CPU, "optim.lr": 0.01, "optim.schedule": "constant", "optim.full_batch": True, "model.init_scale": 3.0,
               "track.nc_epochs": "log", "track.nc_test": False, "track.margin_epochs": [0]},
    sweep={"optim.weight_decay": [WD_CPU, 0], "seed": SEEDS2},
)
CPU_EXP = Protocol(
    "cpu_exp_batch",
    EXP,
    3000,
    "J.2's comparison (convnet without normalization, scalar head, exponential loss, init 5) on 200 images: batch 16 "
    "against full-batch GD at the same 3,000 steps (231 and 3,000 epochs), 2 seeds. Not an equilibrium claim: matched steps.",
    overrides={**SMALL_CPU, "track.nc_epochs": "log", "track.margin_epochs": [0]},
    sweep={"optim.full_batch": [False, True], "seed": SEEDS2},
)
CPU_EXP_SQUARE = Protocol(
    "cpu_exp_batch_square",
    EXP,
    3000,
    "cpu_exp_batch with the square loss: J.2 predicts NC under GD as well as SGD for it, so 'SGD's NC1 far below GD's' must fail.",
    overrides={**SMALL_CPU, "loss.kind": "square", "track.nc_epochs": "log", "track.margin_epochs": [0]},
    sweep={"optim.full_batch": [False, True], "seed": SEEDS2},
)
CPU_RANK = Protocol(
    "cpu_rank",
    RANK,
    3000,
    "The rank grid (BN MLP on a 10-class Gaussian mixture, 2,000 samples, η = 0.05): batch {16, 128} x WD {0, 0.01} x 2 seeds "
    "at 3,000 steps each (τ = 200 steps at WD 0.01: 15 τ); the full-batch point is cpu_rank_gd at the same steps.",
    overrides={"track.nc_epochs": "log", "track.margin_epochs": [0]},
    sweep={"optim.batch_size": [16, 128], "optim.weight_decay": [0.0, 0.01], "seed": SEEDS2},
)
CPU_RANK_GD = Protocol(
    "cpu_rank_gd",
    RANK_GD,
    3000,
    "The full-batch (batch = N) point of cpu_rank at the same 3,000 steps.",
    overrides={"track.nc_epochs": "log", "track.margin_epochs": [0]},
    sweep={"optim.weight_decay": [0.0, 0.01], "seed": SEEDS2},
)
CPU_RANK_TINY = Protocol(
    "cpu_rank_tinywd",
    RANK,
    3000,
    "cpu_rank with the weight decay 1e-5 (0.015 τ in 3,000 steps): the 'WD lowers the rank' part must fail.",
    overrides={"track.nc_epochs": "log", "track.margin_epochs": [0]},
    sweep={"optim.batch_size": [16, 128], "optim.weight_decay": [0.0, 1e-5], "seed": [0]},
)
_NOISE_NET = {**SMALL_CPU, "model.normalization": "none", "model.init_scale": 5.0, "optim.weight_decay": 0.0005, "optim.lr": 0.01,
              "track.nc_epochs": "none", "track.margin_epochs": [0]}
CPU_NOISE = Protocol(
    "cpu_sgd_noise",
    NOISE,
    3000,
    "SGD (batch 32) against full-batch GD at the same 3,000 steps on a convnet without normalization (with BN + WD the "
    "gradient is orthogonal to W and GD does not stop either), init 5 per layer as the exponential-loss config, 200 images, 2 seeds.",
    overrides=_NOISE_NET,
    sweep={"optim.full_batch": [False, True], "seed": SEEDS2},
)
CPU_NOISE_CONTROL = Protocol(
    "cpu_sgd_noise_control",
    NOISE,
    3000,
    "cpu_sgd_noise where the 'minibatch' run uses batch 200 = N: no sampling noise, so 'SGD's update stays above GD's' must fail.",
    overrides={**_NOISE_NET, "optim.batch_size": 200},
    sweep={"optim.full_batch": [False, True], "seed": [0]},
)
CPU_RANDOM = Protocol(
    "cpu_random_labels",
    FIG11,
    3000,
    "Figs. 11, 13's BN convnet on 200 images (so it can interpolate random labels), batch 32, η = 0.01, λ = 0.05 "
    "(τ = 200 steps, 3,000 steps = 15 τ), label noise {0, 0.25, 0.5, 0.75, 1} x 2 seeds, NC on log-spaced epochs.",
    overrides={**SMALL_CPU, "optim.lr": 0.01, "optim.weight_decay": WD_CPU, "optim.batch_size": 32, "track.nc_epochs": "log", "track.margin_epochs": [0]},
    sweep={"data.label_noise": [0.0, 0.25, 0.5, 0.75, 1.0], "seed": SEEDS2},
)
CPU_RANDOM_SMALL = Protocol(
    "cpu_random_labels_small",
    FIG11,
    3000,
    "cpu_random_labels on a convnet of widths [2, 2, 2], too small to interpolate random labels: the random-label claims must fail.",
    overrides={**SMALL_CPU, "optim.lr": 0.01, "optim.weight_decay": WD_CPU, "optim.batch_size": 32, "model.widths": [2, 2, 2], "track.nc_epochs": "log", "track.margin_epochs": [0]},
    sweep={"data.label_noise": [0.0, 0.25, 0.5, 0.75, 1.0], "seed": [0]},
)
_RESNET = {"data.train_per_class": 100, "data.test_per_class": 100, "optim.lr": 0.01, "optim.weight_decay": 0.01, "optim.schedule": "constant",
           "track.nc_epochs": "log", "track.nc_test": False, "track.margin_epochs": [0]}
CPU_RESNET = Protocol(
    "cpu_resnet_mse",
    RESNET_CPU,
    6000,
    "The narrow ResNet-18 (width 1/8) on all 10 CIFAR-10 classes, 1,000 images, square loss, η = 0.01, WD 0.01 "
    "(τ = 1,000 steps; 6,000 steps = 6 τ, so the terminal phase can last the 5 τ a 'not supported' needs): NC and the "
    "MSE decomposition on log-spaced epochs, judged in the terminal phase. One seed: the rule compares no settings.",
    overrides=_RESNET,
    sweep={"seed": [0]},
)
CPU_RESNET_CE = Protocol(
    "cpu_resnet_ce",
    RESNET_CPU,
    6000,
    "cpu_resnet_mse with cross-entropy: L_⊥ is a square-loss quantity, so the MSE rule must not pass here.",
    overrides={**_RESNET, "loss.kind": "cross_entropy"},
    sweep={"seed": [0]},
)
CPU_LAGRANGE = Protocol(
    "cpu_lagrange",
    FIG2,
    2000,
    "The toy model the theory is about: cpu_fig2 with Lagrange normalization (layers compute with V/||V||, ρ explicit), "
    "inits {0.5, 1.5} (ρ(0) = init^L), WD {0.05, 0} x 2 seeds, η = 0.01 (τ = 200 steps, 10 τ).",
    overrides={**BIN_CPU, "model.normalization": "lagrange", "track.nc_epochs": "none", "track.margin_epochs": [0]},
    sweep={"model.init_scale": [0.5, 1.5], "optim.weight_decay": [WD_CPU, 0], "seed": SEEDS2},
)

# ----------------------------------------------------------------------------- paper scale

_PAPER_SEEDS = list(range(10))
PAPER_FIG2 = Protocol(
    "fig2_init_wd", FIG2, 79_000,
    "Fig. 2 as published: 3 inits x WD {0.01, 0} x 10 seeds, 1,000 epochs on 10,000 images (79 steps per epoch): ~79 τ at η = λ = 0.01.",
    sweep={"model.init_scale": [0.01, 1, 5], "optim.weight_decay": [0.01, 0], "seed": _PAPER_SEEDS},
)
PAPER_FIG2_EARLY = Protocol(
    "paper_fig2_early", FIG2, 400,
    "Fig. 2's settings stopped after 400 steps (0.4 τ): the equilibrium controls.",
    sweep={"model.init_scale": [0.01, 5], "optim.weight_decay": [0.01, 0], "seed": [0, 1]},
)
PAPER_FIG3 = Protocol(
    "fig3_margins", "configs/paper/fig3_margins.yaml", 79_000, "Fig. 3 as published: 7 inits x WD {0.01, 0} x 10 seeds, 1,000 epochs.",
    sweep={"model.init_scale": [0.01, 0.1, 0.5, 1, 3, 5, 10], "optim.weight_decay": [0.01, 0], "seed": _PAPER_SEEDS},
)
PAPER_FIG6 = Protocol(
    "fig6_nc_step", FIG6, 27_650,
    "Fig. 6 as published: 350 epochs on 10,000 images with lr / 10 at 1/3 and 2/3 (Papyan et al.'s schedule; the paper does not give it), init 3.",
    sweep={"seed": [0, 1]},
)
PAPER_FIG6_NOWD = Protocol("paper_fig6_nowd", FIG6, 27_650, "Fig. 6 without weight decay (the NC claims' control).", overrides={"optim.weight_decay": 0.0}, sweep={"seed": [0, 1]})
PAPER_FIG6_HALFWD = Protocol("paper_fig6_halfwd", FIG6, 27_650, "Fig. 6 at WD 0.005 (the control of 'WD is necessary').", overrides={"optim.weight_decay": 0.005}, sweep={"seed": [0, 1]})
PAPER_FIG6_BIAS = Protocol("paper_fig6_bias", FIG6, 27_650, "Fig. 6 with a biased classifier (Eq. 35's control).", overrides={"model.bias": True})
PAPER_NC_GD = Protocol(
    "paper_nc_gd", FIG6, 27_650,
    "Fig. 6's net trained by full-batch GD on the 10,000 images for as many steps as the SGD run, WD {0.01, 0} x 2 seeds.",
    overrides={"optim.full_batch": True},
    sweep={"optim.weight_decay": [0.01, 0], "seed": [0, 1]},
)
PAPER_FIG11 = Protocol(
    "fig11_random_labels", FIG11, 79_000, "Figs. 11, 13 as published: 5 noise levels x 10 seeds, 1,000 epochs.",
    sweep={"data.label_noise": [0.2, 0.4, 0.6, 0.8, 1.0], "seed": _PAPER_SEEDS},
)
PAPER_FIG11_SMALL = Protocol(
    "paper_fig11_small", FIG11, 79_000, "Fig. 11 on a convnet of widths [2, 2, 2], too small to interpolate random labels.",
    overrides={"model.widths": [2, 2, 2]}, sweep={"data.label_noise": [0.2, 0.6, 1.0], "seed": [0]},
)
PAPER_RANDOM_NC = Protocol(
    "random_labels_nc", RANDOM_NC, 6_400,
    "The random-label NC prediction (the paper has no run): 4 classes, 1,000 images, 400 epochs (16 steps each), noise {0, 0.5, 1}.",
    sweep={"data.label_noise": [0.0, 0.5, 1.0], "seed": [0, 1]},
)
PAPER_EXP = Protocol("exp_loss_nc1_batch", EXP, 9_600, "J.2's conjecture (no experiment in the paper): batch 16 vs GD at 9,600 steps each, 2 seeds.",
                     sweep={"optim.full_batch": [False, True], "seed": [0, 1]})
PAPER_EXP_SQUARE = Protocol("paper_exp_batch_square", EXP, 9_600, "exp_loss_nc1_batch with the square loss (the control).",
                            overrides={"loss.kind": "square"}, sweep={"optim.full_batch": [False, True], "seed": [0, 1]})
PAPER_RANK = Protocol("rank_batch_wd", RANK, 30_000, "The journal version's grid: batch {16, 32, 128, 512} x WD {0, 5e-4, 1e-2}, 30,000 steps each.",
                      sweep={"optim.batch_size": [16, 32, 128, 512], "optim.weight_decay": [0.0, 0.0005, 0.01], "seed": [0, 1]})
PAPER_RANK_GD = Protocol("rank_full_batch", RANK_GD, 30_000, "Its full-batch point at the same steps.",
                         sweep={"optim.weight_decay": [0.0, 0.0005, 0.01], "seed": [0, 1]})
PAPER_RANK_TINY = Protocol("paper_rank_tinywd", RANK, 30_000, "The rank grid at WD 1e-5 (control).",
                           sweep={"optim.batch_size": [16, 128], "optim.weight_decay": [0.0, 1e-5], "seed": [0, 1]})
_NOISE_PAPER = {"model.normalization": "none", "model.init_scale": 5.0, "optim.weight_decay": 0.0005}
PAPER_NOISE = Protocol("paper_sgd_noise", NOISE, 9_600, "SGD (batch 32) vs GD at 9,600 steps on 1,000 images, convnet without normalization.",
                       overrides=_NOISE_PAPER, sweep={"optim.full_batch": [False, True], "seed": [0, 1]})
PAPER_NOISE_CONTROL = Protocol("paper_sgd_noise_control", NOISE, 9_600, "The same with batch = N (no sampling noise).",
                               overrides={**_NOISE_PAPER, "optim.batch_size": 1000}, sweep={"optim.full_batch": [False, True], "seed": [0]})
PAPER_RESNET = Protocol("resnet18_cifar10_mse", RESNET_MSE, 136_850, "Han et al.'s setting: ResNet-18, CIFAR-10 (50,000 images), MSE, 350 epochs.")
PAPER_RESNET_CE = Protocol("resnet18_cifar10_ce", RESNET_CE, 136_850, "The same with cross-entropy (the control).")
PAPER_LAGRANGE = Protocol(
    "paper_lagrange", FIG2, 79_000, "Fig. 2's grid under Lagrange normalization (the toy model), inits {0.5, 1.5} x WD {0.01, 0} x 10 seeds.",
    overrides={"model.normalization": "lagrange"}, sweep={"model.init_scale": [0.5, 1.5], "optim.weight_decay": [0.01, 0], "seed": _PAPER_SEEDS},
)
