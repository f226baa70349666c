"""Word embeddings: pretrained GloVe vectors, sentence vectors by averaging, a 2-D map of words.

A word embedding model is a lookup table: one row of numbers per word of its vocabulary.
gensim's ``KeyedVectors`` is that table (``keyed_vectors["king"]`` is a row), with the
similarity searches on top (``most_similar``). This module adds the three things the
chapters reuse:

- ``load_glove()``: the pretrained GloVe 6B 50d table (400,000 words x 50 numbers),
- ``sentence_embedding()``: one vector for a whole text, the mean of its word vectors,
- ``project_2d()`` / ``plot_word_groups()``: words squeezed from 50 dimensions to 2 with PCA
  and drawn, so we can see which words the model puts close together,
- ``neighbour_rows()``: the nearest words of a word or of an analogy ("king - man + woman"),
  as compact rows for a chart that runs in the browser (``tutorial_lib.controls``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from gensim.models import KeyedVectors
from gensim.utils import tokenize
from matplotlib.axes import Axes
from sklearn.decomposition import PCA

from . import assets
from .validation import check_int

__all__ = [
    "GLOVE",
    "load_glove",
    "split_words",
    "sentence_embedding",
    "project_2d",
    "plot_word_groups",
    "parse_query",
    "neighbour_rows",
]

# The pretrained vectors: GloVe trained on 6B tokens of Wikipedia 2014 + Gigaword 5, 50 dims.
GLOVE = "glove-6b-50d"


def load_glove() -> KeyedVectors:
    """The pretrained GloVe 6B 50d vectors as gensim ``KeyedVectors`` (400,000 words x 50).

    The file is memory-mapped (``mmap="r"``): loading is fast and the rows are read from
    disk when used. The vocabulary is lowercase, as GloVe 6B was trained on lowercased text.
    """
    path = assets.fetch(GLOVE) / f"{GLOVE}.kv"
    return KeyedVectors.load(str(path), mmap="r")


def split_words(words_or_text: str | Sequence[str]) -> list[str]:
    """The words of a text (lowercase, letters only), or a list of words as given.

    >>> split_words("The cat sat on the mat.")
    ['the', 'cat', 'sat', 'on', 'the', 'mat']
    """
    if isinstance(words_or_text, str):
        # gensim's tokenizer: runs of letters, lowercased; digits and punctuation are dropped.
        return list(tokenize(words_or_text, lowercase=True))
    return _word_list(words_or_text, "words_or_text", allowed="a str or a list of str")


def _word_list(words: object, name: str, allowed: str = "a list of str") -> list[str]:
    if isinstance(words, str) or not isinstance(words, Sequence):
        raise TypeError(f"{name} must be {allowed}, got {type(words).__name__} {words!r}")
    not_str = [w for w in words if not isinstance(w, str)]
    if not_str:
        raise TypeError(f"{name} must be {allowed}; these items are not str: {not_str!r}")
    return list(words)


def _check_keyed_vectors(keyed_vectors: object) -> None:
    if not isinstance(keyed_vectors, KeyedVectors):
        raise TypeError(
            "keyed_vectors must be a gensim KeyedVectors (e.g. load_glove() or a trained "
            f"Word2Vec model's .wv), got {type(keyed_vectors).__name__}"
        )


def sentence_embedding(
    words_or_text: str | Sequence[str],
    keyed_vectors: KeyedVectors,
    *,
    stop_words: Collection[str] = (),
) -> np.ndarray:
    """One vector for a sentence or document: the mean of the vectors of its words.

    Args:
        words_or_text: a text (split into lowercase words by ``split_words``) or a list of words.
        keyed_vectors: the word vectors, e.g. ``load_glove()`` or ``Word2Vec(...).wv``.
        stop_words: words to leave out before averaging, e.g. scikit-learn's
            ``ENGLISH_STOP_WORDS``: frequent words such as "the" and "on" otherwise pull every
            average towards the same point.

    Returns:
        A vector of shape ``(vector_size,)``. Words missing from the vocabulary are skipped;
        word order plays no part (a shuffled sentence gets the same vector).

    Raises:
        TypeError: ``words_or_text`` is not text or words, or ``keyed_vectors`` is not
            ``KeyedVectors``.
        ValueError: there are no words, or none of them (stop words aside) is in the vocabulary.
    """
    _check_keyed_vectors(keyed_vectors)
    words = split_words(words_or_text)
    if not words:
        raise ValueError(f"words_or_text={words_or_text!r} contains no words")
    # Keep the words the table has a row for, and that are not stop words.
    known = [w for w in words if w in keyed_vectors and w not in stop_words]
    if not known:
        raise ValueError(
            f"none of the words of words_or_text={words_or_text!r} is in the vocabulary "
            f"and not a stop word (words: {words}); use words the model was trained on"
        )
    rows = keyed_vectors[known]  # (n_known_words, vector_size)
    return rows.mean(axis=0)  # (vector_size,)


def project_2d(words: Sequence[str], keyed_vectors: KeyedVectors) -> np.ndarray:
    """Coordinates of ``words`` in 2-D: PCA of their vectors, fitted on these words only.

    Returns an array of shape ``(len(words), 2)``: column 0 is the direction along which the
    vectors vary most (first principal component), column 1 the next one.
    """
    _check_keyed_vectors(keyed_vectors)
    words = _word_list(words, "words")
    if len(words) < 2:
        raise ValueError(f"words={words!r}: PCA to 2-D needs at least 2 words")
    missing = [w for w in words if w not in keyed_vectors]
    if missing:
        raise ValueError(f"words {missing} are not in the vocabulary of keyed_vectors")
    vectors = keyed_vectors[words]  # (n_words, vector_size)
    return PCA(n_components=2).fit_transform(vectors)  # (n_words, 2)


def plot_word_groups(
    groups: Mapping[str, Sequence[str]],
    keyed_vectors: KeyedVectors,
    *,
    ax: Axes | None = None,
    title: str = "Word vectors projected to 2-D with PCA",
) -> Axes:
    """Scatter plot of word groups (one colour per group) after ``project_2d`` of all words.

    Args:
        groups: group name -> its words, e.g. ``{"animals": ["cat", "dog"], ...}``.
        keyed_vectors: the word vectors.
        ax: the axes to draw on (a new figure when omitted).
        title: the plot title.

    Returns:
        The axes, with one scatter collection per group, every word labelled, and a legend.
    """
    if not isinstance(groups, Mapping):
        raise TypeError(f"groups must be a mapping name -> words, got {type(groups).__name__}")
    if not groups:
        raise ValueError("groups must hold at least one group of words, got an empty mapping")
    empty = [name for name, ws in groups.items() if isinstance(ws, str) or len(ws) == 0]
    if empty:
        raise ValueError(f"groups {empty} must each be a non-empty list of words")
    words = [w for ws in groups.values() for w in ws]
    xy = project_2d(words, keyed_vectors)  # (n_words, 2), groups one after the other
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5.5))
    start = 0
    for name, ws in groups.items():
        points = xy[start : start + len(ws)]  # (len(ws), 2)
        start += len(ws)
        ax.scatter(points[:, 0], points[:, 1], label=name)
        for word, (x, y) in zip(ws, points, strict=True):
            ax.annotate(word, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=9)
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_title(title)
    ax.legend()
    return ax


def parse_query(query: str) -> tuple[list[str], list[str]]:
    """The words to add and to subtract in ``query``: a word, or words joined by + and -.

    ``"king"`` -> ``(["king"], [])``; ``"king - man + woman"`` -> ``(["king", "woman"], ["man"])``.
    The words and the signs are separated by spaces; the first word is always added.
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__} {query!r}")
    parts = query.split()
    # Words sit at the even places, signs at the odd ones: w0 s1 w2 s3 w4 ...
    words, signs = parts[0::2], parts[1::2]
    if not parts or len(words) != len(signs) + 1 or any(s not in "+-" for s in signs):
        raise ValueError(
            f"query={query!r} must be a word or words joined by ' + ' and ' - ', "
            "e.g. 'king - man + woman'"
        )
    positive = [words[0]] + [w for s, w in zip(signs, words[1:], strict=True) if s == "+"]
    negative = [w for s, w in zip(signs, words[1:], strict=True) if s == "-"]
    return positive, negative


