"""tutorial_lib.controls: a chart becomes a deterministic, valid HTML output."""

import altair as alt
import pytest

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
