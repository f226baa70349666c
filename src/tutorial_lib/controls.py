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

import math
import re
import textwrap
from typing import TYPE_CHECKING

import altair as alt
from altair.utils.html import spec_to_html

from .validation import check_int

if TYPE_CHECKING:  # annotations only: chapters 02-03 use controls without torch
    import torch

    from .generation import GroupedLogits

__all__ = [
    "ControlHTML",
    "attention_heads",
    "date_attention",
    "expert_router",
    "rotary_explorer",
    "sampling_explorer",
    "show",
    "word_neighbours",
]

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


class ControlHTML:
    """The HTML of one control: a ``<div>`` and the script that draws the chart into it.

    Where HTML does not run (GitHub's notebook view, a PDF, a terminal), the cell shows the
    plain text of ``repr``: what the control shows and which inputs it has.
    """

    def __init__(self, html: str, spec: dict, name: str = "control") -> None:
        self.html = html
        self.spec = spec  # the Vega-Lite specification, for tests and for reuse
        self.name = name

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        inputs = ", ".join(_input_names(self.spec)) or "none"
        text = (
            f"Interactive chart {self.name!r}: {self.spec.get('description', 'a chart.')} "
            f"Inputs: {inputs}. It runs in the browser (the built book, Jupyter, Colab); "
            "a viewer that does not run HTML (GitHub, a PDF) shows this text instead."
        )
        return textwrap.fill(text, 88)


def _input_names(spec: object) -> list[str]:
    """The names of the inputs (bound parameters) anywhere in a Vega-Lite specification."""
    names: list[str] = []
    if isinstance(spec, dict):
        bind = spec.get("bind")
        if isinstance(bind, dict) and "name" in spec:
            names.append(str(bind.get("name", spec["name"])).strip())
        for value in spec.values():
            names += _input_names(value)
    elif isinstance(spec, list):
        for value in spec:
            names += _input_names(value)
    return list(dict.fromkeys(names))  # each once, in order


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
    # Altair's template lays the chart and its inputs side by side (a flex row); in a book
    # column that squeezes the chart, so the inputs go below it.
    flex = "display: flex;"
    if flex not in html:
        raise RuntimeError("Altair's HTML template changed: cannot place the inputs below")
    html = html.replace(flex, f"{flex}\n    flex-direction: column;", 1)
    return ControlHTML(html, spec, name)


# ======================================================================================
# Chapters 06, 11, 12: the sampling explorer, the rotary explorer, the expert router
# ======================================================================================
_SLIDER = alt.binding_range  # a short name for the many sliders below


def _subtitle(text: str) -> alt.Title:
    """A chart's title in the style of a caption: what its marks show."""
    return alt.Title(text, fontSize=12, fontWeight="normal")


