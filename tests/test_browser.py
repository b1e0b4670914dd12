"""The report as a reader sees it: opened from file:// in headless Chromium (Debian's
``chromium`` driven by Playwright), it must load without a console error, request nothing
beyond its own file, show every figure, sort its table by a clicked column, and name each
mark's configuration in its figures' tooltips."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import write_project
from sweepbook.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"
)

# Three swept axes, so the report draws every kind of figure a grid sweep gets (learning
# curves, metric against an axis, parallel coordinates, confusion matrix, reliability diagram).
THREE_AXES_SWEEP = """\
# Three axes, one seed: every figure kind of a grid sweep.
experiment = "tiny"
seeds = [0]

[set]
"train.epochs" = 2

[grid]
"optimizer.learning_rate" = [3e-3, 3e-2]
"train.batch_size" = [64, 128]
"model.dropout" = [0.0, 0.2]

[report]
title = "Three axes <b>bold?</b>"
compare = ["optimizer.learning_rate", "train.batch_size", "model.dropout"]
"""


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    figures: list[dict[str, float]] = field(default_factory=list)
    page_width: float = 0.0  # what the page's content needs (scrollWidth), in CSS px
    window_width: float = 0.0


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def visit(browser: object, page_path: Path) -> PageVisit:
    """Open ``page_path``; record console errors, every request, and each figure's box."""
    visit = PageVisit()
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda message: message.type == "error" and visit.console_errors.append(message.text),
    )
    page.on("pageerror", lambda error: visit.console_errors.append(str(error)))
    page.on("request", lambda request: visit.requests.append(request.url))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    visit.page_width = page.evaluate("document.documentElement.scrollWidth")
    visit.window_width = page.evaluate("window.innerWidth")
    # Figures are inline <svg>; an <img> (the harness's broken one) must also have decoded.
    images = page.locator("figure > img, figure > svg")
    for index in range(images.count()):
        image = images.nth(index)
        image.scroll_into_view_if_needed()
        decoded = image.evaluate(
            "el => el.tagName === 'IMG' ? el.complete && el.naturalWidth > 0"
            " : el.querySelectorAll('path, use').length > 0"
        )
        box = image.bounding_box() or {"width": 0.0, "height": 0.0}
        visit.figures.append(
            {
                "visible": float(image.is_visible()),
                "decoded": float(decoded),
                "width": box["width"],
                "height": box["height"],
            }
        )
    page.close()
    return visit


def external(requests: list[str], page_path: Path) -> list[str]:
    """Requests other than the page itself and its inline data."""
    own = page_path.resolve().as_uri()
    return [url for url in requests if url != own and not url.startswith("data:")]


@pytest.fixture(scope="module")
def three_axes_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_project(tmp_path_factory.mktemp("browser"), {"three_axes": THREE_AXES_SWEEP})
    out = root / "reports" / "three_axes"
    assert main(["run", str(root / "sweeps" / "three_axes.toml"), "--out", str(out)]) == 0
    return out / "index.html"


def test_report_loads_cleanly_offline_and_shows_every_figure(browser, three_axes_report):
    visit_ = visit(browser, three_axes_report)
    assert visit_.console_errors == []
    assert external(visit_.requests, three_axes_report) == []
    figure_files = {p.stem for p in (three_axes_report.parent / "figures").glob("*.svg")}
    assert "parallel_coordinates" in figure_files
    assert len(visit_.figures) == len(figure_files) >= 5
    for figure in visit_.figures:
        assert figure["visible"] and figure["decoded"]
        assert figure["width"] > 150 and figure["height"] > 80


def test_report_does_not_scroll_sideways_in_a_1280_px_window(browser, three_axes_report):
    """The comparison table (16 columns here) scrolls inside its own box; the page does not."""
    visit_ = visit(browser, three_axes_report)
    assert visit_.window_width == 1280
    assert visit_.page_width <= visit_.window_width


