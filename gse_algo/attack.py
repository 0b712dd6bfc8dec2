"""The GSE attack as a generator (spec section 1), in [0,1] pixel space.

`iterate_gse` yields one item per inner iteration (a full `Snapshot` with trace=True, a `Progress` otherwise) and
leaves the `GSEResult` in `run.result`; `gse_attack` drains it. Differences from the official code that do not
change the iterates beyond floating-point noise:
- the success check of iteration j uses the logits of the forward pass that iteration j+1 needs anyway, and the
  backward pass is skipped when no image is left to iterate;
- every search step starts at delta = 0, so the gradient there (also the one lambda_0 is computed from, spec 1.4)
  is computed once per call and reused by every search step (the model is in eval mode: it is the same number).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator

import numpy as np
import torch

from .lambda_map import adjust_lambda
from .metrics import d20
from .params import GSEParams
from .prox import lambda_zero, regulariser
from .snapshot import GSEResult, Progress, Snapshot, SparseDelta, StepRecord, frozen_array, trace_dtype

FAILURE_MIX = 0.9  # failure: lambda = 0.9 * lb + 0.1 * lambda (spec 1.6)
SIGMA_BOOST = 10.0  # last two steps, images never attacked successfully: sigma x 10 (spec 1.6)
TOP_K = 5


def momentum_weights(n: int) -> list[float]:
    """a_j = t_j / t_{j+1} with t_0 = 1 and t_{j+1} = (1 + sqrt(1 + 4 t_j^2)) / 2 (spec 1.6): 0.618, 0.738, ..."""
    weights, t = [], 1.0
    for _ in range(n):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        weights.append(t / t_next)
        t = t_next
    return weights


def cw_margin(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Carlini-Wagner margin before max(0, .) (spec 1.2): Z_y - max_{j!=y} Z_j, negated when targeted."""
    z_y = logits.gather(1, labels[:, None]).squeeze(1)
    z_other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return z_other - z_y if targeted else z_y - z_other


class _Model:
    """Forward / backward passes on the working batch, counted."""

    def __init__(self, model: torch.nn.Module, targeted: bool, kappa: float) -> None:
        self.model, self.targeted, self.kappa = model, targeted, kappa
        self.n_forward_backward = 0
        self.n_forward = 0

    def forward(self, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at x_adv (graph kept) and the leaf x_adv for a later gradient."""
        leaf = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(leaf)
        return logits, leaf

    def gradient(self, logits: torch.Tensor, labels: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
        """Gradient of sum_b max(0, margin_b + kappa) w.r.t. x_adv, which equals the one w.r.t. delta."""
        with torch.enable_grad():
            loss = torch.clamp(cw_margin(logits, labels, self.targeted) + self.kappa, min=0).sum()
            (grad,) = torch.autograd.grad(loss, leaf)
        self.n_forward_backward += 1
        return grad


class GSERun:
    """Iterate over it for the per-iteration items; `result` holds the GSEResult once it is exhausted."""

    def __init__(self, generator: Iterator) -> None:
        self._generator = generator
        self.result: GSEResult | None = None

    def __iter__(self) -> "GSERun":
        return self

    def __next__(self) -> Snapshot | Progress:
        try:
            return next(self._generator)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None

    def close(self) -> None:
        """Stop the attack at the current iteration boundary."""
        self._generator.close()


def iterate_gse(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targeted: bool = False,
                params: GSEParams | None = None, *, trace: bool = True,
                bounds: tuple[float, float] = (0.0, 1.0)) -> GSERun:
    """Run GSE on a batch of [0,1] images; see the module docstring. labels: true classes, or targets if targeted.

    bounds is the box of the image values: (0, 1) for our [0,1] convention; (-1, 1) with official-unit
    parameters reproduces the official code's [-1,1] set-up (spec section 0).
    """
    params = params or GSEParams()
    check_inputs(images, labels, bounds)
    run = _gse(model, images.detach(), labels.to(images.device).long(), bool(targeted), params, trace, bounds)
    return GSERun(run)


def gse_attack(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targeted: bool = False,
               params: GSEParams | None = None, *, bounds: tuple[float, float] = (0.0, 1.0)) -> GSEResult:
    """Run GSE to the end without a trace and return the GSEResult."""
    run = iterate_gse(model, images, labels, targeted, params, trace=False, bounds=bounds)
    for _ in run:
        pass
    assert run.result is not None
    return run.result


def check_logits(logits: torch.Tensor, where: str = "on the clean images") -> None:
    """ValueError when the model's logits hold NaN or inf: a success read from them would be meaningless."""
    if not bool(torch.isfinite(logits).all()):
        raise ValueError(f"the model gives NaN or infinite logits {where}; the attack is stopped "
                         "(non-finite weights, or an input the model cannot handle)")


def check_targets(clean_pred: torch.Tensor, targets: torch.Tensor) -> None:
    """ValueError for a targeted attack on images the model already puts in their target class: GSE would report
    success with a zero perturbation (spec 1.6 checks success only after an update)."""
    already = (clean_pred.to(targets.device) == targets).nonzero().flatten().tolist()
    if already:
        which = "the image" if len(clean_pred) == 1 else f"image(s) {already}"
        raise ValueError(f"the model already predicts the target class for {which} "
                         f"(class {int(targets[already[0]])}); choose another target")


def check_inputs(images: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float]) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("images must be a [B,C,H,W] tensor")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0,1], got {images.dtype}")
    if images.numel() == 0:
        raise ValueError("images is empty")
    lo, hi = float(images.min()), float(images.max())
    if not (bounds[0] <= lo and hi <= bounds[1]):
        raise ValueError(f"images must lie in [{bounds[0]:g}, {bounds[1]:g}] (found values in [{lo:g}, {hi:g}])")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        raise ValueError("labels must be an integer tensor of class indices")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {list(labels.shape)}")


