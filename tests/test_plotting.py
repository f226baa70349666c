"""The shared plotting helpers draw exactly the data and labels they are given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import CountVectorizer

from tutorial_lib.plotting import grouped_bar, heatmap, top_k_bar

# A non-square matrix, so a transposed drawing cannot pass for a correct one.
MATRIX = np.array([[0.0, 1.5, 2.0], [3.0, 4.0, 12.0]])  # (2 rows, 3 cols)
ROWS = ["first doc", "second doc"]
COLS = ["cat", "dog", "mat"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tick_texts(ticks) -> list[str]:
    return [tick.get_text() for tick in ticks]


# --------------------------------------------------------------------------------------
# heatmap
# --------------------------------------------------------------------------------------


def test_heatmap_image_data_equals_the_matrix():
    ax = heatmap(MATRIX, ROWS, COLS)
    assert len(ax.images) == 1
    np.testing.assert_array_equal(ax.images[0].get_array(), MATRIX)


def test_heatmap_tick_labels_equal_the_given_labels():
    ax = heatmap(MATRIX, ROWS, COLS)
    assert tick_texts(ax.get_yticklabels()) == ROWS
    assert tick_texts(ax.get_xticklabels()) == COLS
    # Each label sits on its own row / column centre.
    np.testing.assert_array_equal(ax.get_yticks(), [0, 1])
    np.testing.assert_array_equal(ax.get_xticks(), [0, 1, 2])


def test_heatmap_sets_title_axis_and_colorbar_labels():
    ax = heatmap(
        MATRIX, ROWS, COLS, title="Counts", xlabel="word", ylabel="document", colorbar_label="count"
    )
    assert ax.get_title() == "Counts"
    assert ax.get_xlabel() == "word"
    assert ax.get_ylabel() == "document"
    colorbar_axes = [other for other in ax.figure.axes if other is not ax]
    assert [other.get_ylabel() for other in colorbar_axes] == ["count"]


def colorbar_ticks(ax) -> np.ndarray:
    (colorbar_axes,) = [other for other in ax.figure.axes if other is not ax]
    low, high = ax.images[0].get_clim()
    ticks = colorbar_axes.get_yticks()
    return ticks[(ticks >= low) & (ticks <= high)]  # the ticks actually shown


def test_heatmap_colorbar_of_counts_has_whole_number_ticks():
    ax = heatmap([[0, 1, 2], [2, 0, 1]], ROWS, COLS)
    ticks = colorbar_ticks(ax)
    assert len(ticks) >= 2
    np.testing.assert_array_equal(ticks, np.round(ticks))


def test_heatmap_colorbar_of_fractions_keeps_fractional_ticks():
    ax = heatmap([[0.0, 0.25, 0.5], [0.75, 1.0, 0.1]], ROWS, COLS)
    ticks = colorbar_ticks(ax)
    assert not np.array_equal(ticks, np.round(ticks))


def test_heatmap_writes_each_value_in_its_cell():
    ax = heatmap(MATRIX, ROWS, COLS)
    cells = {text.get_position(): text.get_text() for text in ax.texts}
    # Positions are (x, y) = (column, row).
    assert cells == {
        (0, 0): "0",
        (1, 0): "1.5",
        (2, 0): "2",
        (0, 1): "3",
        (1, 1): "4",
        (2, 1): "12",
    }


def test_heatmap_fmt_changes_the_cell_text():
    ax = heatmap(MATRIX, ROWS, COLS, fmt=".2f")
    assert sorted(text.get_text() for text in ax.texts) == sorted(
        ["0.00", "1.50", "2.00", "3.00", "4.00", "12.00"]
    )


def test_heatmap_text_is_white_on_dark_cells_and_black_on_light_cells():
    ax = heatmap(MATRIX, ROWS, COLS)
    color = {text.get_position(): text.get_color() for text in ax.texts}
    assert color[(0, 0)] == "black"  # 0, the lightest cell
    assert color[(2, 1)] == "white"  # 12, the darkest cell


def test_heatmap_without_annotation_writes_no_text():
    ax = heatmap(MATRIX, ROWS, COLS, annotate=False)
    assert len(ax.texts) == 0


def test_heatmap_vmin_vmax_fix_the_colour_range():
    ax = heatmap(MATRIX, ROWS, COLS, vmin=0, vmax=30)
    assert ax.images[0].get_clim() == (0, 30)
    # On a 0..30 scale the cell holding 12 is light (12 / 30 = 0.4), so its text is black.
    color = {text.get_position(): text.get_color() for text in ax.texts}
    assert color[(2, 1)] == "black"


def test_heatmap_draws_on_the_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    returned = heatmap(MATRIX, ROWS, COLS, ax=right)
    assert returned is right
    assert len(left.images) == 0
    assert plt.get_fignums() == [fig.number]  # no extra figure


def test_heatmap_accepts_a_sparse_document_term_matrix():
    docs = ["the cat sat", "the dog sat on the mat"]
    vectorizer = CountVectorizer()
    counts = vectorizer.fit_transform(docs)  # SciPy sparse, (2, 6)
    ax = heatmap(counts, docs, vectorizer.get_feature_names_out())
    np.testing.assert_array_equal(ax.images[0].get_array(), counts.toarray())
    assert tick_texts(ax.get_xticklabels()) == ["cat", "dog", "mat", "on", "sat", "the"]


def test_heatmap_accepts_a_torch_tensor_that_requires_grad():
    weights = torch.softmax(torch.randn(3, 3, requires_grad=True), dim=-1)  # (queries, keys)
    ax = heatmap(weights, ["a", "b", "c"], ["a", "b", "c"])
    np.testing.assert_allclose(ax.images[0].get_array(), weights.detach().numpy(), rtol=1e-6)


def test_heatmap_rejects_a_matrix_that_is_not_2d():
    with pytest.raises(ValueError, match=r"matrix must be 2-D, got shape \(3,\)"):
        heatmap([1.0, 2.0, 3.0], ["a"], COLS)


def test_heatmap_rejects_an_empty_matrix():
    with pytest.raises(ValueError, match=r"matrix must not be empty, got shape \(0, 3\)"):
        heatmap(np.zeros((0, 3)), [], COLS)


def test_heatmap_rejects_a_matrix_that_is_not_numeric():
    with pytest.raises(TypeError, match="matrix must hold numbers"):
        heatmap([["a", "b"], ["c", "d"]], ["x", "y"], ["x", "y"])


def test_heatmap_rejects_the_wrong_number_of_row_labels():
    with pytest.raises(ValueError, match="row_labels has 3 labels, but there are 2 rows"):
        heatmap(MATRIX, ["a", "b", "c"], COLS)


def test_heatmap_rejects_the_wrong_number_of_col_labels():
    with pytest.raises(ValueError, match="col_labels has 2 labels, but there are 3 columns"):
        heatmap(MATRIX, ROWS, ["cat", "dog"])


def test_heatmap_rejects_a_single_string_as_labels():
    with pytest.raises(TypeError, match="col_labels must be a sequence of labels.*'abc'"):
        heatmap(MATRIX, ROWS, "abc")


# --------------------------------------------------------------------------------------
# top_k_bar
# --------------------------------------------------------------------------------------

WORDS = ["cat", "dog", "mat", "rug", "sat"]
SCORES = [0.10, 0.40, 0.05, 0.30, 0.15]


def bar_widths(ax) -> list[float]:
    return [bar.get_width() for bar in ax.patches]


def test_top_k_bar_draws_the_k_highest_scores_highest_first():
    ax = top_k_bar(WORDS, SCORES, k=3)
    np.testing.assert_allclose(bar_widths(ax), [0.40, 0.30, 0.15])
    assert tick_texts(ax.get_yticklabels()) == ["dog", "rug", "sat"]


def test_top_k_bar_puts_the_highest_score_on_top():
    ax = top_k_bar(WORDS, SCORES, k=3)
    # The y axis is inverted, so bar 0 (the highest) has the smallest y and is drawn on top.
    assert ax.yaxis_inverted()
    assert [bar.get_y() + bar.get_height() / 2 for bar in ax.patches] == [0, 1, 2]


def test_top_k_bar_without_k_draws_every_score():
    ax = top_k_bar(WORDS, SCORES)
    np.testing.assert_allclose(bar_widths(ax), [0.40, 0.30, 0.15, 0.10, 0.05])
    assert tick_texts(ax.get_yticklabels()) == ["dog", "rug", "sat", "cat", "mat"]


def test_top_k_bar_keeps_ties_in_input_order():
    ax = top_k_bar(["b", "a", "c"], [1.0, 1.0, 2.0])
    assert tick_texts(ax.get_yticklabels()) == ["c", "b", "a"]
    # Long enough that an unstable sort would reorder the ties.
    labels = [f"word{i}" for i in range(60)]
    ax = top_k_bar(labels, [1.0, 2.0] * 30, k=30)
    assert tick_texts(ax.get_yticklabels()) == [f"word{i}" for i in range(1, 60, 2)]


def test_top_k_bar_writes_each_value_after_its_bar():
    ax = top_k_bar(WORDS, SCORES, k=2, fmt=".2f")
    assert [text.get_text() for text in ax.texts] == ["0.40", "0.30"]


def test_top_k_bar_sets_title_and_axis_labels():
    ax = top_k_bar(WORDS, SCORES, k=2, title="Top words", xlabel="probability", ylabel="word")
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "Top words",
        "probability",
        "word",
    )


def test_top_k_bar_accepts_a_torch_tensor():
    probs = torch.tensor([0.1, 0.7, 0.2])
    ax = top_k_bar(["a", "b", "c"], probs, k=2)
    np.testing.assert_allclose(bar_widths(ax), [0.7, 0.2], rtol=1e-6)


@pytest.mark.parametrize("k", [0, 6, -1])
def test_top_k_bar_rejects_k_out_of_range(k):
    with pytest.raises(ValueError, match=rf"k={k} must be an integer in \[1, 5\]"):
        top_k_bar(WORDS, SCORES, k=k)


def test_top_k_bar_rejects_a_k_that_is_not_an_int():
    with pytest.raises(TypeError, match=r"k=2.5 must be an integer in \[1, 5\], got float"):
        top_k_bar(WORDS, SCORES, k=2.5)


def test_top_k_bar_rejects_labels_of_another_length():
    with pytest.raises(ValueError, match="labels has 4 labels, but there are 5 scores"):
        top_k_bar(WORDS[:4], SCORES)


def test_top_k_bar_rejects_scores_that_are_not_1d():
    with pytest.raises(ValueError, match=r"scores must be 1-D, got shape \(1, 5\)"):
        top_k_bar(WORDS, [SCORES])


# --------------------------------------------------------------------------------------
# grouped_bar
# --------------------------------------------------------------------------------------

TOKENS = ["·Paris", "·the", "·London", "·Le"]
SERIES = {
    "T = 0.5": [0.90, 0.06, 0.03, 0.01],
    "T = 1": [0.70, 0.15, 0.10, 0.05],
    "T = 2": [0.40, 0.25, 0.20, 0.15],
}


def test_grouped_bar_draws_one_bar_per_label_for_each_series_in_order():
    ax = grouped_bar(TOKENS, SERIES)
    assert len(ax.containers) == 3
    for container, scores in zip(ax.containers, SERIES.values(), strict=True):
        np.testing.assert_allclose([bar.get_height() for bar in container], scores)


def test_grouped_bar_places_each_group_on_its_label():
    ax = grouped_bar(TOKENS, SERIES)
    assert tick_texts(ax.get_xticklabels()) == TOKENS
    np.testing.assert_array_equal(ax.get_xticks(), [0, 1, 2, 3])
    centres = np.array(
        [[bar.get_x() + bar.get_width() / 2 for bar in container] for container in ax.containers]
    )  # (series, labels)
    # Within each group the series go left to right, centred on the label's tick.
    assert (np.diff(centres, axis=0) > 0).all()
    np.testing.assert_allclose(centres.mean(axis=0), [0, 1, 2, 3], atol=1e-12)
    # Bars of neighbouring groups do not overlap.
    right_edge_of_group = centres[-1, :-1] + ax.containers[-1][0].get_width() / 2
    left_edge_of_next = centres[0, 1:] - ax.containers[0][0].get_width() / 2
    assert (right_edge_of_group < left_edge_of_next).all()


def test_grouped_bar_legend_names_the_series_in_order():
    ax = grouped_bar(TOKENS, SERIES)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == list(SERIES)


def test_grouped_bar_gives_each_series_its_own_colour():
    ax = grouped_bar(TOKENS, SERIES)
    colours = [container[0].get_facecolor() for container in ax.containers]
    assert len(set(colours)) == 3


def test_grouped_bar_sets_title_and_axis_labels():
    ax = grouped_bar(TOKENS, SERIES, title="Temperature", xlabel="token", ylabel="probability")
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
        "Temperature",
        "token",
        "probability",
    )


def test_grouped_bar_draws_on_the_given_axes_and_accepts_tensors():
    fig, (left, right) = plt.subplots(1, 2)
    probs = torch.tensor([0.5, 0.3, 0.2])
    returned = grouped_bar(["a", "b", "c"], {"before": probs, "after": probs / 2}, ax=right)
    assert returned is right
    assert len(left.patches) == 0
    assert plt.get_fignums() == [fig.number]
    np.testing.assert_allclose(
        [bar.get_height() for bar in right.containers[1]], [0.25, 0.15, 0.10], rtol=1e-6
    )


def test_grouped_bar_rejects_a_series_of_another_length():
    with pytest.raises(ValueError, match=r"series\['T = 2'\] has 3 scores, but there are 4 labels"):
        grouped_bar(TOKENS, {"T = 1": [0.7, 0.15, 0.1, 0.05], "T = 2": [0.4, 0.3, 0.3]})


def test_grouped_bar_rejects_labels_of_another_length():
    with pytest.raises(ValueError, match="labels has 3 labels, but there are 4 scores"):
        grouped_bar(TOKENS[:3], SERIES)


def test_grouped_bar_rejects_an_empty_mapping():
    with pytest.raises(ValueError, match="series must hold at least one named series"):
        grouped_bar(TOKENS, {})


def test_grouped_bar_rejects_series_that_is_not_a_mapping():
    with pytest.raises(TypeError, match="series must be a mapping of name -> scores, got list"):
        grouped_bar(TOKENS, [[0.1, 0.2, 0.3, 0.4]])


def test_grouped_bar_rejects_scores_that_are_not_1d():
    with pytest.raises(ValueError, match=r"series\['x'\] must be 1-D, got shape \(1, 4\)"):
        grouped_bar(TOKENS, {"x": [[0.1, 0.2, 0.3, 0.4]]})
