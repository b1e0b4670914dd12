"""LaTeX escaping, shared by the booktabs tables and the PGF figures (whose text LaTeX sets)."""

from __future__ import annotations

import re

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_SYMBOLS = (("±", "pm"), ("×", "times"), ("≥", "geq"), ("≤", "leq"), ("≈", "approx"))
# Matplotlib writes tick labels as math ("$\mathdefault{10^{-2}}$"): those are LaTeX already.
_MATH = re.compile(r"^\$[^$]*\$$")


def latex_escape(text: str) -> str:
    """Plain text as LaTeX that typesets the same characters."""
    escaped = "".join(_SPECIALS.get(char, char) for char in text)
    for symbol, command in _SYMBOLS:
        escaped = escaped.replace(symbol, f"$\\{command}$")
    return escaped.replace("—", "--")


def latex_text(text: str) -> str:
    """A figure text for LaTeX: math strings as they are, anything else escaped."""
    return text if _MATH.match(text) else latex_escape(text)