def _check_model_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """The run's dtype is the images' dtype; a model holding other floating tensors would compute a step in
    another precision (README "Float64"), so it is refused."""
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if tensor.is_floating_point() and tensor.dtype != dtype:
            raise ValueError(f"the images are {str(dtype).removeprefix('torch.')} but the model's {name} is "
                             f"{str(tensor.dtype).removeprefix('torch.')}: convert the model to the images' dtype "
                             "(model.to(dtype) or LoadedModel.to(dtype=...))")


def _gse(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, targeted: bool, p: GSEParams, trace: bool,
         bounds: tuple[float, float]):
    start = time.perf_counter()
    if any(module.training for module in model.modules()):
        raise ValueError("the model must be in eval mode (BatchNorm/Dropout would couple the images: pitfall 14)")
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device != x.device:
        raise ValueError(f"the images are on {x.device} but the model is on {parameter.device}")
    _check_model_dtype(model, x.dtype)
    net = _Model(model, targeted, p.kappa)
    n, c = x.shape[:2]
    logits0, leaf0 = net.forward(x)
    if int(y.max()) >= logits0.shape[1] or int(y.min()) < 0:
        raise ValueError(f"labels must be class indices in [0, {logits0.shape[1] - 1}]")
    check_logits(logits0)
    if targeted:
        check_targets(logits0.argmax(1), y)
    grad0 = net.gradient(logits0, y, leaf0)  # the gradient at delta = 0, shared by lambda_0 and every search step
    logits0 = logits0.detach()
    state = _SearchState(x, lambda_zero(grad0, p.sigma, p.reg), logits0.argmax(1))
    steps: list[StepRecord] = []

    for step in range(p.search_steps):
        lam_b = state.lam.clone()
        sigma_b = torch.full((n,), p.sigma, dtype=x.dtype, device=x.device)
        if step >= p.search_steps - 2:  # spec 1.6: the official test is result == x (never attacked successfully)
            never = (state.latest == x).flatten(1).all(dim=1)
            sigma_b = torch.where(never, sigma_b * SIGMA_BOOST, sigma_b)
        inner = _inner_loop(net, x, y, p, step, lam_b, sigma_b, (logits0, grad0), trace, bounds)
        outcome = yield from inner
        steps.append(state.update(step, outcome, sigma_b, p.search_factor))

    x_adv = state.best
    return GSEResult(
        x_adv=x_adv, delta=x_adv - x, success=frozen_array(state.chosen >= 0), adv_pred=_np(state.best_pred),
        chosen_step=frozen_array(state.chosen.copy()), lambda0=_np(state.lambda0), steps=tuple(steps),
        n_forward_backward=net.n_forward_backward, n_forward=net.n_forward, time_s=time.perf_counter() - start)


class _StepOutcome:
    def __init__(self, x: torch.Tensor) -> None:
        n = x.shape[0]
        self.x_adv = x.clone()  # the first successful iterate per image (x where the step failed)
        self.stop_iteration = torch.full((n,), -1, dtype=torch.long, device=x.device)
        self.pred = torch.zeros(n, dtype=torch.long, device=x.device)


