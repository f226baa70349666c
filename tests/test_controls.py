"""tutorial_lib.controls: a chart becomes a deterministic, valid HTML output."""

import altair as alt
import pytest
import torch

from tutorial_lib.controls import attention_heads, date_attention, show, word_neighbours


def _chart(temperature: float = 1.0) -> alt.Chart:
    t = alt.param(name="t", value=temperature, bind=alt.binding_range(min=0.1, max=2))
    data = alt.Data(values=[{"token": "a", "logit": 1.0}, {"token": "b", "logit": 0.0}])
    return (
        alt.Chart(data)
        .transform_calculate(z="exp(datum.logit / t)")
        .mark_bar()
        .encode(x="token:N", y="z:Q")
        .add_params(t)
    )


def test_show_is_deterministic_and_names_its_div():
    first, second = show(_chart(), "demo"), show(_chart(), "demo")
    assert first._repr_html_() == second._repr_html_()  # nbval can compare it
    assert '<div id="control-demo">' in first.html
    assert first.spec["params"][0]["name"] == "t"


def test_show_carries_the_specification_into_the_page():
    html = show(_chart(temperature=0.7), "demo").html
    assert '"value": 0.7' in html and "exp(datum.logit / t)" in html
    # The page's loader takes Altair's pinned library versions (the book ships these).
    assert f"vega-lite@{alt.VEGALITE_VERSION}" in html


@pytest.mark.parametrize("name", ["", "Demo", "1st", "a b", None])
def test_show_rejects_bad_names(name):
    with pytest.raises(ValueError, match="name="):
        show(_chart(), name)


def test_show_rejects_what_is_not_a_chart():
    with pytest.raises(TypeError, match="chart must be an Altair chart"):
        show({"mark": "bar"}, "demo")


def test_show_validates_the_specification():
    bad = alt.Chart(alt.Data(values=[{"a": 1}])).mark_bar().encode(x=alt.X("a:Q", bin=-3))
    with pytest.raises(Exception, match="bin|schema|valid"):
        show(bad, "demo")


# --------------------------------------------------------------------------------------
# The builders of chapters 06, 11 and 12: valid specifications from the library's data.
# What the charts compute is checked in the browser by .ci/check_book.py.
# --------------------------------------------------------------------------------------
def test_sampling_explorer_carries_the_grouped_logits():
    from tutorial_lib.controls import sampling_explorer
    from tutorial_lib.generation import group_logits

    logits = torch.linspace(-3, 5, 300)
    logits[-1] = 6.0  # one clear favourite
    groups = group_logits(logits, n_top=4, decimals=1)
    labels = [f"t{i}" for i in groups.top_ids]
    spec = show(sampling_explorer({"a prompt": (groups, labels)}), "sampling-explorer").spec
    (row,) = spec["data"]["values"] if "values" in spec["data"] else spec["datasets"].popitem()[1]
    assert row["u"] == groups.top_units + groups.tail_units
    assert sum(row["c"]) == 300 and row["t"] == labels
    assert {p["name"] for p in spec["params"]} == {"prompt", "T", "K", "P", "M"}
    # Min-p (M) drops a token whose weight w (its probability over the top one's) is < M.
    assert any("datum.w < M" in str(t.get("calculate")) for t in spec["transform"])
    with pytest.raises(ValueError, match="labels"):
        sampling_explorer({"a prompt": (groups, labels[:-1])})


def test_rotary_explorer_and_expert_router_are_valid():
    from tutorial_lib.controls import expert_router, rotary_explorer
    from tutorial_lib.rope import rope_pairs, rope_scores

    q, k, inv_freq = torch.randn(16), torch.randn(16), 0.5 ** torch.arange(8.0)
    offsets = torch.arange(-8, 9)
    chart = rotary_explorer(
        rope_pairs(q),
        rope_pairs(k),
        inv_freq,
        offsets,
        rope_scores(q, k, inv_freq, offsets),
        shown_pairs=(0, 3),
    )
    assert {p["name"] for p in show(chart, "rotary").spec["params"]} == {"m", "n"}
    with pytest.raises(ValueError, match="inv_freq"):
        rotary_explorer(rope_pairs(q), rope_pairs(k), inv_freq[:3], offsets, offsets)
    experts = torch.tensor([[0, 1], [2, 0], [1, 2]])
    weights = torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.9, 0.1]])
    spec = show(expert_router(["a", "b", "c"], [(experts, weights)] * 2, 3), "router").spec
    assert spec["params"][0]["bind"]["options"] == [0, 1]
    with pytest.raises(ValueError, match="layer 0"):
        expert_router(["a", "b"], [(experts, weights)], 3)


def test_show_puts_the_inputs_below_the_chart():
    html = show(_chart(), "demo").html
    assert "flex-direction: column;" in html


# --------------------------------------------------------------------------------------
# The attention and embedding controls (chapters 02, 03, 04, 08)
# --------------------------------------------------------------------------------------


def _bindings(spec: dict) -> dict:
    """Parameter name -> (input kind, its value, its options or range)."""
    return {
        p["name"]: (
            p["bind"]["input"],
            p["value"],
            p["bind"].get("options") or (p["bind"].get("min"), p["bind"].get("max")),
        )
        for p in spec["params"]
    }