def neighbour_rows(
    keyed_vectors: KeyedVectors, queries: Sequence[str], topn: int = 8, decimals: int = 3
) -> list[dict]:
    """The ``topn`` nearest words of each query, one row per (query, neighbour).

    Args:
        keyed_vectors: the word vectors, e.g. ``load_glove()``.
        queries: words (``"king"``) or analogies (``"king - man + woman"``, see
            ``parse_query``). gensim's ``most_similar`` ranks the vocabulary by cosine
            similarity to the sum of the unit-length vectors added minus those subtracted,
            and leaves the query's own words out.
        topn: neighbours per query.
        decimals: the similarities are rounded to this many decimals.

    Returns:
        Rows ``{"query", "rank", "word", "similarity"}``, rank 1 the nearest.
    """
    _check_keyed_vectors(keyed_vectors)
    queries = _word_list(queries, "queries")
    check_int("topn", topn, minimum=1)
    rows = []
    for query in queries:
        positive, negative = parse_query(query)
        missing = [w for w in positive + negative if w not in keyed_vectors]
        if missing:
            raise ValueError(f"query={query!r}: words {missing} are not in the vocabulary")
        nearest = keyed_vectors.most_similar(positive=positive, negative=negative, topn=topn)
        for rank, (word, similarity) in enumerate(nearest, start=1):
            rows.append(
                {
                    "query": query,
                    "rank": rank,
                    "word": word,
                    "similarity": round(float(similarity), decimals),
                }
            )
    return rows
