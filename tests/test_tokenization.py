"""Tokenizers: llama.cpp's test vectors, the conversion fixes, and the colored token views."""

from __future__ import annotations

import html
import re
from functools import cache

import pytest
from transformers import AutoTokenizer, ByT5Tokenizer

from tutorial_lib import assets
from tutorial_lib.tokenization import (
    PALETTE,
    TOKENIZERS,
    TokenTable,
    TokenView,
    compare_tokenizers,
    covering_tokens,
    load_tokenizer,
    show_tokens,
    token_texts,
    tokenizer_path,
)

VOCABS = assets.VOCABS  # the tokenizers that come with llama.cpp's test vectors


@cache
def tok(name: str):
    """Each tokenizer is loaded once for the whole module (llama-bpe takes ~2 s)."""
    return load_tokenizer(name)


@cache
def llama_cpp_cases(name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's ``ggml-vocab-NAME.gguf.inp/.out`` pairs, read as tests/test-tokenizer-0.cpp does.

    The ``.inp`` file is the cases, each followed by the line ``__ggml_vocab_test__``; the
    ``.out`` file has one line of space-separated ids per case. llama.cpp's generator wrote
    them with the model's own Hugging Face tokenizer, ``encode(text, add_special_tokens=False)``,
    and its test tokenizes with ``add_special=false``: no BOS, and leading spaces are kept as
    they are (the SentencePiece prefix space is the tokenizer's own).
    """
    gguf = assets.fetch("tokenizer-vocabs") / "gguf"
    raw = (gguf / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8")
    sep = "\n__ggml_vocab_test__\n"
    assert raw.endswith(sep)
    texts = raw[: -len(sep)].split(sep)  # nothing follows the last separator
    lines = (gguf / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").splitlines()
    assert len(texts) == len(lines)
    return [(text, [int(i) for i in line.split()]) for text, line in zip(texts, lines, strict=True)]


# --------------------------------------------------------------------------------------
# llama.cpp's test vectors, through load_tokenizer
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VOCABS)
def test_llama_cpp_vectors_all_pass(name):
    cases = llama_cpp_cases(name)
    assert len(cases) == 46
    assert ("", []) in cases  # the empty text gives no ids (and an empty line)
    failed = [
        (text, want, got)
        for text, want in cases
        if (got := tok(name).encode(text, add_special_tokens=False)) != want
    ]
    assert not failed, f"{len(failed)}/{len(cases)} cases differ: {failed}"


@pytest.mark.parametrize(
    ("name", "text", "plain_conversion"),
    [
        # " Việt" is one vocabulary entry (101798) that no chain of merges builds.
        ("llama-bpe", "Cửa Việt", [34, 91163, 11655, 26298, 83]),
        # GPT-2's split keeps " ½" together; StarCoder splits every number character off first.
        ("starcoder", "ied 4 ½ months", [4850, 244, 57, 6644, 159, 17722]),
    ],
)
def test_the_plain_gguf_conversion_fails_exactly_the_case_load_tokenizer_fixes(
    name, text, plain_conversion
):
    plain = AutoTokenizer.from_pretrained(tokenizer_path(name))
    cases = llama_cpp_cases(name)
    failed = [t for t, want in cases if plain.encode(t, add_special_tokens=False) != want]
    assert failed == [text]
    assert plain.encode(text, add_special_tokens=False) == plain_conversion
    assert tok(name).encode(text, add_special_tokens=False) == dict(cases)[text]


def test_llama3_has_the_real_vocabulary_size_and_begin_of_text():
    # Llama 3 (Meta's model card and config): 128,256 tokens; <|begin_of_text|> is id 128000.
    llama = tok("llama-bpe")
    assert len(llama) == 128_256
    assert "<|endoftext|>" not in llama.get_vocab()
    assert llama("Hello").input_ids[0] == 128_000
    assert llama.convert_ids_to_tokens(128_000) == "<|begin_of_text|>"


def test_smollm2_pre_tokenizes_like_starcoder():
    # llama.cpp gives its `smollm` and `starcoder` pre-tokenizers the same rules.
    smol, star = tok("smollm2").backend_tokenizer, tok("starcoder").backend_tokenizer
    for text, _ in llama_cpp_cases("starcoder"):
        pieces = smol.pre_tokenizer.pre_tokenize_str(text)
        assert pieces == star.pre_tokenizer.pre_tokenize_str(text), text
    assert [p for p, _ in smol.pre_tokenizer.pre_tokenize_str(" ½")] == ["Ġ", "Â½"]


def test_phi3_encodes_the_course_prompt():
    assert tok("phi-3")("The capital of France is").input_ids == [1, 450, 7483, 310, 3444, 338]


def test_bert_uncased_adds_cls_and_sep_and_lowercases():
    bert = tok("bert-base-uncased")
    ids = bert("Hello world!").input_ids
    assert ids == [101, 7592, 2088, 999, 102]  # bert-base-uncased's vocab.txt
    assert bert.convert_ids_to_tokens(ids) == ["[CLS]", "hello", "world", "!", "[SEP]"]


# --------------------------------------------------------------------------------------
# load_tokenizer: names, aliases, directories, errors
# --------------------------------------------------------------------------------------


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="'gpt-5'") as err:
        load_tokenizer("gpt-5")
    assert all(name in str(err.value) for name in TOKENIZERS)


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match="name must be a str"):
        load_tokenizer(None)


def test_alias_loads_the_same_tokenizer():
    assert load_tokenizer("gpt2").get_vocab() == tok("gpt-2").get_vocab()


def test_a_directory_loads_with_transformers(tmp_path):
    tok("gpt-2").save_pretrained(tmp_path)
    text = "Any directory saved by transformers loads too."
    assert load_tokenizer(str(tmp_path)).encode(text) == tok("gpt-2").encode(text)


# --------------------------------------------------------------------------------------
# token_texts: the text behind each token
# --------------------------------------------------------------------------------------


def _bytes_of(escaped: str) -> bytes:
    """The bytes behind a token text made of ``\\xNN`` escapes only."""
    return escaped.encode("ascii").decode("unicode_escape").encode("latin-1")


@pytest.mark.parametrize("name", ["gpt-2", "llama-bpe", "qwen2", "starcoder"])
def test_byte_level_token_texts_add_up_to_the_text(name):
    text = "Hello world!\n\tTwo  spaces, naïve café."
    ids = tok(name).encode(text, add_special_tokens=False)
    assert "".join(token_texts(tok(name), ids)) == tok(name).decode(ids) == text


@pytest.mark.parametrize("name", ["gpt-2", "phi-3"])
def test_bytes_of_a_split_character_show_as_escapes(name):
    ids = tok(name).encode("a🎵", add_special_tokens=False)
    texts = token_texts(tok(name), ids)
    assert texts[0].strip() == "a"  # Phi-3's is " a": SentencePiece's prefix space
    assert len(texts) > 2 and all(re.fullmatch(r"(\\x[0-9a-f]{2})+", t) for t in texts[1:])
    assert b"".join(_bytes_of(t) for t in texts[1:]) == "🎵".encode()


def test_a_whole_character_token_reads_as_itself():
    ids = tok("qwen2").encode("🎵", add_special_tokens=False)
    assert token_texts(tok("qwen2"), ids) == ["🎵"]  # Qwen2 has the emoji as one token


def test_sentencepiece_token_texts_keep_their_leading_space():
    phi3 = tok("phi-3")
    text = "English and   CAPITALIZATION"
    ids = phi3(text).input_ids
    texts = token_texts(phi3, ids)
    assert texts[0] == "<s>"
    # Phi-3's normalizer puts "▁" in front and turns spaces into "▁": the text the tokens cover.
    covered = phi3.backend_tokenizer.normalizer.normalize_str(text).replace("\u2581", " ")
    assert "".join(texts[1:]) == covered == " " + text
    assert [phi3.decode([i]) for i in ids[1:3]] == ["English", "and"]  # decode drops them


def test_a_tokenizer_without_a_tokenizers_backend_decodes_id_by_id():
    byt5 = ByT5Tokenizer()  # pure Python, needs no files
    view = show_tokens("Hi!", byt5)
    assert view.tokens == [byt5.decode([i]) for i in view.ids] == ["H", "i", "!", "</s>"]


def test_wordpiece_token_texts_are_the_pieces():
    bert = tok("bert-base-uncased")
    ids = bert("CAPITALIZATION 🎵").input_ids
    assert token_texts(bert, ids) == ["[CLS]", "capital", "##ization", "[UNK]", "[SEP]"]


# --------------------------------------------------------------------------------------
# show_tokens: what is drawn
# --------------------------------------------------------------------------------------

ANSI_BACKGROUND = re.compile(r"\x1b\[48;2;(\d+);(\d+);(\d+)m")


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def test_header_names_the_tokenizer_and_its_vocabulary():
    view = show_tokens("Hello world!", tok("gpt-2"))
    assert isinstance(view, TokenView)
    assert view.ids == tok("gpt-2")("Hello world!").input_ids
    assert repr(view).splitlines()[0] == "gpt-2: 3 tokens, vocabulary 50,257"
    assert show_tokens("x", tok("bert-base-uncased")).name == "bert-base-uncased"
    assert show_tokens("x", "gpt2").name == "gpt2"
    assert show_tokens("x", tok("gpt-2"), name="GPT-2").header().startswith("GPT-2: ")


def test_html_gives_each_token_the_next_palette_color():
    text = "one two three four five six seven eight nine ten"
    view = show_tokens(text, tok("gpt-2"))
    assert len(view.tokens) == 10 > len(PALETTE)
    colors = re.findall(r"background:(#[0-9a-f]{6})", view._repr_html_())
    assert colors == [PALETTE[i % len(PALETTE)] for i in range(10)]
    assert colors[0] == colors[len(PALETTE)] and colors[0] != colors[1]


def test_html_escapes_the_text():
    page = show_tokens('<b>"A & B"</b>', tok("gpt-2"))._repr_html_()
    # Take away the view's own <div> and <span> tags: only escaped text may remain.
    text = re.sub(r'</?(div|span)( style="[^"]*")?>', "", page)
    assert not set('<>"') & set(text) and "&amp;" in text
    assert html.unescape(text).endswith('<b>"A·&·B"</b>')  # spaces are drawn as "·"


def test_whitespace_is_drawn_with_visible_signs():
    view = show_tokens("a  b\tc\nd", tok("gpt-2"))
    assert "".join(view.tokens) == "a  b\tc\nd"
    assert repr(view).split("\n", 1)[1].replace("|", "") == "a··b→c↵\nd"
    page = view._repr_html_()
    assert page.count("<br>") == 1 and "↵</span><br>" in page  # the newline breaks the line


def test_ansi_colors_cycle_and_reset():
    text = "one two three four five six seven eight nine ten"
    view = show_tokens(text, tok("gpt-2"))
    printed = str(view)
    got = [tuple(map(int, m)) for m in ANSI_BACKGROUND.findall(printed)]
    assert got == [_rgb(PALETTE[i % len(PALETTE)]) for i in range(10)]
    assert printed.count("\x1b[0m") == 10  # every colored cell is closed
    plain = re.sub(r"\x1b\[[0-9;]*m", "", printed)
    assert plain == view.header() + "\n" + text.replace(" ", "·")


def test_ansi_closes_the_color_before_a_line_break():
    lines = str(show_tokens("a\nb\nc", tok("gpt-2"))).splitlines()
    assert len(lines) == 4  # the header, then the text's three lines
    assert all(line.endswith("↵\x1b[0m") for line in lines[1:3])


def test_show_tokens_rejects_bad_arguments():
    with pytest.raises(TypeError, match="text must be a str"):
        show_tokens(123, tok("gpt-2"))
    with pytest.raises(TypeError, match="tokenizer must be"):
        show_tokens("x", 42)
    with pytest.raises(ValueError, match="not a known tokenizer|neither a known tokenizer"):
        show_tokens("x", "no-such-tokenizer")


# --------------------------------------------------------------------------------------
# covering_tokens, TokenTable, compare_tokenizers: tokenizers side by side
# --------------------------------------------------------------------------------------

COURSE_TEXT = 'English and CAPITALIZATION\n🎵 鸟\ntwo tabs:"\t\t" four spaces:"    "\n12.0*50=600'


def test_covering_tokens_are_the_pieces_the_course_shows():
    # Expected pieces from the course and from llama.cpp-checked vocabularies, not from our code.
    assert covering_tokens(tok("bert-base-uncased"), COURSE_TEXT, "CAPITALIZATION") == [
        "capital",
        "##ization",
    ]
    assert covering_tokens(tok("llama-bpe"), COURSE_TEXT, "CAPITALIZATION") == [
        " CAPITAL",
        "IZATION",
    ]
    assert covering_tokens(tok("phi-3"), COURSE_TEXT, "600") == ["6", "0", "0"]
    assert covering_tokens(tok("qwen2"), COURSE_TEXT, "🎵") == ["🎵"]
    assert covering_tokens(tok("bert-base-uncased"), COURSE_TEXT, "鸟") == ["[UNK]"]


def test_covering_tokens_are_the_fewest_that_spell_the_part():
    # Every covering token overlaps the part: drop the first or the last and it is no longer
    # spelled. Special tokens cover no text.
    for name in ["gpt-2", "llama-bpe", "qwen2", "starcoder", "smollm2"]:
        for part in ["CAPITALIZATION", "12.0*50=600", '"    "', "tabs"]:
            tokens = covering_tokens(tok(name), COURSE_TEXT, part)
            assert part in "".join(tokens)
            assert part not in "".join(tokens[1:]) and part not in "".join(tokens[:-1])
    assert "<|begin_of_text|>" not in covering_tokens(tok("llama-bpe"), COURSE_TEXT, "English")


def test_covering_tokens_rejects_bad_arguments():
    with pytest.raises(ValueError, match="part='xyz' must be a non-empty piece"):
        covering_tokens(tok("gpt-2"), "abc", "xyz")
    with pytest.raises(ValueError, match="non-empty"):
        covering_tokens(tok("gpt-2"), "abc", "")
    with pytest.raises(TypeError, match="must be str"):
        covering_tokens(tok("gpt-2"), "abc", 1)
    with pytest.raises(TypeError, match="fast tokenizer"):
        covering_tokens(ByT5Tokenizer(), "abc", "b")


def test_compare_tokenizers_has_a_row_per_tokenizer_and_a_column_per_part():
    names = ["gpt-2", "llama-bpe"]
    table = compare_tokenizers(
        COURSE_TEXT, {n: tok(n) for n in names}, {"capitals": "CAPITALIZATION", "4 spaces": "    "}
    )
    assert table.header == ["tokenizer", "capitals", "4 spaces"]
    assert [row[0] for row in table.rows] == names
    assert table.rows[1][1] == [" CAPITAL", "IZATION"]
    # GPT-2 has no token for a run of spaces: one token per space (the last one takes the '"').
    assert table.rows[0][2] == [" ", " ", " ", ' "']


def test_token_table_html_has_padded_cells_and_escaped_tokens():
    table = TokenTable(["tokenizer", "tokens", "n"], [["a<b", [" x", "\t<"], 12345], ["c", [], 7]])
    page = table._repr_html_()
    assert len(re.findall(r"<th ", page)) == 3 and len(re.findall(r"<td ", page)) == 6
    assert all("padding:" in cell for cell in re.findall(r"<t[hd] [^>]*>", page))
    assert "<code" in page and "·x →&lt;" in page and "a&lt;b" in page
    assert "12,345" in page and ">none<" in page  # thousands separators, empty token list
    assert not re.search(r"<(?!/?(div|table|thead|tbody|tr|th|td|code)\b)", page)


def test_token_table_repr_is_an_aligned_text_table():
    table = TokenTable(["name", "tokens"], [["gpt-2", ["a", " b\n"]], ["x", []]])
    assert repr(table).splitlines() == ["name   tokens", "gpt-2  a ·b↵", "x      none"]


def test_token_table_rows_must_match_the_header():
    with pytest.raises(ValueError, match="row 1 has 1 cells, but header has 2 columns"):
        TokenTable(["a", "b"], [["x", "y"], ["z"]])
    with pytest.raises(ValueError, match="must not be empty"):
        compare_tokenizers("abc", {}, {"b": "b"})