HEAD_ROWS = [
    {
        "text": text,
        "layer": layer,
        "head": head,
        "tokens": ["a", "b"],
        "weights": [100, 0, 50, 50],
    }
    for text in ["one", "two"]
    for layer in range(3)
    for head in range(4)
]


def test_attention_heads_binds_text_layer_and_head_and_expands_the_chosen_row():
    spec = show(attention_heads(HEAD_ROWS, text="two", layer=2, head=1), "heads").spec
    assert _bindings(spec) == {
        "text": ("select", "two", ["one", "two"]),
        "layer": ("range", 2, (0, 2)),
        "head": ("range", 1, (0, 3)),
    }
    transforms = spec["transform"]
    assert transforms[0] == {
        "filter": "datum.text == text && datum.layer == layer && datum.head == head"
    }
    assert {"flatten": ["weights"], "as": ["percent"]} in transforms
    # Tokens label the axes, kept apart by position (repeated tokens) and " " spelled out.
    labels = {
        t["as"]: t["calculate"] for t in transforms if t.get("as") in ("query_token", "key_token")
    }
    assert "datum.tokens[datum.key] == ' ' ? 'space'" in labels["key_token"]
    assert "pad('', datum.query, " in labels["query_token"]
    assert {"calculate": "datum.percent / 100", "as": "weight"} in transforms
    assert len(spec["data"]["values"]) == len(HEAD_ROWS)  # all heads travel to the page


def test_attention_heads_of_one_text_has_no_dropdown():
    rows = [r for r in HEAD_ROWS if r["text"] == "one"]
    params = {p["name"]: p for p in show(attention_heads(rows), "heads").spec["params"]}
    assert params["text"] == {"name": "text", "value": "one"}  # filters, binds no input
    assert params["layer"]["bind"]["input"] == "range"


def test_attention_heads_rejects_what_the_rows_do_not_have():
    with pytest.raises(ValueError, match="text="):
        attention_heads(HEAD_ROWS, text="three")
    with pytest.raises(ValueError, match="layer=3"):
        attention_heads(HEAD_ROWS, layer=3)
    with pytest.raises(ValueError, match="fields"):
        attention_heads([{"text": "one"}])
    with pytest.raises(TypeError, match="rows"):
        attention_heads([])


def test_word_neighbours_binds_the_query_to_a_dropdown():
    rows = [
        {"query": q, "rank": r, "word": f"{q}{r}", "similarity": 0.5}
        for q in ["king", "king - man + woman"]
        for r in (1, 2)
    ]
    spec = show(word_neighbours(rows, query="king - man + woman"), "words").spec
    assert _bindings(spec) == {
        "query": ("select", "king - man + woman", ["king", "king - man + woman"])
    }
    assert {"filter": "datum.query == query"} in spec["transform"]
    with pytest.raises(ValueError, match="query="):
        word_neighbours(rows, query="queen")


def test_date_attention_binds_the_source_and_filters_both_views():
    rows = [
        {
            "source": s,
            "output": "2001-07-04",
            "source_tokens": ["4", "jul", "2001"],
            "output_tokens": [*"2001-07-04", "<eos>"],
            "weights": [50] * 33,
        }
        for s in ["4 jul 2001", "july 4, 2001"]
    ]
    spec = show(date_attention(rows), "dates").spec
    assert _bindings(spec) == {"source": ("select", "4 jul 2001", ["4 jul 2001", "july 4, 2001"])}
    assert spec["params"][0]["bind"]["labels"] == ["4 jul 2001", "july 4, 2001"]
    for view in spec["vconcat"]:
        assert view["transform"][0] == {"filter": "datum.source == source"}
    with pytest.raises(ValueError, match="source="):
        date_attention(rows, source="5 jul 2001")


def test_date_attention_shortens_long_sources_in_the_dropdown():
    long = "the twenty third of march, nineteen ninety four and 4 jul 2001"
    rows = [
        {
            "source": long,
            "output": "x",
            "source_tokens": ["a"],
            "output_tokens": ["x", "<eos>"],
            "weights": [100, 100],
        }
    ]
    label = show(date_attention(rows), "dates").spec["params"][0]["bind"]["labels"][0]
    assert len(label) == 48 and long.startswith(label[:-1]) and label.endswith("…")


def test_the_text_of_a_control_says_what_it_is_and_names_its_inputs():
    rows = [
        {"query": q, "rank": r, "word": f"{q}{r}", "similarity": 0.5}
        for q in ["king", "queen"]
        for r in (1, 2)
    ]
    text = repr(show(word_neighbours(rows), "glove-neighbours"))
    assert text.startswith("Interactive chart 'glove-neighbours': the GloVe words nearest")
    assert "Inputs: word or analogy." in text and "0x" not in text
    assert max(len(line) for line in text.splitlines()) <= 88  # fits the book's column
    # A chart without a description still says what it is and which inputs it has.
    assert repr(show(_chart(), "demo")).startswith("Interactive chart 'demo': a chart. Inputs: t.")
