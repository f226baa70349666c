"""Controls that run in the reader's browser, without a Python kernel.

A notebook computes the data with the real model (so nbval and the tests check the numbers)
and describes a chart whose inputs - sliders, dropdowns, radio buttons - are bound to
Vega-Lite parameters (https://altair-viz.github.io/user_guide/interactions/parameters.html).
The arithmetic that reacts to a control (a softmax at a new temperature, a filter by layer)
is written as Vega-Lite transforms, so it runs in JavaScript in the page: in the HTML book
with no server, and in Jupyter or Colab alike.

``show(chart, name)`` turns a chart into the HTML output of a cell. The page it lands on
loads Vega, Vega-Lite and Vega-Embed: the built book ships them (``book/_ext/offline_scripts.py``
copies a pinned bundle in at build time), and Jupyter or Colab fetch them from a CDN.
"""

from __future__ import annotations

import re

import altair as alt
from altair.utils.html import spec_to_html

__all__ = ["ControlHTML", "show"]

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


class ControlHTML:
    """The HTML of one control: a ``<div>`` and the script that draws the chart into it."""

    def __init__(self, html: str, spec: dict) -> None:
        self.html = html
        self.spec = spec  # the Vega-Lite specification, for tests and for reuse

    def _repr_html_(self) -> str:
        return self.html


def show(chart: alt.TopLevelMixin, name: str) -> ControlHTML:
    """The cell output for ``chart``: a control that runs in the browser.

    ``name`` (lowercase letters, digits and dashes, unique on the page) becomes the id of the
    chart's ``<div>``, so the output is the same on every run (Altair's own renderer draws a
    random id). The specification is validated against the Vega-Lite schema.
    """
    if not isinstance(chart, alt.TopLevelMixin):
        raise TypeError(f"chart must be an Altair chart, got {type(chart).__name__}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"name={name!r} must be lowercase letters, digits and dashes, starting with a letter"
        )
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    html = spec_to_html(
        spec,
        mode="vega-lite",
        vega_version=alt.VEGA_VERSION,
        vegalite_version=alt.VEGALITE_VERSION,
        vegaembed_version=alt.VEGAEMBED_VERSION,
        output_div=f"control-{name}",
        # SVG, so that the numbers a chart shows are text a browser test can read.
        embed_options={"actions": False, "renderer": "svg"},
        template="universal",
    )
    return ControlHTML(html, spec)
