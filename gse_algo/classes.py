"""Class lookup by index or name (torch-free): the one rule the command line, the API and the app use."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence


class ClassLookupError(ValueError):
    """A class that the model does not have, or a name that several classes share; the text is for the user."""


def find_class(names: Sequence[str], query: int | str, model: str = "the model") -> int:
    """The index of `query` among `names`: an index (also written as ASCII digits) or a class name.

    Names match exactly first, then case-insensitively (surrounding spaces ignored). A name that several classes
    share (torchvision's ImageNet list has "Cardigan" and "cardigan") is refused with the candidates' indices; an
    unknown name gets close matches (difflib) as suggestions.
    """
    count = len(names)
    if isinstance(query, str) and re.fullmatch(r"\s*-?[0-9]+\s*", query):
        query = int(query)
    if isinstance(query, int) and not isinstance(query, bool):
        if not 0 <= query < count:
            raise ClassLookupError(f"class {query} is out of range for {model}: it has classes 0..{count - 1}")
        return query
    if not isinstance(query, str):
        raise ClassLookupError(f"a class is an index or a name, not {type(query).__name__}")
    wanted = query.strip()
    matches = [i for i, name in enumerate(names) if name == wanted]
    if not matches:
        matches = [i for i, name in enumerate(names) if name.lower() == wanted.lower()]
    if len(matches) > 1:
        candidates = ", ".join(f"{i} ({names[i]})" for i in matches)
        raise ClassLookupError(f"class name {query!r} is ambiguous in {model}: it could be {candidates}; "
                               f"give the index")
    if not matches:
        lowered = {name.lower(): name for name in names}
        close = difflib.get_close_matches(wanted.lower(), list(lowered), n=5)
        hint = f"; close matches: {', '.join(lowered[c] for c in close)}" if close else ""
        raise ClassLookupError(f"{model} has no class named {query!r}{hint}")
    return matches[0]
