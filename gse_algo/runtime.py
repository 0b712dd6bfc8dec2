"""Run-time settings that change a run's numbers: torch thread count, seed, device, dtype. One owner for each.

The outer lambda search turns float noise into different outcomes (a different stop iteration, another chosen
search step), and the float noise of a CPU forward/backward pass depends on the number of torch threads. With a
fixed thread count a run repeats exactly on one machine; the default is one thread on every machine, so a default
run gives the same numbers everywhere (with the same torch build and CPU kind), in the CLI and in the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gse_algo.defaults import DEFAULT_THREADS  # fixed, not derived from the core count: see the docstring and README
MAX_THREADS = 1024
DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("auto", "cpu", "cuda")


def default_threads() -> int:
    """Torch threads for an attack unless the user picks another count (the CLI and the app both use this)."""
    return DEFAULT_THREADS


def check_threads(threads: object) -> int:
    """The thread count as an int in [1, MAX_THREADS]; ValueError with a one-line message otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer in [1, {MAX_THREADS}] (got {threads!r})")
    return threads


def dtype_name(dtype: str | torch.dtype) -> str:
    """'float32' / 'float64' from a name or a torch dtype; ValueError for anything else."""
    for name, value in DTYPES.items():
        if dtype == name or dtype == value:
            return name
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a CUDA device is an error."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (got {name!r})")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass(frozen=True)
class Runtime:
    """The settings of one run; `apply()` sets them in torch, `as_dict()` is what outputs record."""

    threads: int = field(default_factory=default_threads)
    seed: int = 0
    device: str = "cpu"  # a resolved device ("cpu", "cuda", "cuda:0")
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_threads(self.threads)
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        object.__setattr__(self, "device", str(torch.device(self.device)))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer (got {self.seed!r})")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def apply(self) -> None:
        """Set torch's intra-op thread count and seed (call it before loading the model and attacking)."""
        torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)

    def as_dict(self) -> dict:
        return {"threads": self.threads, "seed": self.seed, "device": self.device, "dtype": self.dtype}
