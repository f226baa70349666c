"""Sphinx extension: the JavaScript the book's controls need ships with the book.

The controls (``tutorial_lib.controls``) are Vega-Lite charts. Altair's HTML output loads
Vega, Vega-Lite and Vega-Embed from a CDN unless the page already has them. This extension
writes one pinned bundle of the three (from ``vl-convert-python``, which embeds them) into
``_static/`` at build time, loads it on every page, and tells Altair's loader which versions
are present, so an offline reader of the built book sees working controls.
MathJax is made offline by the ``sphinx-mathjax-offline`` extension (see ``_config.yml``).
"""

from __future__ import annotations

import json
from pathlib import Path

BUNDLE = "vega-bundle.js"


def write_bundle(app, exception) -> None:
    """After a successful build, write the Vega bundle to ``_static/``."""
    if exception is not None or app.builder.format != "html":
        return
    import altair as alt
    import vl_convert

    # Vega-Lite "6.4.1" -> the "6.4" build that vl-convert embeds.
    vl_version = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    # A function scope keeps the bundle's top-level names out of the page's globals; the
    # bundle itself sets window.vega, window.vegaLite and window.vegaEmbed.
    (static / BUNDLE).write_text(f"(function () {{\n{bundle}\n}})();\n", encoding="utf-8")


def setup(app):
    import altair as alt

    app.add_js_file(BUNDLE)
    # Altair's loader skips the CDN for a library whose version is already recorded here.
    versions = {
        "vega_version": alt.VEGA_VERSION,
        "vegalite_version": alt.VEGALITE_VERSION,
        "vegaembed_version": alt.VEGAEMBED_VERSION,
    }
    app.add_js_file(None, body=f"var VEGA_DEBUG = {json.dumps(versions)};")
    app.connect("build-finished", write_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
