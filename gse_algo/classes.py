"""Class lookup by index or name (torch-free): the one rule the command line, the API and the app use."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class ClassLookupError(ValueError):
    """A class that the model does not have, or a name that several classes share; the text is for the user."""


def find_class(names: Sequence[str], query: int | str, model: str = "the model") -> int:
    """The index of `query` among `names`: an index (also written as text) or a name, case-insensitive.

    A name that several classes share (ImageNet has two 'crane' and two 'maillot') is refused with the candidate
    indices; an unknown name gets close matches as a hint.
    """
    count = len(names)
    if isinstance(query, str) and query.strip().lstrip("-").isdecimal() and query.strip().lstrip("-").isascii():
        query = int(query)
    if isinstance(query, int) and not isinstance(query, bool):
        if not 0 <= query < count:
            raise ClassLookupError(f"class {query} is out of range for {model}: it has classes 0..{count - 1}")
        return query
    if not isinstance(query, str):
        raise ClassLookupError(f"a class is an index or a name, not {type(query).__name__}")
    wanted = query.strip().lower()
    lowered = [name.lower() for name in names]
    matches = [i for i, name in enumerate(lowered) if name == wanted]
    if len(matches) > 1:
        raise ClassLookupError(f"class name {query!r} is ambiguous in {model} (indices "
                               f"{', '.join(map(str, matches))}); give the index")
    if not matches:
        close = difflib.get_close_matches(wanted, lowered, n=5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ClassLookupError(f"{model} has no class named {query!r}{hint}")
    return matches[0]
