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

__all__ = ["ControlHTML", "show", "attention_heads", "word_neighbours", "date_attention"]

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
    # Altair's template lays the chart and its inputs out in a row (display: flex), where a
    # wide dropdown squeezes the chart in a ~700 px column: put the inputs below the chart.
    html += f"<style>#control-{name}.vega-embed {{ flex-direction: column; }}</style>\n"
    return ControlHTML(html, spec)


# --------------------------------------------------------------------------------------
# Attention and embeddings (chapters 02, 03, 04, 08): a head explorer, word neighbours,
# the date translator's attention. Their data come from tutorial_lib.attention,
# tutorial_lib.embeddings and tutorial_lib.seq2seq.
# --------------------------------------------------------------------------------------

# Appended to axis labels to keep repeated tokens ("the" ... "the") apart on a nominal axis:
# n zero-width spaces for position n, which the reader does not see.
_UNIQUE = "pad('', {position}, '\u200b')"


def _check_rows(rows: object, fields: tuple[str, ...]) -> list[dict]:
    if isinstance(rows, (str, dict)) or not rows or not isinstance(rows, list):
        raise TypeError(f"rows must be a non-empty list of dicts, got {type(rows).__name__}")
    for row in rows:
        if not isinstance(row, dict) or not set(fields) <= set(row):
            raise ValueError(f"each row must have the fields {fields}, got {row!r:.200}")
    return rows


def _label(token: str, position: str) -> str:
    """A Vega expression: the axis label of ``token`` at ``position``, "space" for " "."""
    return f"({token} == ' ' ? 'space' : {token}) + " + _UNIQUE.format(position=position)


def _matrix_cells(n_cols: str, rows_from: str, cols_from: str) -> list[dict]:
    """Vega-Lite transforms: one row's flattened ``weights`` -> one datum per matrix cell.

    The weights travel in percent (whole numbers, a smaller page) and become ``weight``.
    ``n_cols`` is an expression for the number of columns; ``rows_from`` and ``cols_from``
    name the token lists that label the rows (queries) and the columns (keys).
    """
    return [
        {"flatten": ["weights"], "as": ["percent"]},
        {"calculate": "datum.percent / 100", "as": "weight"},
        {"window": [{"op": "row_number", "as": "index"}]},  # 1, 2, ... in row-major order
        {"calculate": f"floor((datum.index - 1) / ({n_cols}))", "as": "query"},
        {"calculate": f"(datum.index - 1) % ({n_cols})", "as": "key"},
        {
            "calculate": _label(f"datum.{rows_from}[datum.query]", "datum.query"),
            "as": "query_token",
        },
        {"calculate": _label(f"datum.{cols_from}[datum.key]", "datum.key"), "as": "key_token"},
    ]


def _weights_heatmap(size: int, annotate: bool, x_title: str, y_title: str) -> alt.LayerChart:
    """The cells drawn by ``_matrix_cells``: colour = weight, optionally the number too."""
    x = alt.X(
        "key_token:N",
        sort=alt.EncodingSortField("key", op="min"),
        title=x_title,
        axis=alt.Axis(labelAngle=-45, labelFontSize=11, titleFontSize=12),
    )
    y = alt.Y(
        "query_token:N",
        sort=alt.EncodingSortField("query", op="min"),
        title=y_title,
        axis=alt.Axis(labelFontSize=11, titleFontSize=12),
    )
    cells = (
        alt.Chart()
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "weight:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="attention weight"
            ),
            tooltip=[
                alt.Tooltip("query_token:N", title="query"),
                alt.Tooltip("key_token:N", title="key"),
                alt.Tooltip("weight:Q", format=".2f"),
            ],
        )
    )
    layers = [cells]
    if annotate:
        # The weight in each cell: white on dark cells, black on light ones.
        layers.append(
            alt.Chart()
            .mark_text(fontSize=10)
            .encode(
                x=x,
                y=y,
                text=alt.Text("weight:Q", format=".2f"),
                color=alt.condition("datum.weight > 0.5", alt.value("white"), alt.value("black")),
            )
        )
    return alt.layer(*layers).properties(width=size, height=size)


