"""Bad session files: every one gives a single-line SessionError naming the file, and the file is left as it was.
Bombs (sizes that would need gigabytes) are opened in child processes under a memory limit."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gse_desktop.session import LIMITS, MAX_ARRAYS, SessionError, load_session
from gse_desktop.state import run_name
from bad_input import make_session, messages_in_child

MEASURED = {"success": True, "adv_class": 1, "acp": 3, "channel_l0": 5, "anc": 1, "d20": 9, "l2": 0.2, "linf": 0.1,
            "fools_at_8bit": True, "time_s": 0.5, "n_forward": 10, "n_backward": 9}


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    return make_session(tmp_path_factory.mktemp("valid") / "run.gses")


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _arrays(members: dict[str, bytes]) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(members["arrays.npz"]), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _npz(arrays: dict[str, np.ndarray], raw: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    if raw:  # members written as given bytes (hand-made .npy headers)
        with zipfile.ZipFile(buffer, "a") as zf:
            for name, data in raw.items():
                zf.writestr(name, data)
    return buffer.getvalue()


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    """An .npy 1.0 header declaring `shape` of `dtype`, without the data."""
    text = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text) + pad + 1) + text + b" " * pad + b"\n"


def _patch_member(data: bytes, name: str, *, flag: int = 0, method: int | None = None,
                  size: int | None = None) -> bytes:
    """Change a member's flag bits, compression method or declared uncompressed size in both zip headers."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, flag_at, method_at, size_at, name_at in ((b"PK\x03\x04", 6, 8, 22, 30),
                                                            (b"PK\x01\x02", 8, 10, 24, 46)):
        at = out.find(signature)
        while at >= 0:
            if out[at + name_at:at + name_at + len(encoded)] == encoded:
                out[at + flag_at] |= flag
                if method is not None:
                    out[at + method_at:at + method_at + 2] = struct.pack("<H", method)
                if size is not None:
                    out[at + size_at:at + size_at + 4] = struct.pack("<I", size)
            at = out.find(signature, at + 4)
    return bytes(out)


def _run_name(name: str) -> str:
    """The valid session's (format 2) name of an array of its one run; the image is the session's."""
    return name if name == "image" else f"r0_{name}"


def _with_run(valid: Path, **changes) -> dict[str, bytes]:
    members = _members(valid)
    meta = json.loads(members["session.json"])
    meta["runs"][0].update(changes)
    members["session.json"] = json.dumps(meta).encode()
    return members


def _with_info(valid: Path, **changes) -> dict[str, bytes]:
    meta = json.loads(_members(valid)["session.json"])
    return _with_run(valid, info={**meta["runs"][0]["info"], **changes})


def _with_arrays(valid: Path, **changes) -> dict[str, bytes]:
    members = _members(valid)
    arrays = _arrays(members)
    for name, change in changes.items():
        key = _run_name(name)
        arrays[key] = change(arrays[key].copy()) if callable(change) else change
    members["arrays.npz"] = _npz(arrays)
    return members


def _format_1(valid: Path) -> dict[str, bytes]:
    """The valid session as format 1 wrote it: one run, its arrays without the run prefix."""
    members = _members(valid)
    meta = json.loads(members["session.json"])
    run = meta.pop("runs")[0]
    meta.pop("shown")
    members["session.json"] = json.dumps({**meta, "version": 1, "info": run["info"], "result": run["result"]}).encode()
    members["arrays.npz"] = _npz({k.removeprefix("r0_"): a for k, a in _arrays(members).items()})
    return members


def _set(index, value):
    def change(array):
        array[index] = value
        return array
    return change


def _params(valid: Path, **changes) -> dict[str, bytes]:
    meta = json.loads(_members(valid)["session.json"])
    return _with_info(valid, params={**meta["runs"][0]["info"]["params"], **changes})


def _meta(valid: Path, **changes) -> dict[str, bytes]:
    members = _members(valid)
    members["session.json"] = json.dumps({**json.loads(members["session.json"]), **changes}).encode()
    return members


def _members_with(valid: Path, **data: bytes) -> dict[str, bytes]:
    return {**_members(valid), **{name.replace("_", "."): value for name, value in data.items()}}