class _SearchState:
    """Outer lambda search per image (spec 1.6): bounds, latest and best success, chosen step."""

    def __init__(self, x: torch.Tensor, lambda0: torch.Tensor, clean_pred: torch.Tensor) -> None:
        n = x.shape[0]
        self.x = x
        self.lambda0 = lambda0
        self.lam = lambda0.clone()
        self.lb = torch.zeros_like(lambda0)
        self.ub = torch.full_like(lambda0, math.inf)
        self.latest = x.clone()  # 'result': the latest success
        self.best = x.clone()  # 'result2': the success with the smallest d_{2,0}
        self.best_d20 = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)
        self.chosen = np.full(n, -1, dtype=np.int64)
        self.best_pred = clean_pred  # the class at 'best' (the clean class until a success)

    def update(self, step: int, outcome: _StepOutcome, sigma_b: torch.Tensor, factor: float) -> StepRecord:
        lam_b = self.lam.clone()
        ok = outcome.stop_iteration >= 0
        self.latest = torch.where(ok[:, None, None, None], outcome.x_adv, self.latest)
        d = d20(outcome.x_adv - self.x).to(torch.float64)
        improved = ok & (d < self.best_d20)  # strict <: the earlier step wins a tie (pitfall 11)
        self.best_d20 = torch.where(improved, d, self.best_d20)
        self.best = torch.where(improved[:, None, None, None], outcome.x_adv, self.best)
        self.best_pred = torch.where(improved, outcome.pred, self.best_pred)
        self.chosen[improved.cpu().numpy()] = step
        # failure: ub = lambda, lambda = 0.9 lb + 0.1 lambda; success: lb = lambda, lambda x2 or bisect
        grown = torch.where(torch.isinf(self.ub), self.lam * factor, (self.ub + self.lam) / 2)
        failed = FAILURE_MIX * self.lb + (1 - FAILURE_MIX) * self.lam
        self.ub = torch.where(ok, self.ub, self.lam)
        self.lb = torch.where(ok, self.lam, self.lb)
        self.lam = torch.where(ok, grown, failed)
        return StepRecord(
            step=step, lambda_b=_np(lam_b), sigma_b=_np(sigma_b), success=_np(ok),
            stop_iteration=_np(outcome.stop_iteration), d20=_np(torch.where(ok, d, -1.0).long()),
            improved=_np(improved))


def _np(t: torch.Tensor) -> np.ndarray:
    return frozen_array(t.detach().cpu().numpy().copy())


def _inner_loop(net: _Model, x: torch.Tensor, y: torch.Tensor, p: GSEParams, step: int, lam_b: torch.Tensor,
                sigma_b: torch.Tensor, start: tuple[torch.Tensor, torch.Tensor], trace: bool,
                bounds: tuple[float, float]):
    """One search step: phase 1 prox-gradient with the lambda update, phase 2 projected gradient (spec 1.6)."""
    n, c, h, w = x.shape
    outcome = _StepOutcome(x)
    idx = torch.arange(n, device=x.device)  # images still iterating
    xs, ys, sig = x, y, sigma_b.view(n, 1, 1, 1)
    lam_scalar = lam_b
    lam_map = lam_b.view(n, 1, 1).expand(n, h, w).clone()
    delta = torch.zeros_like(x)
    delta_old = torch.zeros_like(x)
    logits, grad_f = start
    frozen = None
    weights = momentum_weights(p.iters)  # t restarts every search step and is not reset at k_hat
    recorder = _Recorder(x, p, step, lam_b, sigma_b, logits, cw_margin(logits, y, net.targeted)) if trace else None
    for j in range(p.iters):
        grad = grad_f + 2.0 * p.mu * delta  # F = f + mu ||delta||_2^2
        if j == p.k_hat:
            frozen, delta = freeze(lam_map, lam_scalar, delta)
            delta_old = delta.clone()
        x_adv, delta_old, lam_map = gse_update(xs, delta, delta_old, grad, lam_map, frozen, sig, weights[j], p, bounds)
        delta = x_adv - xs

        graph_logits, leaf = net.forward(x_adv)
        logits = graph_logits.detach()
        check_logits(logits, f"at search step {step}, iteration {j}")
        pred = logits.argmax(1)
        hit = pred == ys if net.targeted else pred != ys
        if hit.any():
            won = idx[hit]
            outcome.x_adv[won] = x_adv[hit].detach()
            outcome.stop_iteration[won] = j
            outcome.pred[won] = pred[hit]
        phase = 1 if j < p.k_hat else 2
        if recorder is not None:
            recorder.update(idx, delta, lam_map if frozen is None else None, frozen, logits, cw_margin(logits, ys, net.targeted), hit)
            yield recorder.snapshot(j, phase)
        else:
            yield Progress(step, j, phase, int((~hit).sum()))

        keep = ~hit
        if not keep.any():
            net.n_forward += 1  # this pass only served the success check
            break
        if j == p.iters - 1:
            net.n_forward += 1
            break
        grad_f = net.gradient(graph_logits, ys, leaf)  # per-image gradients are independent; stopped rows are dropped below
        if hit.any():  # drop the images that stopped from every working tensor (pitfall 10)
            idx, xs, ys, sig, lam_scalar = idx[keep], xs[keep], ys[keep], sig[keep], lam_scalar[keep]
            lam_map, delta, delta_old, grad_f = lam_map[keep], delta[keep], delta_old[keep], grad_f[keep]
            if frozen is not None:
                frozen = frozen[keep]
    return outcome