def test_index_of_reports_loads_cleanly(browser, three_axes_report):
    index = three_axes_report.parent.parent / "index.html"
    visit_ = visit(browser, index)
    assert visit_.console_errors == []
    assert external(visit_.requests, index) == []


def test_the_check_catches_an_external_request_and_a_broken_figure(
    browser, three_axes_report, tmp_path
):
    """The harness itself: a page that fetches a remote file and embeds a broken image fails."""
    html = three_axes_report.read_text(encoding="utf-8").replace(
        "</body>",
        '<figure><img src="data:image/svg+xml;base64,AAAA" alt="broken"></figure>'
        '<img src="https://example.invalid/tracker.png" alt=""></body>',
    )
    page = tmp_path / "tampered.html"
    page.write_text(html, encoding="utf-8")
    visit_ = visit(browser, page)
    assert "https://example.invalid/tracker.png" in external(visit_.requests, page)
    assert not all(figure["decoded"] for figure in visit_.figures)


def _column(page: object, column: int) -> list[tuple[str, float | None]]:
    """The results table's rows in page order: (first cell, sort key of ``column``)."""
    return page.evaluate(  # type: ignore[attr-defined, no-any-return]
        """column => Array.from(document.querySelectorAll("#results table.sortable tbody tr"))
          .map(row => [row.cells[0].textContent.trim(), JSON.parse(row.dataset.sort)[column]])""",
        column,
    )


def test_clicking_a_header_sorts_the_table_and_a_second_click_reverses_it(
    browser, three_axes_report
):
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(three_axes_report.resolve().as_uri(), wait_until="load")
    headers = page.locator("#results table.sortable thead th")
    texts = [headers.nth(i).inner_text() for i in range(headers.count())]
    column = next(i for i, text in enumerate(texts) if "(mean ± std)" in text)
    before = _column(page, column)
    values = [value for _, value in before]
    assert None not in values and len(set(values)) > 1  # a column the sort can show

    headers.nth(column).locator("button").click()
    ascending = _column(page, column)
    assert [value for _, value in ascending] == sorted(values)
    assert sorted(ascending) == sorted(before)  # whole rows moved, each with its own values
    assert headers.nth(column).get_attribute("aria-sort") == "ascending"

    headers.nth(column).locator("button").click()
    descending = _column(page, column)
    assert [value for _, value in descending] == sorted(values, reverse=True)
    assert headers.nth(column).get_attribute("aria-sort") == "descending"
    assert ascending != descending

    # Another column takes over the direction mark; the first loses it.
    headers.nth(0).locator("button").click()
    assert headers.nth(column).get_attribute("aria-sort") is None
    first = [name for name, _ in _column(page, column)]
    assert first == sorted(first, key=float)
    page.close()
    assert external(requests, three_axes_report) == []


def test_hovering_a_mark_in_a_figure_shows_its_configuration(browser, three_axes_report):
    """Each line of the parallel coordinates and each point of the metric figure carries a
    <title> (the browser's tooltip) naming its configuration and value; hit-testing the point's
    centre reaches the element that carries it."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(three_axes_report.resolve().as_uri(), wait_until="load")
    lines = page.eval_on_selector_all(
        "#parallel_coordinates svg title", "titles => titles.map(t => t.textContent)"
    )
    assert len(lines) == 8  # one per configuration
    for text in lines:
        assert "learning_rate=" in text and "batch_size=" in text and "dropout=" in text
        assert ": test.accuracy 0." in text
    assert len(set(lines)) == 8

    point = page.locator("section[id$='_vs_learning_rate'] svg use:has(> title)").first
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    assert box is not None
    hit = page.evaluate(
        """([x, y]) => {
             const element = document.elementFromPoint(x, y);
             const title = element && element.querySelector(":scope > title");
             return title ? title.textContent : null;
           }""",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert hit is not None and "learning_rate=" in hit and "test.accuracy" in hit
    page.close()
    assert external(requests, three_axes_report) == []