# --- Chapter 06: sampling explorer -----------------------------------------------------
def sampling_explorer(
    distributions: dict[str, tuple[GroupedLogits, list[str]]],
    temperature: float = 0.8,
    top_k: int = 50,
    top_p: float = 0.9,
    min_p: float = 0.0,
) -> alt.VConcatChart:
    """Next-token probabilities after temperature, top-k, top-p and min-p, for a few prompts.

    ``distributions`` maps each prompt to its ``generation.group_logits`` result and the labels
    of its listed tokens. The arithmetic of ``generation.process_logits`` runs in the browser
    on the grouped logits: temperature (0 = greedy), then top-k (0 = off; ties with the k-th
    logit stay), then top-p (the least likely tokens dropped while their mass stays
    <= 1 - p, counted token by token inside a group of tied values), then min-p (0 = off;
    tokens less than min-p times as likely as the most likely one dropped). Bars show the listed
    tokens and one bar for all other tokens; kept tokens are coloured; a tick marks each
    token's probability at T = 1 without filters; a line above reads the entropy.
    """
    rows = []
    for prompt, (groups, labels) in distributions.items():
        if len(labels) != len(groups.top_ids):
            raise ValueError(
                f"{prompt!r}: {len(labels)} labels for {len(groups.top_ids)} listed tokens"
            )
        rows.append(
            {
                "prompt": prompt,
                "s": groups.scale,
                "u": groups.top_units + groups.tail_units,  # logits times s
                "c": [1] * len(groups.top_ids) + groups.tail_counts,  # tokens with that logit
                "t": list(labels),  # labels of the listed tokens; null for the groups
            }
        )
    prompts = list(distributions)
    prompt = alt.param(
        name="prompt", value=prompts[0], bind=alt.binding_select(options=prompts, name="prompt ")
    )
    temp = alt.param(
        name="T", value=temperature, bind=_SLIDER(min=0, max=2, step=0.05, name="temperature ")
    )
    k = alt.param(name="K", value=top_k, bind=_SLIDER(min=0, max=100, step=1, name="top-k "))
    p = alt.param(name="P", value=top_p, bind=_SLIDER(min=0.05, max=1, step=0.05, name="top-p "))
    m = alt.param(name="M", value=min_p, bind=_SLIDER(min=0, max=0.5, step=0.01, name="min-p "))
    desc = [alt.SortField("logit", order="descending")]
    readout = (
        alt.Chart()
        .transform_filter("datum.greater == 0")  # one row: the most likely token
        .transform_calculate(
            text="'entropy ' + format(datum.H, '.3f') + ' nats;  ' + format(datum.n_kept, ',')"
            " + ' of ' + format(datum.vocab, ',') + ' tokens can be drawn'"
        )
        .mark_text(align="left", fontSize=14, x=0, y=10)
        .encode(text="text:N")
        .properties(width=500, height=20, name="readout")
    )
    base = (
        alt.Chart()
        .transform_calculate(
            bar="datum.t != null ? datum.t : 'all other tokens'",
            order="datum.t != null ? datum.logit : -1e9",
        )
        .transform_aggregate(
            mass="sum(mass)",
            kept="sum(kept)",
            model="sum(p0)",
            tokens="sum(c)",
            order="max(order)",
            groupby=["bar"],
        )
        .transform_calculate(status="datum.kept > 0 ? 'can be drawn' : 'dropped'")
        .encode(
            y=alt.Y(
                "bar:N",
                sort=alt.EncodingSortField("order", op="max", order="descending"),
                title="next token",
                axis=alt.Axis(labelFontSize=12, labelLimit=160),
            )
        )
    )
    probability = alt.X("mass:Q", title="probability", scale=alt.Scale(domain=[0, 1]))
    bars = base.mark_bar().encode(
        x=probability,
        color=alt.Color(
            "status:N",
            scale=alt.Scale(domain=["can be drawn", "dropped"], range=["#4c78a8", "#cccccc"]),
            legend=alt.Legend(title=None, orient="bottom"),
        ),
        tooltip=["bar:N", alt.Tooltip("mass:Q", format=".4f"), "kept:Q", "tokens:Q"],
    )
    ticks = base.mark_tick(color="black", thickness=2).encode(x="model:Q")
    numbers = (
        base.mark_text(align="left", dx=4, fontSize=11)
        .encode(x=probability, text=alt.Text("mass:Q", format=".4f"))
        .properties(name="probabilities")
    )
    chart = alt.vconcat(
        readout,
        alt.layer(bars, ticks, numbers).properties(
            width=500,
            height=alt.Step(17),
            title=_subtitle(
                "bars: after the settings; black ticks: the model's own (T = 1, no filters)"
            ),
        ),
        data=alt.Data(values=rows),
    )
    return (
        chart.transform_flatten(["u", "c", "t"])
        .transform_filter("datum.prompt == prompt")
        .transform_calculate(logit="datum.u / datum.s")
        .transform_joinaggregate(top="max(logit)", vocab="sum(c)")
        .transform_joinaggregate(tie="sum(c)", groupby=["logit"])
        # How many tokens have a logit >= this one (the frame takes in all tied rows).
        .transform_window(n_ge="sum(c)", sort=desc, frame=[None, 0])
        .transform_calculate(
            greater="datum.n_ge - datum.tie",  # tokens strictly more likely
            p0="datum.c * exp(datum.logit - datum.top)",  # T = 1, unnormalised
            # Temperature; T = 0 is greedy: all weight on the most likely token.
            w="T == 0 ? (datum.greater == 0 ? 1 : 0) : exp((datum.logit - datum.top) / T)",
        )
        # Top-k: a token stays when fewer than k tokens are strictly more likely.
        .transform_calculate(keep_k="T == 0 || K == 0 || datum.greater < K ? 1 : 0")
        .transform_calculate(mk="datum.keep_k * datum.c * datum.w")
        .transform_joinaggregate(zk="sum(mk)", z0="sum(p0)")
        .transform_calculate(pk="datum.keep_k * datum.w / datum.zk")  # each token's probability
        .transform_calculate(mpk="datum.c * datum.pk")
        .transform_joinaggregate(total="sum(mpk)")
        .transform_window(m_ge="sum(mpk)", sort=desc, frame=[None, 0])
        # Top-p: the least likely tokens go while their mass stays <= 1 - p; of a tied value,
        # as many tokens as fit (r); the most likely token always stays.
        .transform_calculate(
            below="datum.total - datum.m_ge",
            r0="T == 0 || P >= 1 ? 0 : (datum.pk == 0 ? datum.tie : "
            "clamp(floor((1 - P - datum.below) / datum.pk), 0, datum.tie))",
        )
        .transform_calculate(r="datum.greater == 0 ? min(datum.r0, datum.tie - 1) : datum.r0")
        .transform_window(idx="row_number()", groupby=["logit"], sort=[alt.SortField("t")])
        # Min-p, last: a token stays when it is at least M times as likely as the most likely
        # one, that is when its weight w (its probability over the top one's) is >= M.
        .transform_calculate(
            kept="datum.pk == 0 || datum.w < M ? 0 : (datum.t != null ? "
            "(datum.idx > datum.r ? 1 : 0) : datum.c - datum.r)"
        )
        .transform_calculate(fm="datum.kept * datum.pk")
        .transform_joinaggregate(z="sum(fm)")
        .transform_calculate(
            mass="datum.fm / datum.z",  # the row's share of the final distribution
            q="datum.kept > 0 ? datum.pk / datum.z : 0",  # each kept token's probability
            p0="datum.p0 / datum.z0",
        )
        .transform_calculate(h="datum.q > 0 ? -datum.kept * datum.q * log(datum.q) : 0")
        .transform_joinaggregate(H="sum(h)", n_kept="sum(kept)")
        .add_params(prompt, temp, k, p, m)
        .properties(
            description="the model's next-token probabilities for a few prompts after "
            "temperature, top-k, top-p and min-p, with the entropy of what is left."
        )
    )


