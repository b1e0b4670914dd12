"""Paper venues: the column and text widths and the font sizes that figures are drawn at.

The numbers come from tueplots (https://github.com/pnkraemer/tueplots), which takes them from
each venue's style files; this module only names the venues and says which typeface each
paper is set in. A two-column venue draws small figures at its column width and wide ones at
its text width. A one-column venue (NeurIPS, ICLR, JMLR, TMLR) draws wide figures at its text
width and small ones at half of it, so that two stand side by side (tueplots' ``rel_width``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tueplots import figsizes, fontsizes

DEFAULT_VENUE = "article"


@dataclass(frozen=True)
class Venue:
    name: str
    title: str  # as a reader knows it: "ICML 2024"
    column_width_in: float  # small figures (one column; half the text width on one-column venues)
    text_width_in: float  # wide figures (the full text width)
    two_column: bool
    font_size: float  # labels and titles: the venue's caption size, at 100% scale
    small_font_size: float  # tick labels, legends, numbers written in cells
    typeface: str  # a key of TYPEFACES


# Serif families that set a venue's text, in order of preference; the first one installed is
# used (LaTeX's own fonts are set in the PGF files, which take the paper's fonts anyway).
# Liberation Serif and Nimbus Roman are metric-compatible Times clones that Debian installs.
TYPEFACES: dict[str, tuple[str, ...]] = {
    "times": ("Times New Roman", "Times", "Liberation Serif", "TeX Gyre Termes", "Nimbus Roman"),
    "computer-modern": ("Latin Modern Roman", "CMU Serif"),
    "dejavu": ("DejaVu Serif",),  # ships with matplotlib: the same on every machine
}
# Families that install one file per optical size under a single name (Latin Modern Roman:
# lmroman5 to lmroman17). matplotlib picks among same-named files in the order it found them on
# disk, so one machine drew every figure in the 5-point design, whose letters are a fifth wider
# (text ran past the figure's edge). Figures take the design of a text size instead, registered
# under a name of its own: the file-name prefix of that design, and the name.
TEXT_DESIGNS: dict[str, tuple[str, str]] = {
    "Latin Modern Roman": ("lmroman10-", "Latin Modern Roman 10"),
}
# Mathtext (log-axis ticks such as 10^-3) in the face closest to each typeface.
MATH_FONTSETS = {"times": "stix", "computer-modern": "cm", "dejavu": "dejavuserif"}


def _points(size: float) -> float:
    """A font size in points, without float noise (tueplots computes JMLR's 7.95 as
    7.949999999999999)."""
    return round(float(size), 2)


def _width(size: dict[str, Any]) -> float:
    return float(size["figure.figsize"][0])


def _two_column(
    name: str,
    title: str,
    half: Callable[..., dict[str, Any]],
    full: Callable[..., dict[str, Any]],
    sizes: Callable[..., dict[str, Any]],
    typeface: str,
) -> Venue:
    fonts = sizes()
    return Venue(
        name=name,
        title=title,
        column_width_in=_width(half()),
        text_width_in=_width(full()),
        two_column=True,
        font_size=_points(fonts["font.size"]),
        small_font_size=_points(fonts["xtick.labelsize"]),
        typeface=typeface,
    )


def _one_column(
    name: str,
    title: str,
    size: Callable[..., dict[str, Any]],
    sizes: Callable[..., dict[str, Any]],
    typeface: str,
) -> Venue:
    fonts = sizes()
    return Venue(
        name=name,
        title=title,
        column_width_in=_width(size(rel_width=0.5)),
        text_width_in=_width(size()),
        two_column=False,
        font_size=_points(fonts["font.size"]),
        small_font_size=_points(fonts["xtick.labelsize"]),
        typeface=typeface,
    )


def _article() -> Venue:
    """The default: the two-column layout most ML venues share (ICML, AISTATS, UAI: 3.25 in
    columns in 6.75 in of text; it also fits an A4 article with 2 cm margins), in a typeface
    every machine has, at the sizes sweepbook has always used (8 pt labels, 7 pt ticks)."""
    return Venue(
        name="article",
        title="two-column article",
        column_width_in=_width(figsizes.icml2024_half()),
        text_width_in=_width(figsizes.icml2024_full()),
        two_column=True,
        font_size=8.0,
        small_font_size=7.0,
        typeface="dejavu",
    )


VENUES: dict[str, Venue] = {
    venue.name: venue
    for venue in (
        _article(),
        _two_column(
            "icml2024",
            "ICML 2024",
            figsizes.icml2024_half,
            figsizes.icml2024_full,
            fontsizes.icml2024,
            "times",
        ),
        _two_column(
            "aistats2025",
            "AISTATS 2025",
            figsizes.aistats2025_half,
            figsizes.aistats2025_full,
            fontsizes.aistats2025,
            "computer-modern",
        ),
        _two_column(
            "uai2023",
            "UAI 2023",
            figsizes.uai2023_half,
            figsizes.uai2023_full,
            fontsizes.uai2023,
            "times",
        ),
        _two_column(
            "cvpr2024",
            "CVPR 2024",
            figsizes.cvpr2024_half,
            figsizes.cvpr2024_full,
            fontsizes.cvpr2024,
            "times",
        ),
        _two_column(
            "aaai2024",
            "AAAI 2024",
            figsizes.aaai2024_half,
            figsizes.aaai2024_full,
            fontsizes.aaai2024,
            "times",
        ),
        _one_column(
            "neurips2024", "NeurIPS 2024", figsizes.neurips2024, fontsizes.neurips2024, "times"
        ),
        _one_column("iclr2024", "ICLR 2024", figsizes.iclr2024, fontsizes.iclr2024, "times"),
        _one_column("jmlr2001", "JMLR", figsizes.jmlr2001, fontsizes.jmlr2001, "computer-modern"),
        _one_column("tmlr2023", "TMLR", figsizes.tmlr2023, fontsizes.tmlr2023, "computer-modern"),
    )
}
# Unversioned names take the latest edition tueplots knows.
ALIASES = {
    "icml": "icml2024",
    "aistats": "aistats2025",
    "uai": "uai2023",
    "cvpr": "cvpr2024",
    "aaai": "aaai2024",
    "neurips": "neurips2024",
    "iclr": "iclr2024",
    "jmlr": "jmlr2001",
    "tmlr": "tmlr2023",
}


def venue_names() -> list[str]:
    return [*VENUES, *ALIASES]


def unknown_venue_message(name: str) -> str | None:
    """Why ``name`` names no venue (with the closest names), or None when it names one."""
    if name in VENUES or name in ALIASES:
        return None
    close = difflib.get_close_matches(name, venue_names(), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown venue '{name}'; {hint}known: {', '.join(venue_names())}"


def venue_named(name: str) -> Venue:
    """The venue called ``name`` (or an alias of it). Raises ValueError naming the known ones."""
    problem = unknown_venue_message(name)
    if problem:
        raise ValueError(problem)
    return VENUES[ALIASES.get(name, name)]
