"""The adv_lib 0.2.8 baselines (BSD-3, Jérôme Rony): sigma-zero, FMN (L0), StrAttack, VFGA and PDPGD (L0).

Each entry calls the library's public function with its own defaults and our names for its parameters (ASCII for
its Greek letters); the tooltips say what the parameter does in the library's code. adv_lib is imported only when
an attack runs (it imports visdom at import time: see the README, 'Baseline attacks'). adv_lib counts L0 over the
C x H x W values (our metrics.channel_l0), not over pixels. Every function returns the clean input for an image it
does not fool, except StrAttack when no image of the batch is fooled (see _str_attack).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .base import AttackSpec, Param, Value
from .library import library_run
from .measure import goal_reached

SOURCE = "adv_lib 0.2.8"
REQUIRES = ("adv_lib", "visdom")
EXTRA = "baselines"
NORMS = {"inf": float("inf"), "2": 2.0, "1": 1.0}
STEPS = 100_000  # the largest step count offered anywhere


def _sigma_zero(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
                s: Mapping[str, Value]) -> torch.Tensor:
    from adv_lib.attacks import sigma_zero
    return sigma_zero(model, x, y, num_steps=s["num_steps"], η_0=s["eta_0"], σ=s["sigma"], τ_0=s["tau_0"],
                      τ_factor=s["tau_factor"], grad_norm=NORMS[s["grad_norm"]], targeted=targeted)


SIGMA_ZERO = AttackSpec(
    name="sigma_zero", title="sigma-zero", source=SOURCE, norm="l0 (C x H x W values)", targeted=False,
    requires=REQUIRES, extra=EXTRA, run=library_run("sigma-zero", _sigma_zero),
    notes="Untargeted only in adv_lib (a targeted call warns and returns the input, so the registry refuses it). "
          "Adam on the classification margin plus a smooth l0 surrogate, with a moving threshold that zeroes small "
          "values; keeps the smallest adversarial point. One forward and one backward pass per step.",
    params=(
        Param("num_steps", int, 1000, "Optimisation steps; each is one forward and one backward pass", 1, STEPS),
        Param("eta_0", float, 1.0, "Initial Adam step size (cosine-annealed down to a tenth of it)", 0, 1e3,
              low_ok=False),
        Param("sigma", float, 0.001, "Smoothness of the l0 surrogate d^2 / (d^2 + sigma): smaller counts changed "
              "values more sharply, larger gives a smoother loss", 0, 1e3, low_ok=False),
        Param("tau_0", float, 0.3, "Initial threshold: after each step, values of |delta| below it are set to 0",
              0, 1),
        Param("tau_factor", float, 0.01, "Threshold speed: it rises by tau_factor x step size while the image is "
              "adversarial and falls by as much while it is not", 0, 1),
        Param("grad_norm", str, "inf", "Norm the gradient is divided by before the Adam step",
              choices=tuple(NORMS)),
    ))


class _SmallestAdversarial(torch.nn.Module):
    """The model, watched: per image, the first evaluated input that fools it with the fewest changed values."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool) -> None:
        super().__init__()
        self.model, self.x, self.y, self.targeted = model, x, y, targeted
        self.training = False
        self.best = x.clone()
        self.best_l0 = torch.full((len(x),), x[0].numel() + 1, device=x.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        if images.shape == self.x.shape:
            fooled = goal_reached(out.detach().argmax(1), self.y, self.targeted)
            l0 = (images.detach() != self.x).flatten(1).sum(1)
            better = fooled & (l0 < self.best_l0)
            self.best_l0 = torch.where(better, l0, self.best_l0)
            self.best[better] = images.detach()[better]
        return out


def _fmn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
         s: Mapping[str, Value]) -> torch.Tensor:
    from adv_lib.attacks import fmn
    watched = _SmallestAdversarial(model, x, y, targeted)
    try:
        return fmn(watched, x, y, norm=0, targeted=targeted, steps=s["steps"], α_init=s["alpha_init"],
                   α_final=s["alpha_final"], γ_init=s["gamma_init"], γ_final=s["gamma_final"])
    except RuntimeError:
        # Once every image is fooled with eps = 1 value, eps drops to 0 and the L0 projection asks torch.topk for
        # 0 values, which fails. The library's answer is fixed by then (its best point has 1 changed value and
        # only a point with 0 could replace it): the first evaluated fooling point with the fewest values.
        if bool((watched.best_l0 <= 1).all()):
            return watched.best
        raise


