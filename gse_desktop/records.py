"""The typed, immutable records that travel between the engine process and the app (plain NumPy, no torch, no Qt).

- RunSpec: what the user asked for (read from the controls once, when Run is pressed).
- ModelInfo: what the app needs to know of a loaded model (the model itself stays in the engine process).
- OpenedImage: an image file decoded by the engine (never in the GUI process: hostile files cannot hang the window),
  with its model input and the clean prediction.
- RunDescription: a run as it was really started (the resolved preset and parameters, classes, versions, threads).
- AttackInfo / ParamInfo: a registered attack as the window needs it (the engine sends them; gse_algo.attacks
  imports torch, so the window never imports the registry itself).
- Measured: an attack's result measured by gse_algo.attacks.measure, the same for every attack (the run list and
  the comparison read it).
- Final: the end of a run as the CAM comparison needs it (the returned example and its interpretability score).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gse_algo.defaults import DEFAULT_THREADS
from gse_algo.params import AUTO, GSEParams


PREVIEW_SIZE = 512
GSE = "gse"  # the registry name of GSE, the first attack


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of an attack (gse_algo.attacks.base.Param without its checks: the engine checks values)."""

    name: str
    kind: str  # "int", "float", "str" or "bool"
    default: int | float | str | bool | None
    tip: str
    low: float | None = None
    high: float | None = None
    low_ok: bool = True
    choices: tuple[str, ...] = ()
    interval: str = ""  # the allowed range as the engine's check words it, e.g. "(0, 1]"


@dataclass(frozen=True)
class AttackInfo:
    """A registered attack (gse_algo.attacks.base.AttackSpec) as plain data."""

    name: str
    title: str
    source: str
    norm: str
    params: tuple[ParamInfo, ...]
    targeted: bool = True
    untargeted: bool = True
    views: frozenset[str] = frozenset()  # "lambda_map", "search": what only GSE has
    missing: str | None = None  # why it cannot run here (a library is not installed), None when it can
    notes: str = ""

    @property
    def has_lambda_map(self) -> bool:
        return "lambda_map" in self.views

    @property
    def has_search(self) -> bool:
        return "search" in self.views


# GSE as the window knows it before the engine has described the registry (and in sessions of format 1)
GSE_INFO = AttackInfo(GSE, "GSE", "", "", (), views=frozenset({"lambda_map", "search"}))


@dataclass(frozen=True)
class Measured:
    """One run's result, measured the same way for every attack (gse_algo.attacks.measure.AttackMetrics fields)
    with the attack's time (pauses and the app's own work excluded) and the model's forward/backward counts."""

    metrics: dict  # AttackMetrics.as_dict(): success, adv_class, acp, channel_l0, anc, d20, l2, linf, fools_at_8bit
    time_s: float
    n_forward: int
    n_backward: int

    def value(self, name: str) -> float | int | bool | None:
        """A metric, time_s, n_forward or n_backward by name."""
        return self.metrics[name] if name in self.metrics else getattr(self, name)


@dataclass(frozen=True)
class RunSpec:
    """One press of Run. target None: untargeted. preset None: the parameters exactly as given ('custom')."""

    image_path: str
    model_spec: str
    device: str = "cpu"
    target: int | None = None
    params: GSEParams = field(default_factory=GSEParams)
    preset: str | None = AUTO
    threads: int = DEFAULT_THREADS
    seed: int = 0
    quantize: bool = True  # attack the 8-bit grid image and make the saved files fool the model (gse_algo.quantize)
    attack: str = GSE  # the registry name; GSE reads params and preset, every other attack `settings`
    settings: dict = field(default_factory=dict)  # a library attack's parameters by name (checked by the engine)


@dataclass(frozen=True)
class ModelInfo:
    spec: str  # what the user typed or picked (cache key, with the device)
    name: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    cam_layer: str  # the default CAM layer of the architecture
    layers: tuple[str, ...]  # every layer a CAM can hook, cam_layer first when the list lacks it
    device: str

    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)


@dataclass(frozen=True)
class Prediction:
    """The model's top classes on one image."""

    classes: np.ndarray  # int [k]
    probs: np.ndarray  # float [k]

    @property
    def top(self) -> int:
        return int(self.classes[0])


@dataclass(frozen=True)
class OpenedImage:
    path: str
    name: str
    file_size: tuple[int, int]  # (width, height) of the file
    source_png: bytes  # the file's pixels as a lossless 16-bit PNG (sessions keep it)
    model_input: np.ndarray | None  # float32 [H,W,3] in [0,1], the image the attack sees; None without a model
    model: ModelInfo | None
    clean: Prediction | None
    model_error: str | None = None  # why there is no model input
    preview: np.ndarray | None = None  # without a model input: the file's image fitted into PREVIEW_SIZE px

    @property
    def shown(self) -> np.ndarray | None:
        """What the views show before a run: the model input, else the preview."""
        return self.model_input if self.model_input is not None else self.preview


@dataclass(frozen=True)
class RunDescription:
    spec: RunSpec
    model: ModelInfo
    image: np.ndarray  # float32 [H,W,3], the model input
    label: int  # the class the attack moves away from (untargeted) or towards (targeted)
    clean: Prediction
    targeted: bool
    params: GSEParams | None  # GSE's effective parameters (preset applied); None for a library attack
    preset: str | None  # the resolved preset name, None for custom parameters
    versions: dict = field(default_factory=dict)
    attack: AttackInfo = GSE_INFO
    settings: dict = field(default_factory=dict)  # every parameter's value as the registry checked it

    @property
    def clean_class(self) -> int:
        return self.clean.top


@dataclass(frozen=True)
class Final:
    """The returned adversarial example and its IS (one value per metrics.IS_PERCENTILES, NaN where delta = 0)."""

    adversarial: np.ndarray  # float32 [H,W,3] in [0,1]
    delta: np.ndarray  # float32 [C,H,W]
    scores: np.ndarray

    @classmethod
    def from_delta(cls, clean: np.ndarray, delta: np.ndarray, scores) -> "Final":
        delta = np.asarray(delta, np.float32)
        return cls((clean + delta.transpose(1, 2, 0)).astype(np.float32), delta, np.asarray(scores, np.float64))
