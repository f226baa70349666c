"""tutorial_lib.controls: a chart becomes a deterministic, valid HTML output."""

import altair as alt
import pytest
import torch

from tutorial_lib.controls import show


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
    assert {p["name"] for p in spec["params"]} == {"prompt", "T", "K", "P"}
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
