"""The history page's timeline: its events are well formed, its labels never collide, and the
committed PNG is the script's current output at twice the display resolution."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("make_timeline", ROOT / "tools/make_timeline.py")
timeline = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = timeline  # dataclasses look their module up there
SPEC.loader.exec_module(timeline)

COLUMN_PX = 750  # the book's text column at a 1280-px-wide window


@pytest.fixture
def figure():
    fig = timeline.draw()
    fig.canvas.draw()  # lay the text out, so its extents are known
    yield fig
    plt.close(fig)


def test_events_are_dated_sourced_and_in_order():
    dates = [event.date for event in timeline.EVENTS]
    assert dates == sorted(dates)
    for event in timeline.EVENTS:
        assert 1 <= event.month <= 12 and 1950 <= event.year <= 2025, event
        assert event.kind in timeline.KINDS, event
        assert event.source.strip() and event.label.strip(), event
        # Open or proprietary is said of the generative models, and only of them.
        assert (event.open_weights is not None) == (event.kind == "generative"), event


def test_axis_positions_run_down_the_axis_in_date_order():
    positions = [timeline.axis_position(e.date) for e in timeline.EVENTS]
    assert positions == sorted(positions)
    assert timeline.axis_position(timeline.FIRST_YEAR) == 0
    assert timeline.axis_position(timeline.LAST_YEAR) == pytest.approx(1)
    assert timeline.axis_position(timeline.BREAK_YEAR) == pytest.approx(timeline.EARLY_SHARE)


def test_no_text_collides_or_leaves_the_figure(figure):
    renderer = figure.canvas.get_renderer()
    texts = [t for ax in figure.axes for t in ax.texts] + figure.texts
    texts += figure.legends[0].get_texts()
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    labels = [t.get_text() for t in texts if t.get_text()]
    assert len(boxes) >= len(timeline.EVENTS)
    page = figure.bbox
    for box, label in zip(boxes, labels, strict=True):
        assert page.x0 <= box.x0 and box.x1 <= page.x1, f"{label!r} leaves the figure"
        assert page.y0 <= box.y0 and box.y1 <= page.y1, f"{label!r} leaves the figure"
    for i, (a, label_a) in enumerate(zip(boxes, labels, strict=True)):
        for b, label_b in zip(boxes[i + 1 :], labels[i + 1 :], strict=True):
            assert not a.overlaps(b), f"{label_a!r} collides with {label_b!r}"


def test_text_is_readable_in_the_column(figure):
    # Shown COLUMN_PX wide, a point of text is COLUMN_PX / (72 * width in inches) pixels.
    px_per_point = COLUMN_PX / (72 * timeline.WIDTH_IN)
    texts = [t for ax in figure.axes for t in ax.texts] + figure.legends[0].get_texts()
    assert min(t.get_fontsize() for t in texts) * px_per_point >= 11  # at least 11 px


def test_committed_png_is_current_and_retina(tmp_path, monkeypatch):
    committed = mpimg.imread(timeline.OUTPUT)  # (height, width, 4) floats
    assert committed.shape[1] == 2 * COLUMN_PX == timeline.WIDTH_IN * timeline.DPI
    monkeypatch.setattr(timeline, "OUTPUT", tmp_path / "timeline.png")
    timeline.main()
    fresh = mpimg.imread(tmp_path / "timeline.png")
    assert fresh.shape == committed.shape, "run `python tools/make_timeline.py`"
    assert np.abs(fresh - committed).mean() < 1e-3, "run `python tools/make_timeline.py`"
