"""Class activation maps through pytorch_grad_cam (package grad-cam): method table, layer list, one safe call.

`compute_cam` hooks the model, switches it to eval mode and runs forward/backward passes on it. Never run it
concurrently with the attack (or another CAM) on the same model object: the caller serialises (the app's worker
does), or passes a copy. Everything it changes on the model (hooks, train/eval mode, requires_grad flags,
parameter .grad, AblationCAM's layer swap) is put back before it returns, also on error or cancel.

grad-cam quirks handled here:
- the target layer's output needs requires_grad for the gradient hooks; with frozen parameters that only happens
  when the input requires grad, so the input is a fresh leaf with requires_grad=True;
- `with CAM(...)` swallows IndexError (prints it and returns None), so hooks are released in try/finally instead;
- AblationCAM's default AblationLayer() is one instance shared by every AblationCAM, and the layer swap is not undone
  when a forward pass raises; a fresh ablation layer is passed and the swap is undone here;
- ScoreCAM/AblationCAM cannot report progress themselves (only a tqdm bar on stderr); progress and cancel come from a
  forward hook on the model, one call per batch of masked/ablated inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from pytorch_grad_cam import (AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM,
                              XGradCAM)
from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.find_layers import replace_layer_recursive
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

from gse_algo.defaults import CAM_METHOD_NAMES, EXPENSIVE_METHODS

CAM_METHODS: dict[str, type[BaseCAM]] = dict(zip(CAM_METHOD_NAMES, (
    GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM,
    EigenCAM,  # class-agnostic: the first principal component of the activations
    ScoreCAM, AblationCAM)))
# EXPENSIVE_METHODS (gse_algo.defaults): one forward pass per channel of the target layer. AblationCAM weights are
# (score - ablated) / score, so they flip sign when the class score (logit) is negative: grad-cam's formula, kept.
RESHAPES = ("vit",)
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class CAMError(ValueError):
    """Bad CAM request (unknown method or layer, bad image shape or class index); the text is for the user."""


class CAMCancelled(Exception):
    """The cancel callable returned True between two batches of an expensive CAM."""


def model_layers(net: nn.Module) -> list[str]:
    """Dotted names of the modules worth offering as CAM target layer, in definition order.

    Kept: Conv2d layers, containers holding a Conv2d (blocks, stages, `features`), transformer blocks (a direct
    nn.MultiheadAttention child) and LayerNorms. Skipped: the root and anything inside a module with a direct global
    pooling child (squeeze-excitation units: their maps are 1x1).
    """
    skipped = [name for name, module in net.named_modules()
               if any(isinstance(child, _GLOBAL_POOLS) for child in module.children())]

    def keep(name: str, module: nn.Module) -> bool:
        if not name or any(name == s or name.startswith(s + ".") for s in skipped if s):
            return False
        if isinstance(module, (nn.Conv2d, nn.LayerNorm)):
            return True
        if any(isinstance(child, nn.MultiheadAttention) for child in module.children()):
            return True
        return any(isinstance(m, nn.Conv2d) for m in module.modules())

    return [name for name, module in net.named_modules() if keep(name, module)]


def cam_unsupported(net: nn.Module) -> str | None:
    """Why no CAM can be computed on `net` at all, or None: grad-cam hooks a layer, ScriptModules take no hooks."""
    if isinstance(net, torch.jit.ScriptModule):
        return "CAM needs forward hooks on a layer, which TorchScript models do not support"
    return None


def resolve_layer(net: nn.Module, name: str) -> nn.Module:
    """The submodule of `net` called `name` (dotted, as in named_modules); CAMError if there is none, or when `net`
    is TorchScript (grad-cam hooks the layer, and ScriptModules take no hooks)."""
    unsupported = cam_unsupported(net)
    if unsupported:
        raise CAMError(unsupported)
    if not name:
        raise CAMError("no CAM target layer given; pick one of the model's layers")
    try:
        return net.get_submodule(name)
    except AttributeError:
        raise CAMError(f"the model has no layer {name!r}; pick one of the model's layers "
                       f"(e.g. {', '.join(model_layers(net)[-3:]) or 'none found'})") from None


def vit_reshape(tokens: torch.Tensor) -> torch.Tensor:
    """ViT tokens [B, 1+h*w, C] -> [B, C, h, w]: drop the class token, square patch grid (grad-cam's transform)."""
    if tokens.ndim != 3:
        raise CAMError(f"the ViT reshape expects tokens [B, N, C], got shape {tuple(tokens.shape)}")
    side = math.isqrt(tokens.shape[1] - 1)
    if side * side != tokens.shape[1] - 1:
        raise CAMError(f"cannot reshape {tokens.shape[1]} ViT tokens to a square grid plus a class token")
    return vit_reshape_transform(tokens, height=side, width=side)


def _state_restorer(model: nn.Module) -> Callable[[], None]:
    """A function that puts back the requires_grad flags, .grad and train/eval modes the model has now."""
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]

    def restore() -> None:
        for p, flag, grad in params:
            p.requires_grad_(flag)
            p.grad = grad
        for m, mode in modes:
            m.training = mode

    return restore