def attention_heads(
    rows: list[dict],
    *,
    text: str | None = None,
    layer: int = 0,
    head: int = 0,
    size: int = 420,
    annotate: bool = True,
) -> alt.LayerChart:
    """A head explorer: pick a text, a layer and a head; see that head's attention weights.

    Args:
        rows: ``tutorial_lib.attention.head_weight_rows(...)``: one row per (text, layer,
            head) with the tokens and the flattened weight matrix.
        text, layer, head: what the chart shows first (default: the first text, layer 0,
            head 0).
        size: width and height of the heatmap in pixels.
        annotate: write each weight in its cell (readable up to about 15 tokens).

    The chart's parameters ``text``, ``layer`` and ``head`` are bound to a dropdown and two
    sliders; the browser filters the rows and expands the chosen one into cells.
    """
    rows = _check_rows(rows, ("text", "layer", "head", "tokens", "weights"))
    texts = list(dict.fromkeys(r["text"] for r in rows))
    n_layers = max(r["layer"] for r in rows) + 1
    n_heads = max(r["head"] for r in rows) + 1
    if text is None:
        text = texts[0]
    if text not in texts:
        raise ValueError(f"text={text!r} is not one of the rows' texts {texts}")
    for name, value, count in [("layer", layer, n_layers), ("head", head, n_heads)]:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise ValueError(f"{name}={value!r} must be an int in 0..{count - 1}")

    text_param = alt.param(
        name="text", value=text, bind=alt.binding_select(options=texts, name="text ")
    )
    layer_param = alt.param(
        name="layer",
        value=layer,
        bind=alt.binding_range(min=0, max=n_layers - 1, step=1, name="layer "),
    )
    head_param = alt.param(
        name="head",
        value=head,
        bind=alt.binding_range(min=0, max=n_heads - 1, step=1, name="head "),
    )
    chart = _weights_heatmap(
        size, annotate, "key: the token attended to", "query: the token attending"
    )
    chart.data = alt.Data(values=rows)
    chart.transform = [
        # Keep the one row the inputs select, then expand its matrix into cells.
        {"filter": "datum.text == text && datum.layer == layer && datum.head == head"},
        {"calculate": "length(datum.tokens)", "as": "n"},
        *_matrix_cells("datum.n", "tokens", "tokens"),
    ]
    return chart.add_params(text_param, layer_param, head_param).properties(
        title=alt.Title(alt.ExprRef("'layer ' + layer + ', head ' + head"), fontSize=14)
    )


def word_neighbours(rows: list[dict], *, query: str | None = None) -> alt.LayerChart:
    """Pick a word or an analogy from a list; see its nearest words and their similarity.

    ``rows`` is ``tutorial_lib.embeddings.neighbour_rows(...)``; the chart's parameter
    ``query`` is bound to a dropdown of the rows' queries (default: the first).
    """
    rows = _check_rows(rows, ("query", "rank", "word", "similarity"))
    queries = list(dict.fromkeys(r["query"] for r in rows))
    if query is None:
        query = queries[0]
    if query not in queries:
        raise ValueError(f"query={query!r} is not one of the rows' queries {queries}")
    query_param = alt.param(
        name="query", value=query, bind=alt.binding_select(options=queries, name="word or analogy ")
    )
    y = alt.Y(
        "word:N",
        sort=alt.EncodingSortField("rank", op="min"),
        title=None,  # the chart's title says it
        axis=alt.Axis(labelFontSize=12),
    )
    x = alt.X(
        "similarity:Q",
        scale=alt.Scale(domain=[0, 1]),
        title="cosine similarity",
        axis=alt.Axis(labelFontSize=11, titleFontSize=12),
    )
    bars = alt.Chart().mark_bar(color="#1f77b4").encode(x=x, y=y)
    numbers = (
        alt.Chart()
        .mark_text(align="left", dx=4, fontSize=11)
        .encode(x=x, y=y, text=alt.Text("similarity:Q", format=".3f"))
    )
    chart = alt.layer(bars, numbers, data=alt.Data(values=rows)).transform_filter(
        "datum.query == query"
    )
    return chart.add_params(query_param).properties(
        width=460,
        height=260,
        title=alt.Title(alt.ExprRef("'GloVe: the words nearest to ' + query"), fontSize=14),
    )


def date_attention(rows: list[dict], *, source: str | None = None) -> alt.VConcatChart:
    """Pick a date text; see the translator's output and its attention while writing it.

    ``rows`` is ``tutorial_lib.seq2seq.attention_rows(...)``; the chart's parameter
    ``source`` is bound to a dropdown of the rows' source texts (default: the first).
    """
    rows = _check_rows(rows, ("source", "output", "source_tokens", "output_tokens", "weights"))
    sources = list(dict.fromkeys(r["source"] for r in rows))
    if source is None:
        source = sources[0]
    if source not in sources:
        raise ValueError(f"source={source!r} is not one of the rows' sources {sources}")
    # Long sources get short labels in the dropdown (a wide dropdown squeezes the chart); the
    # x axis shows every source token.
    labels = [text if len(text) <= 48 else text[:47] + "…" for text in sources]
    source_param = alt.param(
        name="source",
        value=source,
        bind=alt.binding_select(options=sources, labels=labels, name="date text "),
    )
    chosen = {"filter": "datum.source == source"}
    # The output, written above the heatmap.
    output = (
        alt.Chart(alt.Data(values=rows))
        .mark_text(fontSize=16, align="left")
        .encode(text=alt.Text("label:N"), x=alt.value(0), y=alt.value(10))
        .properties(width=460, height=20)
    )
    output.transform = [chosen, {"calculate": "'output: ' + datum.output", "as": "label"}]
    heat = _weights_heatmap(
        460, False, "source token (encoder state)", "output character (decoding step)"
    )
    heat.transform = [
        chosen,
        {"calculate": "length(datum.source_tokens)", "as": "n"},
        *_matrix_cells("datum.n", "output_tokens", "source_tokens"),
    ]
    heat.data = alt.Data(values=rows)
    return alt.vconcat(output, heat).add_params(source_param).configure_view(stroke=None)