def _twice(valid: Path, name: str) -> bytes:
    """The valid session with a second member called `name` (a reader would pick one of the two copies)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        for member, data in _members(valid).items():
            zf.writestr(member, data)
        zf.writestr(name, _members(valid)[name])
    return buffer.getvalue()


def _twice_npz(data: bytes) -> bytes:
    """The arrays file with a second image.npy."""
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("image.npy", zf.read("image.npy"))
    return buffer.getvalue()


# name -> (members maker, words the message must contain)
CASES = {
    "text file": (lambda v: b"just some text\n", "not a zip"),
    "truncated zip": (lambda v: v.read_bytes()[: len(v.read_bytes()) // 2], "damaged"),
    "missing member": (lambda v: {k: d for k, d in _members(v).items() if k != "image.png"}, "missing image.png"),
    "no format tag": (lambda v: _meta(v, format="other"), "format tag"),
    "newer version": (lambda v: _meta(v, version=99), "version 99"),
    "json not utf-8": (lambda v: _members_with(v, session_json=b"\xff\xfe{}"), "damaged"),
    "json nested 100000 deep": (lambda v: _members_with(v, session_json=b"[" * 100_000 + b"]" * 100_000),
                                "nested too deeply"),
    "empty params": (lambda v: _with_info(v, params={}), "params lacks"),
    "params as strings": (lambda v: _params(v, mu="4.0", iters="4"), "mu must be a finite number"),
    "params unknown field": (lambda v: _params(v, turbo=1), "unknown fields"),
    "params out of range": (lambda v: _params(v, iters=10**9), "iters must be in"),
    "cam is a string": (lambda v: _with_info(v, cam="GradCAM"), "info.cam must be"),
    "cam class out of range": (lambda v: _with_info(v, cam={"class_index": 7}), "info.cam.class_index"),
    "label out of range": (lambda v: _with_info(v, label=3), "info.label 3 is not a class index"),
    "negative clean class": (lambda v: _with_info(v, clean_class=-1), "info.clean_class"),
    "bool label": (lambda v: _with_info(v, label=True), "info.label"),
    "top class out of range": (lambda v: _with_info(v, top_classes=[0, 1, 9]), "top_classes[2]"),
    "probability above 1": (lambda v: _with_info(v, top_probs=[1.5, 0.1, 0.1]), "top_probs[0]"),
    "class names not strings": (lambda v: _with_info(v, class_names=[1, 2, 3]), "class_names"),
    "targeted not a bool": (lambda v: _with_info(v, targeted="yes"), "info.targeted"),
    "shown not a pair": (lambda v: _with_info(v, shown="last"), "info.shown"),
    "trace values NaN": (lambda v: _with_arrays(v, trace_values=_set(0, np.nan)), "trace_values holds NaN"),
    "trace margin inf": (lambda v: _with_arrays(v, trace_scalar_margin=_set(0, np.inf)), "NaN or inf"),
    "image NaN": (lambda v: _with_arrays(v, image=_set((0, 0, 0), np.nan)), "image holds NaN"),
    "image above 1": (lambda v: _with_arrays(v, image=_set((0, 0, 0), 2.0)), "outside [0, 1]"),
    "trace class out of range": (lambda v: _with_arrays(v, trace_scalar_pred=_set(0, 5)), "class indices"),
    "trace step beyond the run": (lambda v: _with_arrays(v, trace_step=_set(0, 9)), "steps or iterations"),
    "chosen step beyond the run": (lambda v: _with_arrays(v, result_chosen_step=_set(0, 5)), "result_chosen_step"),
    "image not float32": (lambda v: _with_arrays(v, image=lambda a: a.astype(np.float64)), "float32"),
    "result time negative": (lambda v: _with_run(v, result={"n_forward_backward": 1, "n_forward": 1,
                                                            "time_s": -1}), "numbers >= 0"),
    "no runs": (lambda v: _meta(v, runs=[]), "not 1 to 20 runs"),
    "21 runs": (lambda v: _meta(v, runs=json.loads(_members(v)["session.json"])["runs"] * 21), "not 1 to 20 runs"),
    "shown run missing": (lambda v: _meta(v, shown=1), "the run shown"),
    "runs not a list": (lambda v: _meta(v, runs={"info": {}}), "not 1 to 20 runs"),
    "attack name odd": (lambda v: _with_info(v, attack="../x"), "info.attack"),
    "settings nested": (lambda v: _with_info(v, settings={"steps": [1, 2]}), "info.settings"),
    "views not names": (lambda v: _with_info(v, views="lambda_map"), "info.views"),
    "measured incomplete": (lambda v: _with_info(v, measured={"acp": 3}), "info.measured must hold"),
    "measured negative": (lambda v: _with_info(v, measured={**MEASURED, "l2": -1.0}), "info.measured.l2"),
    "measured class out of range": (lambda v: _with_info(v, measured={**MEASURED, "adv_class": 3}),
                                    "info.measured.adv_class"),
    "too many arrays": (lambda v: {**_members(v), "arrays.npz": _npz({**_arrays(_members(v)), **{
        f"extra{i}": np.zeros(1) for i in range(MAX_ARRAYS)}})}, f"at most {MAX_ARRAYS}"),
    "GSE run with NaN loss": (lambda v: _with_arrays(v, trace_scalar_cw_loss=_set(0, np.nan)), "NaN or inf"),
    "library run with NaN margin": (lambda v: _with_arrays(_write(v.parent / "lib.gses", _with_info(
        v, attack="sigma_zero", params=None)).parent / "lib.gses", trace_scalar_margin=_set(0, np.nan)),
                                    "NaN or inf"),
    "npz member not npy": (lambda v: {**_members(v), "arrays.npz": _npz(_arrays(_members(v)), {"notes.txt": b"x"})},
                           "not an .npy array"),
    "npy object dtype": (lambda v: {**_members(v), "arrays.npz": _npz(_arrays(_members(v)),
                                                                     {"cam.npy": _npy_header("|O", (2,))})},
                         "dtype object"),
    "npy damaged header": (lambda v: {**_members(v), "arrays.npz": _npz(_arrays(_members(v)),
                                                                       {"cam.npy": b"\x93NUMPY\x01\x00\x10\x00{"})},
                           "damaged .npy header"),
    "encrypted member": (lambda v: _patch_member(v.read_bytes(), "session.json", flag=1), "encrypted"),
    "unknown compression": (lambda v: _patch_member(v.read_bytes(), "image.png", method=99),
                            "compression method 99"),
    "run name two lines": (lambda v: _with_info(v, name="a\nb"), "info.name must be one line"),
    "run name with an escape": (lambda v: _with_info(v, name="\x1b[2Jx"), "info.name must be one line"),
    "run name of 81 characters": (lambda v: _with_info(v, name="x" * 81), "at most 80 printable characters"),
    "attack title with a line break": (lambda v: _with_info(v, attack_title="GSE\r\n"), "info.attack_title"),
    "setting name not a name": (lambda v: _with_info(v, settings={"num steps": 3}), "info.settings"),
    "threads infinite": (lambda v: _with_info(v, threads=float("inf")), "info.threads must be an integer >= 1"),
    "seed negative": (lambda v: _with_info(v, seed=-1), "info.seed must be an integer >= 0"),
    "versions a list": (lambda v: _with_info(v, versions=["torch"]), "info.versions"),
    "layers a number": (lambda v: _with_info(v, layers=5), "info.layers"),
    "cam layer a number": (lambda v: _with_info(v, cam_layer=7), "info.cam_layer"),
    "record a list": (lambda v: _with_info(v, record=[1]), "info.record"),
    "cam as integers": (lambda v: {**_members(v), "arrays.npz": _npz({**_arrays(_members(v)),
                                                                      "r0_cam": np.zeros((16, 16), np.int64)})},
                        "array cam holds int64, not floating-point"),
    "result as integers": (lambda v: _with_arrays(v, result_x_adv=lambda a: a.astype(np.uint8)), "result_x_adv"),
    "perturbation of 2 channels": (lambda v: _with_arrays(v, result_delta=lambda a: a[:, :2]), "(1, 2, 16, 16)"),
    "member twice": (lambda v: _twice(v, "session.json"), "member 'session.json' appears more than once"),
    "npz member twice": (lambda v: {**_members(v), "arrays.npz": _twice_npz(_members(v)["arrays.npz"])},
                         "member 'image.npy' appears more than once"),
    "json key twice": (lambda v: _members_with(v, session_json=_members(v)["session.json"].rstrip()[:-1]
                                               + b', "shown": 0}'), "gives the key 'shown' twice"),
}
# Sizes that need gigabytes if believed: opened in a child process under a memory limit.
BOMBS = {
    "member declares 3 GiB": (lambda v: _patch_member(v.read_bytes(), "arrays.npz", size=3 << 30), "uncompressed"),
    "json member over its limit": (lambda v: _members_with(v, session_json=b" " * (LIMITS["session.json"] + 1)),
                                   "uncompressed"),
    "array declares 10 GiB": (lambda v: {**_members(v), "arrays.npz": _npz(
        {k: a for k, a in _arrays(_members(v)).items() if k != "r0_trace_values"},
        {"r0_trace_values.npy": _npy_header("<f4", (10 << 28, 3))})}, "trace_values"),
    "arrays over the total": (lambda v: {**_members(v), "arrays.npz": _npz(_arrays(_members(v)), {
        f"pad{i}.npy": _npy_header("<f8", (30 << 20,)) for i in range(3)})}, "in all"),
    "trace shape 100000 x 100000": (lambda v: _with_arrays(v, trace_shape=np.array([1, 3, 100_000, 100_000])),
                                    "does not fit the image"),
    "frozen bits for a huge batch": (lambda v: _with_arrays(v, trace_shape=np.array([60_000, 3, 16, 16])),
                                     "does not fit"),
}


def _make(tmp_path: Path, valid: Path, maker, name: str = "bad.gses") -> Path:
    made = maker(valid)
    path = tmp_path / name
    if isinstance(made, dict):
        _write(path, made)
    else:
        path.write_bytes(made)
    return path


def _assert_one_line(message: str, path: Path, words: str) -> None:
    assert path.name in message and "\n" not in message and "Traceback" not in message
    assert words in message, message


@pytest.mark.parametrize("case", CASES)
def test_bad_session_gives_one_session_error(case, tmp_path, valid):
    maker, words = CASES[case]
    path = _make(tmp_path, valid, maker)
    before = path.read_bytes()
    with pytest.raises(SessionError) as caught:
        load_session(path)
    _assert_one_line(str(caught.value), path, words)
    assert path.read_bytes() == before


@pytest.fixture(scope="module")
def bomb_messages(tmp_path_factory, valid) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bombs")
    paths = {}
    for number, (case, (maker, _)) in enumerate(BOMBS.items()):
        paths[case] = _make(folder, valid, maker, f"bomb{number}.gses")
    return messages_in_child(paths, "gse_desktop.session", "load_session", "SessionError")


@pytest.mark.parametrize("case", BOMBS)
def test_session_bombs_are_refused_under_a_memory_limit(case, bomb_messages):
    _assert_one_line(bomb_messages[case], Path(f"bomb{list(BOMBS).index(case)}.gses"), BOMBS[case][1])


def test_folder_and_missing_file(tmp_path):
    for path, words in ((tmp_path, "folder"), (tmp_path / "none.gses", "no such file")):
        with pytest.raises(SessionError, match=words) as caught:
            load_session(path)
        assert "\n" not in str(caught.value)


def test_the_valid_session_loads(valid, tmp_path):
    session = load_session(valid)
    assert len(session.history) == 8 and session.info["params"]["iters"] == 4
    old = load_session(_write(tmp_path / "old.gses", _format_1(valid)))  # format 1 files still open
    assert len(old.runs) == 1 and len(old.history) == 8 and old.info == session.info
    for key, value in session.history.to_arrays().items():
        assert np.array_equal(value, old.history.to_arrays()[key]), key


def test_a_library_run_may_lack_what_only_gse_has(valid, tmp_path):
    """NaN where only GSE has a value (its loss, lambda) is a library attack's "none", not damage."""
    library = _write(tmp_path / "lib.gses", _with_info(valid, attack="sigma_zero", params=None,
                                                       settings={"steps": 10}, measured=MEASURED))
    members = _with_arrays(library, trace_scalar_cw_loss=lambda a: np.full_like(a, np.nan),
                           trace_scalar_lambda_b=lambda a: np.full_like(a, np.nan),
                           trace_step=np.zeros(8, np.int32), trace_iteration=np.arange(8, dtype=np.int32),
                           result_chosen_step=np.zeros(1, np.int64))  # a library run: its frames in step 0
    session = load_session(_write(tmp_path / "lib2.gses", members))
    assert np.isnan(session.history.series(0, "cw_loss")).all() and session.info["measured"] == MEASURED


@pytest.mark.parametrize("typed", ["a\nb", "\x1b[2Jred", "tab\there", "x" * 500, "abc\u202edef", "  spaced   out  "])
def test_a_name_the_run_list_gives_is_one_the_loader_reads(typed, valid, tmp_path):
    """The rename rule (state.run_name) and the loader agree: a renamed run's session opens; the raw text does not."""
    name = run_name(typed)
    assert name and name.isprintable() and len(name) <= 80 and "  " not in name
    session = load_session(_write(tmp_path / "renamed.gses", _with_info(valid, name=name)))
    assert session.info["name"] == name
    with pytest.raises(SessionError, match="info.name"):
        load_session(_write(tmp_path / "raw.gses", _with_info(valid, name=typed)))
