"""Text that parses but cannot be stored: JSON escapes such as \\ud800 decode to lone surrogates.

They are valid JSON and a valid Python str, but not Unicode: every later step that encodes the
text (hashing, tokenizing, writing Parquet) fails on them. Readers check once, where the line or
file is known, so the item is skipped or refused by name instead of failing later.
"""

from __future__ import annotations

import json
from typing import Any


def lone_surrogate(value: Any) -> str | None:
    """Why `value` (a str, or JSON data holding strings) cannot be written as UTF-8, or None."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"holds {err.object[err.start]!r} at character {err.start}, a lone surrogate that is not valid Unicode"
    except (TypeError, ValueError, RecursionError) as err:
        return f"is not plain JSON ({type(err).__name__})"
    return None
