"""CAM through grad-cam on tiny random-weight models: shapes, range, known answers, and a model left untouched."""

import gc
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer
from pytorch_grad_cam.base_cam import BaseCAM

from gse_algo.cam import (CAM_METHODS, EXPENSIVE_METHODS, CAMCancelled, CAMError, compute_cam, model_layers,
                          resolve_layer)

CHEAP = ["GradCAM", "GradCAM++", "XGradCAM", "HiResCAM", "LayerCAM", "EigenCAM"]


class UnitRange(nn.Module):
    """The app's wrapper shape: [0,1] input, the network inside as `net`."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(2 * x - 1)


def tiny_cnn() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 6, 3, padding=1, stride=2), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    model = UnitRange(net)
    model.requires_grad_(False)  # as the app's wrappers: frozen parameters
    return model, net


def all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


def state(model: nn.Module) -> tuple:
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [id(m) for m in model.modules()])


def test_method_table():
    assert set(CHEAP) | EXPENSIVE_METHODS <= set(CAM_METHODS)
    assert all(issubclass(cls, BaseCAM) for cls in CAM_METHODS.values())


@pytest.mark.parametrize("method", CHEAP + sorted(EXPENSIVE_METHODS))
def test_cam_shape_range_and_model_untouched(method):
    model, net = tiny_cnn()
    model.train()  # a mode grad-cam would change (it calls eval())
    before = state(model)
    image = torch.rand(3, 12, 10)
    cam = compute_cam(model, net, image, 2, method, layer="3.0", batch_size=4)
    assert cam.shape == (12, 10) and cam.dtype == np.float32
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    assert all_hooks(model) == 0
    assert state(model) == before
    assert all(p.grad is None for p in model.parameters())


def test_batch_with_one_class_per_image():
    model, net = tiny_cnn()
    images = torch.rand(2, 3, 8, 8)
    cams = compute_cam(model, net, images, [0, 4], "GradCAM++", layer="0")
    assert cams.shape == (2, 8, 8)
    single = compute_cam(model, net, images[1], 4, "GradCAM++", layer="0")
    np.testing.assert_allclose(cams[1], single, atol=1e-5)


@pytest.mark.parametrize("method", ["GradCAM", "GradCAM++", "XGradCAM", "HiResCAM", "LayerCAM"])
def test_known_answer_single_channel(method):
    # A = sum of the input channels (1x1 conv of ones), logit = mean(A): dlogit/dA = 1/(HW) > 0 everywhere, so every
    # gradient method gives relu(const * A), i.e. A min-max normalised (A >= 0 here since the input is in [0,1]).
    conv = nn.Conv2d(3, 1, 1, bias=False)
    conv.weight.data.fill_(1.0)
    net = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = nn.Sequential(net)
    image = torch.rand(3, 6, 7)
    a = image.sum(0).numpy()
    expected = (a - a.min()) / (a.max() - a.min())
    cam = compute_cam(model, net, image, 0, method, layer="0")
    np.testing.assert_allclose(cam, expected, atol=1e-5)


def test_trainable_parameters_keep_flags_and_grads():
    model, net = tiny_cnn()
    model.requires_grad_(True)
    grads = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g
    compute_cam(model, net, torch.rand(3, 8, 8), 1, "GradCAM", layer="3")
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))


def test_works_inside_no_grad():
    model, net = tiny_cnn()
    with torch.no_grad():
        cam = compute_cam(model, net, torch.rand(3, 8, 8), 1, "HiResCAM", layer="3.0")
    assert cam.max() > 0.99


def test_repeated_calls_do_not_grow_memory():
    model, net = tiny_cnn()
    image = torch.rand(3, 16, 16)

    def call() -> None:
        compute_cam(model, net, image, 1, "GradCAM", layer="3.0")
        compute_cam(model, net, image, 1, "ScoreCAM", layer="3.0", batch_size=3)

    def live() -> tuple[int, int]:
        """(tensors, grad-cam objects) alive; type() avoids isinstance's lazy-module warnings."""
        gc.collect()
        kinds = [type(o) for o in gc.get_objects()]
        return sum(issubclass(k, torch.Tensor) for k in kinds), sum(issubclass(k, BaseCAM) for k in kinds)

    call()
    tensors, _ = live()
    tracemalloc.start()
    for _ in range(3):
        call()
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert live() == (tensors, 0)
    assert grown < 200_000
    assert all_hooks(model) == 0


@pytest.mark.parametrize("method", sorted(EXPENSIVE_METHODS))
def test_progress_and_cancel(method):
    model, net = tiny_cnn()  # target layer "3.0" has 6 channels: batches of 2 -> 3 masked/ablated passes
    fractions = []
    compute_cam(model, net, torch.rand(3, 8, 8), 0, method, layer="3.0", batch_size=2, progress=fractions.append)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 4
    before = state(model)
    calls = []
    with pytest.raises(CAMCancelled):
        compute_cam(model, net, torch.rand(3, 8, 8), 0, method, layer="3.0", batch_size=2,
                    cancel=lambda: calls.append(1) or len(calls) >= 3)  # before start, 1st batch, 2nd batch
    assert len(calls) == 3  # stopped at once
    assert state(model) == before  # AblationCAM's layer swap undone
    assert all_hooks(model) == 0
    assert isinstance(resolve_layer(net, "3.0"), nn.Conv2d)


def test_vit_reshape_on_tiny_vision_transformer():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                            num_classes=5)
    nn.init.normal_(vit.heads.head.weight)  # torchvision zero-initialises the head: all logits would be 0
    model = UnitRange(vit)
    model.requires_grad_(False)
    layer = "encoder.layers.encoder_layer_0.ln_1"
    assert layer in model_layers(vit)
    for method in ["GradCAM", "AblationCAM"]:
        cam = compute_cam(model, vit, torch.rand(3, 16, 16), 3, method, layer=layer, reshape="vit", batch_size=4)
        assert cam.shape == (16, 16) and np.isfinite(cam).all() and 0 <= cam.min() and cam.max() <= 1
        assert cam.max() > 0.99  # a real map (min-max normalised), not all zeros
    assert all_hooks(model) == 0
    with pytest.raises(CAMError, match="reshape='vit'"):
        compute_cam(model, vit, torch.rand(3, 16, 16), 3, "GradCAM", layer=layer)


def test_model_layers_filtering():
    model, net = tiny_cnn()
    assert model_layers(net) == ["0", "3", "3.0"]  # convs and the block holding one; no BN/ReLU/pool/linear/root
    se = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 4, 1)))
    assert model_layers(se) == ["0"]  # squeeze-excitation style unit (1x1 maps) left out


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "FooCAM"}, "unknown CAM method"),
    ({"layer": "9.9"}, "no layer"),
    ({"class_index": 5}, "out of range"),
    ({"class_index": [0, 1]}, "2 class indices for 1 images"),
    ({"layer": "6"}, "not a feature map"),
    ({"reshape": "swin"}, "unknown reshape"),
    ({"image": torch.rand(1, 8, 8)}, "expected an image"),
])
def test_bad_requests_give_clear_errors(kwargs, message):
    model, net = tiny_cnn()
    args = {"image": torch.rand(3, 8, 8), "class_index": 0, "method": "GradCAM", "layer": "3.0"} | kwargs
    with pytest.raises(CAMError, match=message):
        compute_cam(model, net, **args)
    assert all_hooks(model) == 0
