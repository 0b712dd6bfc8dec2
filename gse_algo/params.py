"""GSE hyper-parameters in [0,1] pixel space and the official presets.

The official code works on images in [-1,1] (spec section 0). With delta_p = delta_n / 2 the same iterates come
out of the [0,1] problem when sigma_p = sigma_n / 4 and mu_p = 4 * mu_n; lambda rescales itself (by sqrt 2)
because lambda_0 is computed from the gradient (spec 1.4). q, k_hat, the blur and the search rules carry over.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from .defaults import DEFAULT_REG, regulariser_name

# Official values in [-1,1] space (spec section 1.7): (mu, sigma, k_hat, q) per (dataset, targeted).
_OFFICIAL = {
    ("cifar10", True): (1.0, 0.005, 50, 0.25),
    ("cifar10", False): (1.0, 0.005, 30, 0.25),
    ("imagenet", True): (0.1, 0.05, 50, 0.9),
    ("imagenet", False): (0.1, 0.05, 50, 0.9),
    ("imagenet_adv", True): (0.0005, 0.75, 150, 0.9),
    ("imagenet_adv", False): (0.0005, 0.75, 150, 0.9),
}
PRESETS = ("cifar10", "imagenet", "imagenet_adv")
PRESET_FIELDS = ("mu", "sigma", "k_hat", "q")  # what a preset sets; the rest are shared defaults
AUTO = "auto"  # the preset that follows the model's input size (resolve_preset)
SMALL_INPUT = 64  # px: inputs whose shorter side is below this get the cifar10 preset under AUTO


def resolve_preset(preset: str, input_size: tuple[int, int]) -> str:
    """The preset a run uses. AUTO: 'cifar10' when the shorter side of the model input is below SMALL_INPUT px
    (CIFAR-like 32x32), else 'imagenet'. The command line and the app both call this."""
    if preset != AUTO:
        return preset
    return "cifar10" if min(input_size) < SMALL_INPUT else "imagenet"


def mu_from_official(mu_n: float) -> float:
    """mu in [0,1] space: mu_n * ||2 delta_p||^2 = 4 mu_n ||delta_p||^2 (spec section 0)."""
    return 4.0 * mu_n


def sigma_from_official(sigma_n: float) -> float:
    """Step size in [0,1] space: grad_n = grad_p / 2 and delta_n = 2 delta_p give sigma_p = sigma_n / 4."""
    return sigma_n / 4.0


# The allowed range of every field: (kind, low, high, low is allowed). Upper bounds keep a run finite (iters and
# search_steps size the work and the per-iteration lists) and are far above any sensible setting.
RANGES: dict[str, tuple[type, float, float, bool]] = {
    "mu": (float, 0.0, 1e6, True),
    "sigma": (float, 0.0, 1e3, False),
    "k_hat": (int, 0, 100_000, True),
    "q": (float, 0.0, 1.0, False),
    "iters": (int, 1, 100_000, True),
    "search_steps": (int, 1, 1_000, True),
    "search_factor": (float, 0.0, 1e3, False),
    "blur_size": (int, 1, 101, True),
    "blur_sigma": (float, 0.0, 100.0, False),
    "kappa": (float, 0.0, 1e6, True),
}


# What every field does (tooltips in the app, --help of the command lines, the attack registry).
HELP = {
    "mu": "Weight of the squared l2 term mu*||delta||^2 ([0,1] pixel units; 4x the paper's value).",
    "sigma": "Step size of the gradient / proximal step ([0,1] units; 1/4 of the paper's value).",
    "k_hat": "Phase-1 iterations: the lambda map is updated and the support may grow; then it freezes.",
    "q": "Lambda is divided by q at pixels with no perturbed neighbour (q < 1 makes isolated pixels costly).",
    "iters": "Inner proximal-gradient iterations per search step.",
    "search_steps": "Outer search steps over the starting lambda (binary search after the first success).",
    "search_factor": "Lambda growth factor while no failing/succeeding bracket is known.",
    "blur_size": "Gaussian blur kernel size of the lambda update (odd).",
    "blur_sigma": "Gaussian blur sigma of the lambda update.",
    "kappa": "Confidence margin of the CW loss max(0, margin + kappa).",
    "blur": "Lambda diffusion: in phase 1 the lambda map is updated from the blurred support (the paper's method); "
            "off keeps it at the search step's lambda everywhere (no grouping, nothing frozen at k_hat)",
    "reg": "Phase-1 regulariser (its proximal operator): l1/2 is the paper's; l0 hard, l1 soft and l2/3 "
           "closed-form thresholding (the paper's open question 1)",
}


def range_problem(name: str, value: object) -> str | None:
    """Why `value` is not allowed for the field `name` (RANGES), or None when it is."""
    kind, low, high, low_ok = RANGES[name]
    interval = f"{'[' if low_ok else '('}{low:g}, {high:g}]"
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"{name} must be an integer in {interval} (got {value!r})"
    elif isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return f"{name} must be a finite number in {interval} (got {value!r})"
    if not ((value >= low if low_ok else value > low) and value <= high):
        return f"{name} must be in {interval} (got {value!r})"
    return None


@dataclass(frozen=True)
class GSEParams:
    """Every GSE setting, in [0,1] pixel units.

    Defaults are the official constructor defaults (mu=1, sigma=0.0025, k_hat=10, q=0.25 in [-1,1] units)
    converted to [0,1] space. Use `GSEParams.preset(...)` for the per-dataset values the paper used.
    """

    mu: float = 4.0  # weight of the squared l2 term mu * ||delta||_2^2
    sigma: float = 0.000625  # step size of the gradient / prox step
    k_hat: int = 10  # phase-1 iterations (lambda map updated, support may grow); then the support freezes
    q: float = 0.25  # lambda is divided by q at pixels with no perturbed neighbour (grows when q < 1)
    iters: int = 200  # inner iterations per search step
    search_steps: int = 10  # outer lambda-search steps
    search_factor: float = 2.0  # lambda growth factor while no upper bound is known
    blur_size: int = 5  # Gaussian blur kernel size of the lambda update
    blur_sigma: float = 1.5  # Gaussian blur sigma of the lambda update
    kappa: float = 0.0  # confidence margin of the CW loss (official: 0)
    reg: str = DEFAULT_REG  # phase-1 regulariser: l0, l1, l1/2 (the paper's) or l2/3 (prox.REGULARISERS)
    blur: bool = True  # lambda diffusion in phase 1 (the paper's); False: the lambda map stays at lambda_b

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "reg", regulariser_name(self.reg))  # canonical spelling ('l1_2' -> 'l1/2')

    def validate(self) -> None:
        """Raise ValueError with a readable message for a setting outside its range (RANGES)."""
        problems = [problem for name in RANGES if (problem := range_problem(name, getattr(self, name)))]
        if not isinstance(self.blur, bool):  # a switch, so not in RANGES (which holds numeric ranges)
            problems.append(f"blur must be true or false (got {self.blur!r})")
        if isinstance(self.blur_size, int) and self.blur_size % 2 == 0:
            problems.append(f"blur_size must be odd (got {self.blur_size})")
        try:
            regulariser_name(self.reg)
        except ValueError as error:
            problems.append(str(error))
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def preset(cls, name: str, targeted: bool = False, **overrides: float) -> "GSEParams":
        """Official per-dataset hyper-parameters (spec 1.7), converted exactly to [0,1] space."""
        key = (name.lower().replace("-", "").replace("_", "") , bool(targeted))
        names = {p.replace("_", ""): p for p in PRESETS}
        if key[0] not in names:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        mu_n, sigma_n, k_hat, q = _OFFICIAL[(names[key[0]], key[1])]
        base = cls(mu=mu_from_official(mu_n), sigma=sigma_from_official(sigma_n), k_hat=k_hat, q=q)
        return base.replace(**overrides) if overrides else base

    def with_preset(self, name: str, targeted: bool = False) -> "GSEParams":
        """These settings with the preset's mu, sigma, k_hat and q (the other fields are kept)."""
        base = GSEParams.preset(name, targeted)
        return dataclasses.replace(self, **{field: getattr(base, field) for field in PRESET_FIELDS})

    def replace(self, **changes: float | str) -> "GSEParams":
        """A copy with some fields changed; string values are converted to the field's type."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(types))
        if unknown:
            raise ValueError(f"unknown GSE parameter(s): {', '.join(unknown)}; known: {', '.join(types)}")
        converted = {}
        for name, value in changes.items():
            if types[name] in (str, "str"):
                converted[name] = str(value)
                continue
            if types[name] in (bool, "bool"):
                converted[name] = parse_bool(name, value)
                continue
            kind = int if types[name] in (int, "int") else float
            try:
                converted[name] = kind(value) if kind is float else _as_int(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a{'n integer' if kind is int else ' number'} (got {value!r})") from None
        return dataclasses.replace(self, **converted)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def official_units(self) -> dict:
        """The same settings in the [-1,1] units of the paper and the official code."""
        d = self.as_dict()
        d["mu"] = self.mu / 4.0
        d["sigma"] = self.sigma * 4.0
        return d


def parse_bool(name: str, value: object) -> bool:
    """True/False, or the words a command line gives (true/false, on/off, yes/no, 1/0); ValueError otherwise."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}
    key = str(value).strip().lower()
    if key not in words:
        raise ValueError(f"{name} must be true or false (got {value!r})")
    return words[key]


def params_from_settings(settings: dict, targeted: bool, input_size: tuple[int, int]) -> GSEParams:
    """The GSEParams of the registry's GSE settings: the (resolved) preset, then every field that is set (None:
    from the preset). Torch-free, so the app can rebuild a study row's parameters."""
    preset = resolve_preset(str(settings.get("preset") or AUTO), input_size)
    names = {f.name for f in dataclasses.fields(GSEParams)}
    chosen = {k: v for k, v in settings.items() if k in names and v is not None}
    return GSEParams.preset(preset, targeted).replace(**chosen)


def _as_int(value: object) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError
    return int(number)
