"""Readability checks shared by the figure tests (issue 22): labelled axes, legible legends outside the data."""

from __future__ import annotations

MIN_FONT = 8


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def assert_readable(fig) -> None:
    """Every panel says what its axes show and has a title; every legend is >= 8 pt and, when the figure has
    one legend for all panels, it covers no panel; the figure has a title."""
    fig.draw_without_rendering()  # lays out (constrained layout) so that extents are final
    assert fig.get_suptitle().strip(), "figure has no title"
    axes = [ax for ax in fig.axes if ax.has_data()]
    assert axes, "figure has no data"
    for ax in axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), f"unlabelled axis in panel {ax.get_title()!r}"
        assert ax.get_title().strip(), "panel without a title"
        for t in ax.get_xticklabels() + ax.get_yticklabels():
            assert t.get_fontsize() >= MIN_FONT, f"tick label {t.get_text()!r} at {t.get_fontsize()} pt"
    legends = [ax.get_legend() for ax in axes if ax.get_legend() is not None] + list(fig.legends)
    for leg in legends:
        for t in leg.get_texts():
            assert t.get_fontsize() >= MIN_FONT, f"legend entry {t.get_text()!r} at {t.get_fontsize()} pt"
    for leg in fig.legends:
        box = leg.get_window_extent()
        for ax in axes:
            assert not _overlaps(box, ax.get_window_extent()), f"the legend covers panel {ax.get_title()!r}"