# --- Chapter 11: rotary explorer -------------------------------------------------------
def rotary_explorer(
    query: torch.Tensor,
    key: torch.Tensor,
    inv_freq: torch.Tensor,
    offsets: torch.Tensor,
    scores: torch.Tensor,
    shown_pairs: tuple[int, ...] = (0, 2, 6, 16),
    m: int = 5,
    n: int = 2,
    max_position: int = 64,
) -> alt.VConcatChart:
    """Turn a query by position ``m`` and a key by ``n`` (sliders) and watch their score.

    ``query`` and ``key`` are the (d/2, 2) pairs of ``rope.rope_pairs``, ``inv_freq`` their
    (d/2,) frequencies; ``offsets`` and ``scores`` the curve of ``rope.rope_scores``. The
    browser rotates every pair by ``m * theta`` and ``n * theta``, draws the ``shown_pairs``
    as arrows (each pair scaled to its longer vector) and adds up the score
    ``sum_i q_i(m) . k_i(n) / sqrt(d)``; a dot puts that score on the curve at ``m - n``.
    """
    if query.shape != key.shape or query.dim() != 2 or query.shape[1] != 2:
        raise ValueError(
            f"query and key must be (d/2, 2) pairs, got {tuple(query.shape)}, {tuple(key.shape)}"
        )
    if inv_freq.shape != query.shape[:1]:
        raise ValueError(
            f"inv_freq must have shape ({query.shape[0]},), got {tuple(inv_freq.shape)}"
        )
    d = 2 * query.shape[0]
    pairs = [
        {
            "i": i,
            "qx": round(float(q[0]), 4),
            "qy": round(float(q[1]), 4),
            "kx": round(float(k[0]), 4),
            "ky": round(float(k[1]), 4),
            "th": float(th),
            "slot": shown_pairs.index(i) if i in shown_pairs else -1,  # panel of a shown pair
        }
        for i, (q, k, th) in enumerate(
            zip(query.tolist(), key.tolist(), inv_freq.tolist(), strict=True)
        )
    ]
    curve = [
        {"offset": int(o), "score": round(float(v), 4)}
        for o, v in zip(offsets, scores, strict=True)
    ]
    m_param = alt.param(
        name="m", value=m, bind=_SLIDER(min=0, max=max_position, step=1, name="query position m ")
    )
    n_param = alt.param(
        name="n", value=n, bind=_SLIDER(min=0, max=max_position, step=1, name="key position n ")
    )
    rotated = (
        alt.Chart(alt.Data(values=pairs))
        .transform_calculate(
            a="m * datum.th",  # the query pair's angle
            b="n * datum.th",  # the key pair's angle
        )
        .transform_calculate(
            qxr="datum.qx * cos(datum.a) - datum.qy * sin(datum.a)",
            qyr="datum.qx * sin(datum.a) + datum.qy * cos(datum.a)",
            kxr="datum.kx * cos(datum.b) - datum.ky * sin(datum.b)",
            kyr="datum.kx * sin(datum.b) + datum.ky * cos(datum.b)",
        )
        .transform_calculate(dot="datum.qxr * datum.kxr + datum.qyr * datum.kyr")
        .transform_joinaggregate(total="sum(dot)")
        .transform_calculate(score=f"datum.total / sqrt({d})")
    )
    readout = (
        rotated.transform_filter("datum.i == 0")
        .transform_calculate(
            text="'m = ' + m + ', n = ' + n + ',  m - n = ' + (m - n) + ':  score q(m) . k(n) "
            f"/ sqrt({d}) = ' + format(datum.score, '.4f')"
        )
        .mark_text(align="left", fontSize=14, x=0, y=10)
        .encode(text="text:N")
        .properties(width=600, height=20, name="readout")
    )
    # The shown pairs, each in its own panel: arrows from the panel's centre (cx, 0).
    arrows = rotated.transform_filter("datum.slot >= 0").transform_calculate(
        cx="2.6 * datum.slot",
        r="max(sqrt(datum.qx * datum.qx + datum.qy * datum.qy),"
        " sqrt(datum.kx * datum.kx + datum.ky * datum.ky))",
    )
    x_scale = alt.Scale(domain=[-1.3, 2.6 * len(shown_pairs) - 1.3])
    y_scale = alt.Scale(domain=[-1.3, 1.3])
    no_axis = dict(axis=None)
    vector_layers = []
    for who, color in (("q", "#e45756"), ("k", "#4c78a8")):
        tip_x = f"datum.cx + datum.{who}xr / datum.r"
        tip_y = f"datum.{who}yr / datum.r"
        vector_layers.append(
            arrows.transform_calculate(x0="datum.cx", y0="0", x1=tip_x, y1=tip_y)
            .mark_rule(color=color, strokeWidth=3)
            .encode(
                x=alt.X("x0:Q", scale=x_scale, **no_axis),
                y=alt.Y("y0:Q", scale=y_scale, **no_axis),
                x2="x1:Q",
                y2="y1:Q",
            )
        )
        vector_layers.append(
            arrows.transform_calculate(x1=tip_x, y1=tip_y)
            .mark_point(color=color, filled=True, size=60)
            .encode(
                x=alt.X("x1:Q", scale=x_scale, **no_axis), y=alt.Y("y1:Q", scale=y_scale, **no_axis)
            )
        )
    # A unit circle around each panel's centre, as points along it (drawn as a line).
    circle = [
        {
            "panel": j,
            "deg": deg,
            "cx": 2.6 * j + math.cos(math.radians(deg)),
            "cy": math.sin(math.radians(deg)),
        }
        for j in range(len(shown_pairs))
        for deg in range(0, 361, 10)
    ]
    circles = (
        alt.Chart(alt.Data(values=circle))
        .mark_line(color="#bbbbbb", strokeWidth=1)
        .encode(
            x=alt.X("cx:Q", scale=x_scale, **no_axis),
            y=alt.Y("cy:Q", scale=y_scale, **no_axis),
            detail="panel:N",
            order="deg:Q",
        )
    )
    labels = (
        arrows.transform_calculate(
            label="'pair ' + datum.i + ': ' + format(datum.th, '.3g') + ' rad/position'",
            ly="-1.25",
        )
        .mark_text(fontSize=11)
        .encode(
            x=alt.X("cx:Q", scale=x_scale, **no_axis),
            y=alt.Y("ly:Q", scale=y_scale, **no_axis),
            text="label:N",
        )
    )
    panels = alt.layer(circles, *vector_layers, labels).properties(
        width=600,
        height=600 / (2.6 * len(shown_pairs)) * 2.6,
        title=_subtitle("red: query pair turned by m x theta; blue: key pair turned by n x theta"),
    )
    line = (
        alt.Chart(alt.Data(values=curve))
        .mark_line(color="#888888")
        .encode(
            x=alt.X("offset:Q", title="m - n", scale=alt.Scale(nice=False)),
            y=alt.Y("score:Q", title="score", scale=alt.Scale(zero=False)),
        )
    )
    here = (
        rotated.transform_filter("datum.i == 0")
        .transform_calculate(offset="m - n")
        .mark_point(color="#e45756", filled=True, size=90)
        .encode(x="offset:Q", y="score:Q")
    )
    scores_chart = alt.layer(line, here).properties(
        width=600,
        height=200,
        title=_subtitle(
            "the score for every m - n (line, from Python) and at the sliders' m, n (dot)"
        ),
    )
    return (
        alt.vconcat(readout, panels, scores_chart)
        .add_params(m_param, n_param)
        .properties(
            description="a query and a key rotated by their positions m and n, pair by pair, "
            "and their attention score, which depends only on m - n."
        )
    )