FMN = AttackSpec(
    name="fmn", title="FMN (L0)", source=SOURCE, norm="l0 (C x H x W values)", requires=REQUIRES, extra=EXTRA,
    run=library_run("FMN", _fmn),
    notes="Fast Minimum-Norm, L0 version: a normalised gradient step on the margin, then a projection onto the "
          "eps largest values; eps shrinks while adversarial and grows while not. One forward and one backward pass "
          "per step. adv_lib's default of 10 steps is short: give it hundreds. When every image of "
          "the batch is fooled by one value the library fails (torch.topk of 0 values); the result is then the "
          "point it would have returned, taken from the points it evaluated.",
    params=(
        Param("steps", int, 10, "Optimisation steps; each is one forward and one backward pass", 1, STEPS),
        Param("alpha_init", float, 1.0, "Initial step size of the normalised gradient step (cosine-annealed)", 0,
              1e3, low_ok=False),
        Param("alpha_final", float, None, "Final step size after the cosine annealing (empty: alpha_init / 100)",
              0, 1e3, low_ok=False),
        Param("gamma_init", float, 0.05, "Initial relative change of the L0 budget eps per step", 0, 1,
              low_ok=False),
        Param("gamma_final", float, 0.001, "Final relative change of eps, after the cosine annealing", 0, 1,
              low_ok=False),
    ))


def _str_attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
                s: Mapping[str, Value]) -> torch.Tensor:
    from adv_lib.attacks import str_attack
    try:
        return str_attack(model, x, y, targeted=targeted, confidence=s["confidence"],
                          initial_const=s["initial_const"], binary_search_steps=s["binary_search_steps"],
                          max_iterations=s["max_iterations"], ρ=s["rho"], α=s["alpha"], τ=s["tau"], γ=s["gamma"],
                          group_size=s["group_size"], stride=s["stride"], retrain=s["retrain"], σ=s["sigma"],
                          fix_y_step=s["fix_y_step"])
    except IndexError as error:
        # The retrain step takes a percentile of the batch's nonzero perturbation values; with no image fooled
        # there are none and NumPy raises IndexError. Nothing was found, so the library's answer would be the
        # input (its best adversarial points start as the input and change only once an image is fooled).
        if not s["retrain"] or "size 0" not in str(error):
            raise
        return x.clone()


def _str_rules(images: torch.Tensor, s: Mapping[str, Value]) -> None:
    if s["group_size"] > min(images.shape[-2:]):
        raise ValueError(f"group_size ({s['group_size']}) must not exceed the image side ({min(images.shape[-2:])})")


STR_ATTACK = AttackSpec(
    name="str_attack", title="StrAttack", source=SOURCE, norm="l2 + group sparsity (ADMM)", requires=REQUIRES,
    extra=EXTRA, run=library_run("StrAttack", _str_attack), rules=_str_rules,
    notes="Structured attack: ADMM on a C&W margin loss with an l2 term and a group-lasso penalty over "
          "group_size x group_size windows, with a binary search on the loss constant; keeps the adversarial point "
          "of smallest l2. Each iteration is two forward passes and one backward pass; retrain adds a fixed 8 x 400 "
          "forward + backward passes. Not an L0 minimiser: its support is usually far larger than an L0 attack's.",
    params=(
        Param("confidence", float, 0.0, "Margin the adversarial class must win by (larger: farther, surer examples)",
              0, 1e6),
        Param("initial_const", float, 1.0, "Initial weight of the classification loss against the penalties",
              0, 1e10, low_ok=False),
        Param("binary_search_steps", int, 6, "Searches on that weight (each runs max_iterations iterations)",
              1, 1000),
        Param("max_iterations", int, 2000, "ADMM iterations per search step (two forward passes and one backward "
              "pass each)", 1, STEPS),
        Param("rho", float, 1.0, "ADMM penalty: larger converges faster but gives larger perturbations", 0, 1e6,
              low_ok=False),
        Param("alpha", float, 5.0, "Initial learning rate of the z step (it grows with sqrt(iteration))", 0, 1e6,
              low_ok=False),
        Param("tau", float, 2.0, "Weight of the group sparsity penalty", 0, 1e6),
        Param("gamma", float, 1.0, "Weight of the l2 penalty", 0, 1e6),
        Param("group_size", int, 2, "Side of the square pixel groups of the sparsity penalty", 1, 1024),
        Param("stride", int, 2, "Stride of the groups (below group_size: overlapping groups)", 1, 1024),
        Param("retrain", bool, True, "After the search, zero the perturbed values at or below the sigma-th "
              "percentile of their magnitudes and re-optimise the rest (8 x 400 more steps)"),
        Param("sigma", float, 3.0, "Percentile (0-100) of the retrain step's threshold", 0, 100),
        Param("fix_y_step", bool, False, "Sum overlapping groups correctly (the original code does not; only "
              "matters when stride < group_size)"),
    ))


