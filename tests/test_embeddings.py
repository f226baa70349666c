"""tutorial_lib.embeddings: GloVe loading, sentence vectors by averaging, the 2-D projection."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from gensim.models import KeyedVectors
from sklearn.decomposition import PCA

from tutorial_lib.embeddings import (
    load_glove,
    neighbour_rows,
    parse_query,
    plot_word_groups,
    project_2d,
    sentence_embedding,
    split_words,
)

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "in", "park", "a"]


@pytest.fixture
def toy_vectors() -> KeyedVectors:
    """A small table of random vectors: 10 words x 8 dims."""
    rng = np.random.default_rng(0)
    kv = KeyedVectors(vector_size=8)
    kv.add_vectors(WORDS, rng.normal(size=(len(WORDS), 8)).astype(np.float32))
    return kv


def rows(kv: KeyedVectors, words: list[str]) -> np.ndarray:
    """The raw table rows of ``words``, looked up by index (no gensim __getitem__)."""
    return np.stack([np.asarray(kv.vectors[kv.key_to_index[w]]) for w in words])


# --------------------------------------------------------------------------------------
# sentence_embedding
# --------------------------------------------------------------------------------------


def test_sentence_embedding_is_the_numpy_mean_of_the_word_rows(toy_vectors):
    words = ["the", "cat", "sat", "on", "the", "mat"]  # "the" twice: it counts twice
    got = sentence_embedding(words, toy_vectors)
    assert got.shape == (8,)
    np.testing.assert_allclose(got, rows(toy_vectors, words).mean(axis=0), rtol=1e-6)
    # gensim's own unweighted mean agrees.
    expected = toy_vectors.get_mean_vector(words, pre_normalize=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_text_is_split_into_lowercase_words(toy_vectors):
    assert split_words("The cat sat on the MAT.") == ["the", "cat", "sat", "on", "the", "mat"]
    np.testing.assert_array_equal(
        sentence_embedding("The cat sat on the MAT.", toy_vectors),
        sentence_embedding(["the", "cat", "sat", "on", "the", "mat"], toy_vectors),
    )


def test_word_order_does_not_change_the_average(toy_vectors):
    np.testing.assert_allclose(
        sentence_embedding("the cat sat on the mat", toy_vectors),
        sentence_embedding("the mat sat on the cat", toy_vectors),
        rtol=1e-6,
    )


def test_out_of_vocabulary_words_are_skipped(toy_vectors):
    got = sentence_embedding(["cat", "zebra", "mat", "xylophone"], toy_vectors)
    np.testing.assert_allclose(got, rows(toy_vectors, ["cat", "mat"]).mean(axis=0), rtol=1e-6)


def test_stop_words_are_left_out_of_the_average(toy_vectors):
    got = sentence_embedding("The cat sat on the mat", toy_vectors, stop_words={"the", "on"})
    np.testing.assert_allclose(
        got, rows(toy_vectors, ["cat", "sat", "mat"]).mean(axis=0), rtol=1e-6
    )


def test_no_word_in_the_vocabulary_is_a_clear_error(toy_vectors):
    with pytest.raises(ValueError, match=r"none of the words.*zebra.*xylophone"):
        sentence_embedding("Zebra xylophone", toy_vectors)
    with pytest.raises(ValueError, match=r"none of the words.*not a stop word.*'the', 'on'"):
        sentence_embedding("the on", toy_vectors, stop_words={"the", "on"})


@pytest.mark.parametrize("empty", ["", "!!! 42 ...", []])
def test_no_words_at_all_is_a_clear_error(toy_vectors, empty):
    with pytest.raises(ValueError, match="words_or_text=.*contains no words"):
        sentence_embedding(empty, toy_vectors)


@pytest.mark.parametrize("bad", [42, None, ["cat", 3]])
def test_words_that_are_not_text_are_a_type_error(toy_vectors, bad):
    with pytest.raises(TypeError, match="words_or_text must be a str or a list of str"):
        sentence_embedding(bad, toy_vectors)


def test_keyed_vectors_must_be_keyed_vectors():
    with pytest.raises(TypeError, match="keyed_vectors must be a gensim KeyedVectors.*dict"):
        sentence_embedding("the cat", {"cat": np.ones(3)})


# --------------------------------------------------------------------------------------
# project_2d and plot_word_groups
# --------------------------------------------------------------------------------------


def test_project_2d_equals_sklearn_pca_on_the_same_vectors(toy_vectors):
    words = ["cat", "dog", "mat", "park", "sat", "ran"]
    got = project_2d(words, toy_vectors)
    expected = PCA(n_components=2).fit_transform(rows(toy_vectors, words))
    assert got.shape == (6, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_project_2d_rejects_missing_words_and_too_few_words(toy_vectors):
    with pytest.raises(ValueError, match=r"\['zebra'\] are not in the vocabulary"):
        project_2d(["cat", "zebra", "dog"], toy_vectors)
    with pytest.raises(ValueError, match="at least 2 words"):
        project_2d(["cat"], toy_vectors)
    with pytest.raises(TypeError, match="words must be a list of str"):
        project_2d("cat dog", toy_vectors)


def test_plot_word_groups_draws_each_group_at_its_projected_points(toy_vectors):
    groups = {"animals": ["cat", "dog"], "places": ["mat", "park", "in"], "verbs": ["sat", "ran"]}
    ax = plot_word_groups(groups, toy_vectors, title="toy")
    try:
        xy = project_2d([w for ws in groups.values() for w in ws], toy_vectors)
        # One scatter per group, at that group's rows of the projection.
        assert len(ax.collections) == 3
        np.testing.assert_allclose(ax.collections[0].get_offsets(), xy[0:2])
        np.testing.assert_allclose(ax.collections[1].get_offsets(), xy[2:5])
        np.testing.assert_allclose(ax.collections[2].get_offsets(), xy[5:7])
        # Every word labelled at its point; groups in the legend; labelled axes.
        labels = {t.get_text(): t.xy for t in ax.texts}
        assert list(labels) == ["cat", "dog", "mat", "park", "in", "sat", "ran"]
        np.testing.assert_allclose(labels["park"], xy[3])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == list(groups)
        assert ax.get_title() == "toy"
        assert ax.get_xlabel() and ax.get_ylabel()
    finally:
        plt.close(ax.figure)


def test_plot_word_groups_rejects_empty_groups(toy_vectors):
    with pytest.raises(ValueError, match="groups must hold at least one group"):
        plot_word_groups({}, toy_vectors)
    with pytest.raises(TypeError, match="groups must be a mapping name -> words, got list"):
        plot_word_groups(["cat", "dog"], toy_vectors)
    with pytest.raises(ValueError, match=r"groups \['verbs'\] must each be a non-empty list"):
        plot_word_groups({"animals": ["cat", "dog"], "verbs": []}, toy_vectors)


# --------------------------------------------------------------------------------------
# The real GloVe vectors (an offline asset)
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_glove_loads_400000_words_of_50_dims_and_knows_royalty():
    kv = load_glove()
    assert isinstance(kv, KeyedVectors)
    assert isinstance(kv.vectors, np.memmap)  # memory-mapped, not read into RAM
    assert kv.vectors.shape == (400_000, 50)
    assert len(kv.index_to_key) == 400_000
    neighbours = [w for w, _ in kv.most_similar("king", topn=10)]
    assert "queen" in neighbours or "prince" in neighbours
    # Averaging works on the memory-mapped table too.
    np.testing.assert_allclose(
        sentence_embedding("the king", kv), rows(kv, ["the", "king"]).mean(axis=0), rtol=1e-6
    )


# --------------------------------------------------------------------------------------
# parse_query / neighbour_rows: the data of the word-neighbours control
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, expected",
    [
        ("cat", (["cat"], [])),
        ("cat - the + dog", (["cat", "dog"], ["the"])),
        ("mat - a - on", (["mat"], ["a", "on"])),
    ],
)
def test_parse_query_splits_added_and_subtracted_words(query, expected):
    assert parse_query(query) == expected


@pytest.mark.parametrize("query", ["", "cat +", "cat * dog", "cat dog"])
def test_parse_query_rejects_malformed_queries(query):
    with pytest.raises(ValueError, match="query="):
        parse_query(query)


def brute_force_neighbours(kv, positive, negative, topn):
    """Cosine similarity to (sum of unit vectors added - those subtracted), query words left out."""
    unit = rows(kv, WORDS) / np.linalg.norm(rows(kv, WORDS), axis=1, keepdims=True)
    index = {w: i for i, w in enumerate(WORDS)}
    target = sum(unit[index[w]] for w in positive) - sum(
        (unit[index[w]] for w in negative), np.zeros(8)
    )
    cosine = unit @ target / np.linalg.norm(target)
    ranked = [WORDS[i] for i in np.argsort(-cosine) if WORDS[i] not in positive + negative]
    return [(w, cosine[index[w]]) for w in ranked[:topn]]


def test_neighbour_rows_rank_words_by_cosine_like_numpy(toy_vectors):
    queries = ["cat", "cat - the + dog"]
    table = neighbour_rows(toy_vectors, queries, topn=3)
    assert [r["query"] for r in table] == ["cat"] * 3 + ["cat - the + dog"] * 3
    for query in queries:
        got = [(r["rank"], r["word"], r["similarity"]) for r in table if r["query"] == query]
        expected = brute_force_neighbours(toy_vectors, *parse_query(query), topn=3)
        assert [(rank, w) for rank, w, _ in got] == [
            (i + 1, w) for i, (w, _) in enumerate(expected)
        ]
        for (_, _, s), (_, e) in zip(got, expected, strict=True):
            assert s == pytest.approx(e, abs=1e-3)


def test_neighbour_rows_rejects_unknown_words_and_bad_topn(toy_vectors):
    with pytest.raises(ValueError, match="not in the vocabulary"):
        neighbour_rows(toy_vectors, ["cat - zebra"])
    with pytest.raises(ValueError, match="topn"):
        neighbour_rows(toy_vectors, ["cat"], topn=0)
    with pytest.raises(TypeError, match="queries"):
        neighbour_rows(toy_vectors, "cat")