# --- Chapter 12: expert router ---------------------------------------------------------
def expert_router(
    tokens: list[str],
    choices: list[tuple[torch.Tensor, torch.Tensor]],
    num_experts: int,
    layer: int = 0,
) -> alt.VConcatChart:
    """Which experts each token of a text goes to, layer by layer (radio buttons).

    ``tokens`` are the labels of the text's tokens, ``choices`` the per-layer
    ``(experts, weights)``, each (seq, top_k), of ``moe.router_choices``. Top: one bar per
    token, split into its experts' gate weights; bottom: how many tokens each expert receives
    in the chosen layer.
    """
    rows = []
    for layer_index, (experts, weights) in enumerate(choices):
        if experts.shape != (len(tokens), experts.shape[1]) or weights.shape != experts.shape:
            raise ValueError(
                f"layer {layer_index}: experts and weights must be ({len(tokens)}, top_k), got "
                f"{tuple(experts.shape)} and {tuple(weights.shape)}"
            )
        for pos, token in enumerate(tokens):
            for rank in range(experts.shape[1]):
                rows.append(
                    {
                        "layer": layer_index,
                        "pos": pos,
                        "token": f"{pos:02d} {token}",  # unique and in text order
                        "rank": rank,
                        "expert": int(experts[pos, rank]),
                        "weight": round(float(weights[pos, rank]), 4),
                    }
                )
    layer_param = alt.param(
        name="layer",
        value=layer,
        bind=alt.binding_radio(options=list(range(len(choices))), name="layer "),
    )
    expert_colors = alt.Scale(domain=list(range(num_experts)), scheme="category10")
    chosen = alt.Chart(alt.Data(values=rows)).transform_filter("datum.layer == layer")
    gates = chosen.encode(
        x=alt.X(
            "token:N",
            sort=None,
            title="token (position and text)",
            axis=alt.Axis(labelAngle=-60, labelFontSize=11, labelLimit=120),
        ),
        y=alt.Y("weight:Q", stack="zero", title="gate weight", scale=alt.Scale(domain=[0, 1])),
        order=alt.Order("rank:Q"),
    )
    bars = gates.mark_bar(stroke="white").encode(
        color=alt.Color("expert:N", scale=expert_colors, legend=None),  # numbers say it
        tooltip=["token:N", "expert:N", alt.Tooltip("weight:Q", format=".3f")],
    )
    numbers = (
        gates.transform_stack(
            stack="weight", groupby=["token"], sort=[alt.SortField("rank")], as_=["w0", "w1"]
        )
        .transform_calculate(mid="(datum.w0 + datum.w1) / 2")
        .mark_text(color="white", fontSize=11, fontWeight="bold")
        .encode(y=alt.Y("mid:Q", stack=None), text="expert:N")
        .properties(name="experts")
    )
    per_token = alt.layer(bars, numbers).properties(
        width=560,
        height=200,
        title=_subtitle("each token's experts (numbers) and their gate weights"),
    )
    load = chosen.transform_aggregate(tokens="count()", groupby=["expert"]).encode(
        x=alt.X("expert:O", title="expert", scale=alt.Scale(domain=list(range(num_experts)))),
        y=alt.Y("tokens:Q", title="tokens routed to it"),
    )
    load_chart = alt.layer(
        load.mark_bar().encode(color=alt.Color("expert:N", scale=expert_colors, legend=None)),
        load.mark_text(dy=-6, fontSize=11).encode(text="tokens:Q").properties(name="load"),
    ).properties(
        width=560,
        height=140,
        title=_subtitle("load: how many tokens each expert receives in this layer"),
    )
    return (
        alt.vconcat(per_token, load_chart)
        .add_params(layer_param)
        .properties(
            description="the experts each token of a text is routed to, with their gate "
            "weights, and how many tokens each expert receives, layer by layer."
        )
    )


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

    The chart's parameters ``text``, ``layer`` and ``head`` are bound to a dropdown (when
    the rows hold more than one text) and two sliders; the browser filters the rows and
    expands the chosen one into cells.
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
        check_int(name, value, minimum=0, maximum=count - 1)

    text_param = alt.param(name="text", value=text)
    if len(texts) > 1:  # a dropdown when there is a text to choose; one text needs none
        text_param.param.bind = alt.binding_select(options=texts, name="text ")
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
        title=alt.Title(alt.ExprRef("'layer ' + layer + ', head ' + head"), fontSize=14),
        description="one attention head's weights (query rows, key columns) for a text, "
        "picked by layer and head.",
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
        description="the GloVe words nearest to a word or an analogy, by cosine similarity.",
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
    return (
        alt.vconcat(output, heat)
        .add_params(source_param)
        .configure_view(stroke=None)
        .properties(
            description="the date translator's output for a text and its attention over the "
            "source tokens while writing each character."
        )
    )