def _vfga(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
          s: Mapping[str, Value]) -> torch.Tensor:
    from adv_lib.attacks import vfga
    return vfga(model, x, y, targeted=targeted, max_iter=s["max_iter"], n_samples=s["n_samples"],
                large_memory=s["large_memory"])


def _float32_only(images: torch.Tensor, s: Mapping[str, Value]) -> None:
    if images.dtype != torch.float32:
        raise ValueError(f"VFGA (adv_lib 0.2.8) works on float32 images only, got {str(images.dtype)[6:]} (it adds "
                         "float32 noise to the images in place)")


VFGA = AttackSpec(
    name="vfga", title="VFGA", source=SOURCE, norm="l0 (C x H x W values), greedy", requires=REQUIRES, extra=EXTRA,
    run=library_run("VFGA", _vfga), rules=_float32_only,
    notes="Voting Folded Gaussian Attack: each iteration changes one more value, picked from the gradient of the "
          "class probability, its size drawn from folded Gaussians (n_samples up and n_samples down), and stops at "
          "the first adversarial point. Per iteration: one forward + backward pass, then n_samples forward passes "
          "(one with large_memory). Random: results depend on torch's seed (gse-attack --seed). float32 only.",
    params=(
        Param("max_iter", int, None, "Most values to change (empty: every C x H x W value, i.e. until fooled)",
              1, 10**9),
        Param("n_samples", int, 10, "Random candidate sizes drawn per direction and iteration", 1, 1000),
        Param("large_memory", bool, False, "Evaluate all candidates in one forward pass (faster for small models, "
              "n_samples times the memory)"),
    ))

PROXIMAL = {"l0": 0, "l2/3": 23, "l1": 1}


def _pdpgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool,
           s: Mapping[str, Value]) -> torch.Tensor:
    from adv_lib.attacks import pdpgd
    return pdpgd(model, x, y, norm=0, targeted=targeted, num_steps=s["num_steps"], random_init=s["random_init"],
                 proximal_operator=PROXIMAL[s["proximal_operator"]], primal_lr=s["primal_lr"],
                 primal_lr_decrease=s["primal_lr_decrease"], dual_ratio_init=s["dual_ratio_init"],
                 dual_lr=s["dual_lr"], dual_lr_decrease=s["dual_lr_decrease"], dual_ema=s["dual_ema"],
                 dual_min_ratio=s["dual_min_ratio"], proximal_steps=s["proximal_steps"],
                 ε_threshold=s["eps_threshold"])


PDPGD = AttackSpec(
    name="pdpgd", title="PDPGD (L0)", source=SOURCE, norm="l0 (C x H x W values)", requires=REQUIRES, extra=EXTRA,
    run=library_run("PDPGD", _pdpgd),
    notes="Primal-dual proximal gradient descent, L0 version: Adam on a softplus margin loss, then a few proximal "
          "Adam steps on the L0 penalty, with a dual variable that trades the two; keeps the adversarial point of "
          "smallest L0. One forward and one backward pass per step. adv_lib's docstring prefers the l2/3 proximal "
          "operator for L0 (the default here is the library's, l0).",
    params=(
        Param("num_steps", int, 500, "Optimisation steps; each is one forward and one backward pass", 2, STEPS),
        Param("random_init", float, 0.0, "Start from uniform noise in [-random_init, random_init] (0: from the "
              "clean image)", 0, 1),
        Param("proximal_operator", str, "l0", "Proximal operator of the sparsity penalty", choices=tuple(PROXIMAL)),
        Param("primal_lr", float, 0.1, "Adam learning rate of the perturbation", 0, 1e3, low_ok=False),
        Param("primal_lr_decrease", float, 0.01, "Factor the learning rate decays to (exponentially) by the last "
              "step", 0, 1, low_ok=False),
        Param("dual_ratio_init", float, 0.01, "Initial ratio of the size weight to the classification weight "
              "(smaller: more weight on fooling)", 0, 1e6, low_ok=False),
        Param("dual_lr", float, 0.1, "Learning rate of the dual variable", 0, 1e3),
        Param("dual_lr_decrease", float, 0.1, "Factor the dual learning rate decays to (linearly) by the last step",
              0, 1),
        Param("dual_ema", float, 0.9, "Exponential moving average of the dual weights (0: none)", 0, 1),
        Param("dual_min_ratio", float, 1e-6, "Bound on the ratio of the two dual weights", 0, 1, low_ok=False),
        Param("proximal_steps", int, 5, "Proximal Adam sub-steps per step", 1, 1000),
        Param("eps_threshold", float, 0.01, "Relative change below which the proximal sub-steps stop", 0, 1),
    ))

SPECS = (SIGMA_ZERO, FMN, STR_ATTACK, VFGA, PDPGD)
