"""What every registered attack is: a name, typed parameters, and a run function on the [0,1] API of iterate_gse.

An attack's run function takes (model, images, labels, targeted, settings) and is a generator: it yields whatever
per-iteration state the attack exposes (GSE: Snapshot or Progress; a library attack: `ModelCall` at every forward
pass of the model, see gse_algo.attacks.library) and returns the adversarial images [B,C,H,W] in [0,1]. Success,
sizes and pass counts are measured by gse_algo.attacks.measure, the same code for every attack.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from gse_algo.params import parse_bool

Value = int | float | str | bool | None


@dataclass(frozen=True)
class Param:
    """One setting of an attack. `default` None means "chosen by the attack" (GSE: from its preset)."""

    name: str
    kind: type  # int, float, str or bool
    default: Value
    tip: str
    low: float | None = None
    high: float | None = None
    low_ok: bool = True  # low itself is allowed
    choices: tuple[str, ...] = ()
    spelling: Callable[[str], str] | None = None  # another spelling -> its choice (GSE's reg: 'L1_2' -> 'l1/2')

    def check(self, value: Value) -> Value:
        """The value converted to `kind` (strings from a command line are parsed) or ValueError saying why not.
        None ("chosen by the attack") is a value only of a parameter whose default is None."""
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"{self.name} must be given (only a parameter whose default is 'auto' may be empty)")
        if self.kind is bool:
            return parse_bool(self.name, value)
        if self.kind is str:
            if isinstance(value, str) and self.spelling is not None:
                with contextlib.suppress(ValueError):  # a spelling it does not know: refused below
                    value = self.spelling(value)
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                wanted = f"one of {', '.join(self.choices)}" if self.choices else "text"
                raise ValueError(f"{self.name} must be {wanted} (got {value!r:.40})")
            return value
        number = _as_number(self.name, value, self.kind)
        if not self._in_range(number):
            raise ValueError(f"{self.name} must be in {self.interval()} (got {value!r:.40})")
        return number

    def interval(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'[' if self.low_ok else '('}{low}, {high}]"

    def _in_range(self, number: float) -> bool:
        above = self.low is None or (number >= self.low if self.low_ok else number > self.low)
        return above and (self.high is None or number <= self.high)


def _as_number(name: str, value: Value, kind: type) -> int | float:
    """`value` as a `kind` number: a real number or its text; an integer may have a zero fraction ('2.0')."""
    what = "an integer" if kind is int else "a finite number"
    problem = ValueError(f"{name} must be {what} (got {value!r:.40})")
    if isinstance(value, bool):
        raise problem
    if kind is int and isinstance(value, numbers.Integral):
        return int(value)  # exact at any size: the range check follows
    try:
        number = float(value) if isinstance(value, (str, numbers.Real)) else math.nan
    except (ValueError, OverflowError):  # not a number, or an integer beyond any float
        raise problem from None
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        raise problem
    return int(number) if kind is int else number


RunFunction = Callable[..., Iterator]


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack. `run(model, images, labels, targeted, settings)` is a generator (module docstring)."""

    name: str  # the registry key, e.g. "gse", "sigma_zero"
    title: str  # for people: "GSE", "sigma-zero"
    source: str  # where the implementation comes from: "gse_algo", "adv_lib 0.2.8", ...
    norm: str  # what the attack minimises or bounds, e.g. "l0 (pixels, grouped)", "l0 (C x H x W values)"
    params: tuple[Param, ...]
    run: RunFunction
    targeted: bool = True  # a targeted run is supported
    untargeted: bool = True
    views: frozenset[str] = frozenset()  # extra live views: "lambda_map" (GSE), "search" (outer search steps)
    requires: tuple[str, ...] = ()  # modules that must be importable (an optional extra)
    extra: str = ""  # the pip extra that installs them
    notes: str = ""  # limits worth knowing (shown as a tooltip)
    rules: Callable[..., None] | None = None  # rules(images, settings): ValueError for what the library cannot take
    together: Callable[[Mapping[str, Value]], None] | None = None  # together(settings): ValueError for values each
    # within its range that the attack refuses together (or by a rule of its own, as GSE's odd blur size)
    _index: Mapping[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {p.name: p for p in self.params})

    def missing(self) -> str | None:
        """Why this attack cannot run here (a module is not installed), or None when it can."""
        absent = [name for name in self.requires if importlib.util.find_spec(name) is None]
        if not absent:
            return None
        return (f"the {self.title} attack needs {', '.join(absent)}: pip install 'gse-desktop[{self.extra}]' "
                "(see the README, 'Baseline attacks')")

    def settings(self, overrides: Mapping[str, Value] | None = None) -> dict[str, Value]:
        """Every parameter's value: the defaults with `overrides` checked and applied (ValueError for all problems,
        each naming ATTACK.PARAMETER)."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self._index))
        problems = [f"{self.name} has no parameter {', '.join(unknown)}; it has {', '.join(self._index)}"] if unknown else []
        values = {p.name: p.default for p in self.params}
        for name, value in overrides.items():
            if name in self._index:
                try:
                    values[name] = self._index[name].check(value)
                except ValueError as error:  # named with the attack: gse-compare sets several at once
                    problems.append(f"{self.name}.{error}")
        if problems:
            raise ValueError("; ".join(problems))
        if self.together is not None:
            self.together(values)
        return values

    def check_run(self, images: object, settings: Mapping[str, Value]) -> None:
        """ValueError when the attack cannot run on these [B,C,H,W] images with these (checked) settings."""
        if self.rules is not None:
            self.rules(images, settings)

    def check_goal(self, targeted: bool) -> None:
        """ValueError when the attack cannot do this kind of run (sigma-zero is untargeted only)."""
        if targeted and not self.targeted:
            raise ValueError(f"{self.title} supports untargeted runs only")
        if not targeted and not self.untargeted:
            raise ValueError(f"{self.title} supports targeted runs only")
