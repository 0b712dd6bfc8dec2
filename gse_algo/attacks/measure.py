"""The numbers of an attack's result, measured the same way for every attack (gse_algo.metrics owns the formulas).

Success is read from the model at the returned images (never from the attack's own report): untargeted, the
class differs from the true label; targeted, it is the target. `fools_at_8bit` asks the same of the images
rounded to 8 bits per channel (what a saved PNG holds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from gse_algo import explain, metrics, quantize


@dataclass(frozen=True)
class AttackMetrics:
    """One image's result. Units: [0,1] pixel space (l2 is half the paper's [-1,1] value)."""

    success: bool
    adv_class: int  # the model's class at the adversarial image
    acp: int  # changed pixels (any channel): the paper's ACP
    channel_l0: int  # changed values over C x H x W: the unit sigma-zero and FMN report
    anc: int  # 4-connected clusters of changed pixels
    d20: int  # 8x8 windows holding a changed pixel
    l2: float
    linf: float
    fools_at_8bit: bool

    def as_dict(self) -> dict:
        return asdict(self)


def goal_reached(pred: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """bool [B]: the predicted class is the target (targeted) or not the true class (untargeted)."""
    return pred == labels if targeted else pred != labels


def predictions(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).argmax(dim=1)


def measure(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, targeted: bool,
            x_adv: torch.Tensor) -> tuple[AttackMetrics, ...]:
    """AttackMetrics of each image of x_adv [B,C,H,W] against the clean `images` (model passes not counted)."""
    delta = (x_adv - images).detach()
    pred = predictions(model, x_adv)
    success = goal_reached(pred, labels, targeted).cpu().numpy()
    eight_bit = goal_reached(predictions(model, quantize.to_grid(x_adv, 8)), labels, targeted).cpu().numpy()
    acp, anc, l2 = metrics.acp(delta), metrics.anc(delta), metrics.l2(delta)
    channel_l0, linf = metrics.channel_l0(delta), metrics.linf(delta)
    d20 = metrics.d20(delta).cpu().numpy()
    pred = pred.cpu().numpy()
    return tuple(AttackMetrics(bool(success[b]), int(pred[b]), int(acp[b]), int(channel_l0[b]), int(anc[b]),
                               int(d20[b]), float(l2[b]), float(linf[b]), bool(eight_bit[b]))
                 for b in range(len(pred)))


def region_shares(images: torch.Tensor, x_adv: torch.Tensor, regions: np.ndarray) -> list[dict[str, float]]:
    """Per image, how the perturbation sits on a region (bool [B,H,W]: a CAM's top-q pixels or an object mask):
    pixel_share (changed pixels inside / changed pixels), l2_share, iou (gse_algo.explain owns the formulas; NaN
    for delta = 0) and area (the region's share of the image: what pixel_share would be for a support placed at
    random)."""
    delta = (x_adv - images).detach().cpu().numpy()
    out = []
    for b in range(delta.shape[0]):
        shares = explain.region_overlap(delta[b:b + 1], regions[b])
        out.append({**{key: float(values[0]) for key, values in shares.items()}, "area": float(regions[b].mean())})
    return out


def interpretability(model: torch.nn.Module, images: torch.Tensor, x_adv: torch.Tensor, true_labels: torch.Tensor,
                     goals: torch.Tensor) -> list[dict[str, float]]:
    """The paper's IS per image and percentile ({"is_50": .., "is_90": ..}, gse_algo.metrics owns the formula): the
    share of ||delta|| on the most salient entries of dZ_goal/dx * |dZ_true/dx| at the clean image. goals: the
    target (targeted), or the class at the adversarial image (untargeted). NaN where delta = 0."""
    scores = metrics.interpretability_score(model, images, x_adv - images, true_labels, goals)
    return [{f"is_{p}": float(v) for p, v in zip(metrics.IS_PERCENTILES, row)} for row in scores]


def summary(rows: list[AttackMetrics]) -> dict[str, float]:
    """ASR and the means over the successful images of each size (the paper's convention), NaN if none."""
    good = [r for r in rows if r.success]
    out = {"asr": metrics.asr([r.success for r in rows])}
    for name in ("acp", "channel_l0", "anc", "d20", "l2", "linf"):
        out[name] = float(np.mean([getattr(r, name) for r in good])) if good else float("nan")
    return out
