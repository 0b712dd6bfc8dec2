"""What the run list and the comparison show of a kept run, as text (Qt-free): its key parameters, its measured
metrics (gse_desktop.records.Measured), and which of two runs is better at each (gse_algo.compare.better owns the
rule; sizes count only for a run that succeeded)."""

from __future__ import annotations

from gse_algo.compare import SIZES, better
from gse_algo.params import GSEParams
from gse_desktop.records import GSE, AttackInfo, Measured, RunDescription

LIST_COLUMNS = (("name", "run"), ("attack", "attack"), ("parameters", "key parameters"), ("success", "success"),
                ("acp", "ACP"), ("anc", "ANC"), ("d20", "d₂,₀"), ("time_s", "time (s)"))
METRICS = (("success", "success"), ("fools_at_8bit", "fools, rounded to 8 bit"),
           ("file_fools", "saved 8-bit PNG fools"), ("adv_class", "class after"),
           ("acp", "ACP (pixels)"), ("channel_l0", "channel-L0 (C×H×W values)"), ("anc", "ANC (clusters)"),
           ("d20", "d₂,₀ (8×8 windows)"), ("l2", "l2 ([0,1] units)"), ("linf", "l∞"), ("time_s", "time (s)"),
           ("n_forward", "forward calls"), ("n_backward", "backward passes"))
METRIC_HELP = {
    "success": "The model's decision on the attack's own (floating-point) result: changed, or the target reached",
    "fools_at_8bit": "The attack's result rounded to the nearest of 256 levels per channel, classified again",
    "file_fools": "The 8-bit PNG the app saves, classified again: in quantisation-aware mode (the default) after "
                  "the final step of gse_algo.quantize, which keeps the file fooling where it can",
    "acp": "Changed pixels (a pixel counts once whatever its channels do)",
    "channel_l0": "Changed values over C x H x W: the unit sigma-zero and FMN report",
    "anc": "Clusters of changed pixels (4-connected groups)",
    "d20": "8 x 8 windows (stride 1) holding a changed pixel: the paper's d2,0 group sparsity",
    "adv_class": "The class the model gives the attack's result",
    "l2": "Euclidean length of the perturbation over its C x H x W values",
    "linf": "The largest change of any value",
    "time_s": "The attack alone: pauses and the app's own work per frame excluded",
    "n_forward": "Calls of the model, counted by one wrapper for every attack (gse_algo.attacks.counting)",
    "n_backward": "Backward passes through the model's output, counted by the same wrapper",
}
NONE = "–"


def registry_defaults(attacks: list[AttackInfo]) -> dict[str, dict]:
    """attack name -> {parameter: default}, for key_parameters."""
    return {a.name: {p.name: p.default for p in a.params} for a in attacks}


def key_parameters(run: RunDescription, defaults: dict[str, dict] | None = None) -> str:
    """GSE: preset, mu, k_hat, q, iterations x search steps (and the regulariser and blur where not the defaults);
    another attack: its settings that differ from `defaults` (every setting when they are not known)."""
    if run.attack.name == GSE and run.params is not None:
        p, base = run.params, GSEParams()
        text = (f"{run.preset or 'custom'}: μ={p.mu:.3g} k̂={p.k_hat} q={p.q:g} {p.iters}×{p.search_steps}")
        extra = [f"{name}={getattr(p, name):g}" for name in ("blur_size", "blur_sigma", "kappa")
                 if getattr(p, name) != getattr(base, name)]
        return " ".join([text, *extra, *([p.reg] if p.reg != base.reg else [])])
    own = (defaults or {}).get(run.attack.name)
    shown = {k: v for k, v in run.settings.items() if own is None or own.get(k, object()) != v}
    return " ".join(f"{k}={_text(v)}" for k, v in shown.items()) or "defaults"


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else ("auto" if value is None else str(value))


def value_text(name: str, value: object) -> str:
    """One metric as the tables show it."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "time_s":
        return f"{value:.2f}"
    if name in ("l2", "linf"):
        return f"{value:.4f}"
    return str(value)


def list_cell(column: str, name: str, run: RunDescription | None, measured: Measured | None,
              defaults: dict[str, dict] | None = None) -> str:
    """The run list's text for one column of a kept run (metrics '–' for a stopped run)."""
    if column == "name":
        return name
    if column == "attack":
        return run.attack.title if run else NONE
    if column == "parameters":
        return key_parameters(run, defaults) if run else NONE
    if measured is None:
        return "stopped" if column == "success" else NONE
    return value_text(column, measured.value(column))


def metric_value(name: str, measured: Measured | None, record: dict) -> object:
    """A metric of a kept run: measured, or (file_fools) the engine record's verdict on the saved 8-bit file,
    after gse_algo.quantize's final step in quantisation-aware mode."""
    if name == "file_fools":
        return record.get("fools_at_8bit")
    return None if measured is None else measured.value(name)


def ranked(name: str, measured: Measured | None, record: dict) -> float | bool | None:
    """The value `better` compares: None for a stopped run, and for a failed run's sizes."""
    if measured is None or (name in SIZES and not measured.value("success")):
        return None
    return metric_value(name, measured, record)


def metric_rows(a: tuple[Measured | None, dict], b: tuple[Measured | None, dict]
                ) -> list[tuple[str, str, str, str, str | None]]:
    """(name, label, A's text, B's text, 'a' / 'b' / None for the better) for every metric of the comparison; a
    and b are (measured, engine record) of the two runs."""
    rows = []
    for name, label in METRICS:
        va, vb = (metric_value(name, *run) for run in (a, b))
        rank = "fools_at_8bit" if name == "file_fools" else name  # the same rule: fooling is better
        rows.append((name, label, value_text(name, va), value_text(name, vb),
                     better(rank, ranked(name, *a), ranked(name, *b))))
    return rows