def freeze(lam_map: torch.Tensor, lam_scalar: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """At j = k_hat: pixels whose lambda grew above this step's lambda are frozen to 0 (spec 1.6 step 3).

    Returns the frozen mask repeated over channels [B,C,H,W] and the masked delta.
    """
    frozen = (lam_map > lam_scalar.view(-1, 1, 1)).unsqueeze(1).expand_as(delta)
    return frozen, delta.masked_fill(frozen, 0.0)


def gse_update(x: torch.Tensor, delta: torch.Tensor, delta_old: torch.Tensor, grad: torch.Tensor,
               lam_map: torch.Tensor, frozen: torch.Tensor | None, sigma: torch.Tensor, a: float, p: GSEParams,
               bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One inner iteration given the gradient of F at delta (spec 1.6 steps 4-5).

    Phase 1 (no frozen mask yet): z = prox(delta - sigma g, lam sigma) with the prox of p.reg (by default the
    1/2-quasinorm, spec 1.3); lambda is updated from the mixed, pre-clamp iterate (unless p.blur is off).
    Phase 2 (frozen mask given): z = delta - sigma g with the frozen pixels at 0.
    mixed = a z + (1 - a) z_old (a convex combination, not FISTA extrapolation); x_adv = clamp(x + mixed).
    Returns (x_adv, z, lam_map); z is the next delta_old, kept unclamped (pitfall 5).
    """
    if frozen is None:
        z = regulariser(p.reg).prox(delta - sigma * grad, lam_map.unsqueeze(1) * sigma)
        mixed = a * z + (1 - a) * delta_old
        if p.blur:  # off: no lambda diffusion, the map stays at this step's lambda (nothing is frozen at k_hat)
            lam_map = adjust_lambda(lam_map, mixed, p.q, p.blur_size, p.blur_sigma)
    else:
        z = (delta - sigma * grad).masked_fill(frozen, 0.0)
        mixed = a * z + (1 - a) * delta_old
    return (x + mixed).clamp(*bounds), z, lam_map


class _Recorder:
    """Keeps full-batch CPU state for snapshots; images that stopped keep their last values."""

    def __init__(self, x: torch.Tensor, p: GSEParams, step: int, lam_b: torch.Tensor, sigma_b: torch.Tensor,
                 logits0: torch.Tensor, margin0: torch.Tensor) -> None:
        n, c, h, w = x.shape
        self.p, self.step = p, step
        self.delta = torch.zeros_like(x)
        self.lam_map = _np(lam_b.view(n, 1, 1).expand(n, h, w).to(trace_dtype(x.dtype)))
        self.frozen: np.ndarray | None = None
        self.frozen_full = torch.zeros((n, h, w), dtype=torch.bool, device=x.device)
        self.lam_full = lam_b.view(n, 1, 1).expand(n, h, w).clone()
        self.logits = logits0.clone()
        self.margin = margin0.clone()
        self.success = torch.zeros(n, dtype=torch.bool, device=x.device)
        self.active = torch.ones(n, dtype=torch.bool, device=x.device)
        self.lambda_b = _np(lam_b)
        self.sigma_b = _np(sigma_b)

    def update(self, idx: torch.Tensor, delta: torch.Tensor, lam_map: torch.Tensor | None,
               frozen: torch.Tensor | None, logits: torch.Tensor, margin: torch.Tensor, hit: torch.Tensor) -> None:
        self.delta[idx] = delta.detach()
        self.logits[idx] = logits
        self.margin[idx] = margin
        self.success[idx[hit]] = True
        self.active[idx[hit]] = False
        if lam_map is not None:
            self.lam_full[idx] = lam_map
            self.lam_map = _np(self.lam_full.to(trace_dtype(lam_map.dtype)))  # a copy: lam_full changes
        if frozen is not None and self.frozen is None:
            self.frozen_full[idx] = frozen[:, 0]
            self.frozen = _np(self.frozen_full)

    def snapshot(self, j: int, phase: int) -> Snapshot:
        probs = torch.softmax(self.logits.to(trace_dtype(self.logits.dtype)), dim=1)
        top = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
        norm = self.delta.flatten(1).double().norm(dim=1)
        return Snapshot(
            step=self.step, iteration=j, phase=phase, delta=SparseDelta.from_tensor(self.delta),
            lambda_map=self.lam_map, frozen=self.frozen if phase == 2 else None,
            lambda_b=self.lambda_b, sigma_b=self.sigma_b, margin=_np(self.margin),
            cw_loss=_np(torch.clamp(self.margin + self.p.kappa, min=0)), l2=_np(norm),
            l2_term=_np(self.p.mu * norm ** 2), pred=_np(self.logits.argmax(1)), top_classes=_np(top.indices),
            top_probs=_np(top.values), success=_np(self.success), active=_np(self.active))
