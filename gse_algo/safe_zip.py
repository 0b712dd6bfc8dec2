"""Bounded reading of zip archives and .npz files: sizes are checked on the headers before anything is decompressed.

- A member name may appear once only. A zip member is read only when its uncompressed size (from the zip header)
  is within a limit, it is not encrypted and it uses a method this program writes (stored or deflate); zipfile
  never yields more bytes than the header declares, so a lying header cannot inflate past the limit.
- An .npz member is an .npy file: its header (format 1.0 or 2.0: numpy.lib.format.read_array_header_1_0/2_0) gives
  the dtype and shape, so the array's size is known before it is allocated. Only bool/integer/float dtypes are
  read, never pickled objects.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections import Counter
from collections.abc import Iterable

import numpy as np
from numpy.lib import format as npy

METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
MAX_NPZ_MEMBERS = 256
_NPY_HEADER_READERS = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}


class ArchiveError(ValueError):
    """A zip or .npz member that is not read: too large, encrypted, unknown compression, damaged, not numeric."""


def check_member(info: zipfile.ZipInfo, limit: int) -> None:
    """ArchiveError unless the member can be read safely: at most `limit` bytes uncompressed, plain zip."""
    if info.flag_bits & 0x1:
        raise ArchiveError(f"member {info.filename!r} is encrypted")
    if info.compress_type not in METHODS:
        raise ArchiveError(f"member {info.filename!r} uses zip compression method {info.compress_type}, "
                           "not stored or deflate")
    if info.file_size > limit:
        raise ArchiveError(f"member {info.filename!r} is {info.file_size / 2**20:,.1f} MiB uncompressed; "
                           f"at most {limit / 2**20:,.0f} MiB")


def repeated(names: Iterable[str]) -> str | None:
    """The first name that appears more than once, or None."""
    return next((name for name, count in Counter(names).items() if count > 1), None)


def unique_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's members; ArchiveError when a name appears twice (which copy is read depends on the reader)."""
    members = archive.infolist()
    twice = repeated(m.filename for m in members)
    if twice is not None:
        raise ArchiveError(f"member {twice!r:.80} appears more than once")
    return members


def read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """The bytes of one member after check_member."""
    info = archive.getinfo(name)
    check_member(info, limit)
    return archive.read(info)


def read_npz(data: bytes, max_array_bytes: int, max_total_bytes: int,
             max_members: int = MAX_NPZ_MEMBERS) -> dict[str, np.ndarray]:
    """The arrays of an .npz held in `data`; ArchiveError for more than `max_members` arrays, any array over
    `max_array_bytes`, arrays over `max_total_bytes` together, a non-numeric dtype or a damaged member."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = unique_members(archive)
        if len(members) > max_members:
            raise ArchiveError(f"the arrays file holds {len(members)} members; at most {max_members}")
        total = 0
        for info in members:  # every header first: nothing is allocated before the sizes are known
            if not info.filename.endswith(".npy"):
                raise ArchiveError(f"member {info.filename!r} of the arrays file is not an .npy array")
            check_member(info, max_array_bytes + 65536)  # + the .npy header
            with archive.open(info) as stream:
                dtype, shape, nbytes = _npy_header(stream, info.filename)
            total += nbytes
            if nbytes > max_array_bytes or total > max_total_bytes:
                raise ArchiveError(f"array {info.filename[:-4]!r} {list(shape)} of {dtype} needs "
                                   f"{nbytes / 2**20:,.1f} MiB; at most {max_array_bytes / 2**20:,.0f} MiB per "
                                   f"array and {max_total_bytes / 2**20:,.0f} MiB in all")
        for info in members:
            with archive.open(info) as stream:
                arrays[info.filename[:-4]] = npy.read_array(stream, allow_pickle=False)
    return arrays


def _npy_header(stream, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, bytes) from an .npy header, without reading the data."""
    try:
        version = npy.read_magic(stream)
        reader = _NPY_HEADER_READERS.get(version)
        if reader is None:
            raise ArchiveError(f"array {name!r} has .npy format version {version}, not 1.0 or 2.0")
        shape, _fortran, dtype = reader(stream)
    except ArchiveError:
        raise
    except (ValueError, SyntaxError, TypeError, EOFError) as error:  # numpy's messages for a damaged header
        raise ArchiveError(f"array {name!r} has a damaged .npy header ({' '.join(str(error).split())[:120]})") \
            from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise ArchiveError(f"array {name!r} has dtype {dtype}; only bool/integer/float arrays are read")
    return dtype, shape, math.prod(shape) * dtype.itemsize