class _BatchMonitor:
    """Forward hook on the wrapped model: checks the class indices once, counts passes, reports, cancels."""

    def __init__(self, cam: BaseCAM, method: str, classes: list[int], batch_size: int,
                 progress: Callable[[float], None] | None, cancel: Callable[[], bool] | None) -> None:
        self.cam, self.method, self.classes, self.batch_size = cam, method, classes, batch_size
        self.progress, self.cancel = progress, cancel
        self.passes, self.total = 0, None
        self.setup_passes = 2 if method == "AblationCAM" else 1  # activations pass (+ AblationCAM's score pass)

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.passes += 1
        if self.passes == 1:
            n_classes = output.shape[-1]
            if not all(0 <= c < n_classes for c in self.classes):
                raise CAMError(f"class index {self.classes} out of range for a model with {n_classes} classes")
            shape = tuple(self.cam.activations_and_grads.activations[0].shape)
            if len(shape) != 4:
                raise CAMError(f"the target layer gives output of shape {shape}, not a feature map [B,C,h,w]; "
                               "pick a convolutional layer (or reshape='vit' for transformer tokens)")
            if self.method in EXPENSIVE_METHODS:
                self.total = self.setup_passes + len(self.classes) * math.ceil(shape[1] / self.batch_size)
        if self.total and self.progress is not None:
            self.progress(min(self.passes / self.total, 1.0))
        # Cancel only between the masked/ablated batches: AblationCAM's score pass holds a hook of its own that
        # grad-cam removes only when that pass returns normally.
        if self.total and self.passes > self.setup_passes and self.cancel is not None and self.cancel():
            raise CAMCancelled("CAM computation cancelled")


def compute_cam(model: nn.Module, net: nn.Module, image: torch.Tensor, class_index: int | Sequence[int],
                method: str = "GradCAM", *, layer: str, reshape: str | None = None, batch_size: int = 32,
                progress: Callable[[float], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """CAM of `class_index` for `image` ([3,H,W] or [B,3,H,W] in [0,1]) -> float32 [H,W] or [B,H,W] in [0,1].

    model: the [0,1]-input wrapper returning logits; net: the module inside it that holds `layer` (a dotted name
    from model_layers(net)). reshape="vit" turns the layer's tokens into a feature map (class token dropped).
    class_index: one class for all images or one per image. batch_size: masked/ablated inputs per forward pass
    (ScoreCAM, AblationCAM). For those two, progress(fraction) is called after every forward pass and cancel()
    after every batch of masked/ablated inputs (and once before any work, for every method); cancel() returning
    True raises CAMCancelled. Not thread-safe on one model (see the module docstring).
    """
    if method not in CAM_METHODS:
        raise CAMError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    if reshape is not None and reshape not in RESHAPES:
        raise CAMError(f"unknown reshape {reshape!r}; use None or one of {', '.join(RESHAPES)}")
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise CAMError(f"expected an image [3,H,W] or a batch [B,3,H,W], got shape {tuple(image.shape)}")
    if batch_size < 1:
        raise CAMError(f"batch_size must be at least 1 (got {batch_size})")
    target_layer = resolve_layer(net, layer)
    if not any(m is target_layer for m in model.modules()):
        raise CAMError(f"layer {layer!r} of net is not part of the model passed to compute_cam")
    batch = image if image.ndim == 4 else image.unsqueeze(0)
    classes = [int(class_index)] * batch.shape[0] if np.ndim(class_index) == 0 else [int(c) for c in class_index]
    if len(classes) != batch.shape[0]:
        raise CAMError(f"{len(classes)} class indices for {batch.shape[0]} images")
    if cancel is not None and cancel():
        raise CAMCancelled("CAM computation cancelled")

    x = batch.detach().to(next(model.parameters()).device, torch.float32).clone()
    kwargs = {"reshape_transform": vit_reshape if reshape == "vit" else None}
    ablation_layer = None
    if method == "AblationCAM":
        ablation_layer = AblationLayerVit() if reshape == "vit" else AblationLayer()
        kwargs.update(ablation_layer=ablation_layer, batch_size=batch_size)
    restore = _state_restorer(model)
    cam = None
    hook = None
    try:
        model.requires_grad_(False)  # gradients reach the input only: no parameter .grad is made
        cam = CAM_METHODS[method](model, [target_layer], **kwargs)
        cam.batch_size = batch_size  # ScoreCAM reads this attribute
        hook = model.register_forward_hook(_BatchMonitor(cam, method, classes, batch_size, progress, cancel))
        # Gradient methods need an input that requires grad: with frozen parameters nothing else makes the target
        # layer's output require grad. The others run without autograd.
        x.requires_grad_(cam.uses_gradients)
        with torch.set_grad_enabled(cam.uses_gradients):
            maps = cam(x, [ClassifierOutputTarget(c) for c in classes])
    finally:
        if hook is not None:
            hook.remove()
        if cam is not None:
            cam.activations_and_grads.release()
            cam.outputs = None  # drops the retained autograd graph
        if ablation_layer is not None:
            replace_layer_recursive(model, ablation_layer, target_layer)
        restore()
    if progress is not None:
        progress(1.0)
    # AblationCAM divides by the clean class score: a score of exactly 0 makes that image's map NaN; report 0.
    maps = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return maps if image.ndim == 4 else maps[0]
