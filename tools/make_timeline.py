"""Draw the timeline figure of the book's history page: ``python tools/make_timeline.py``.

Writes ``book/figures/history_timeline.png`` at twice its display resolution (the page shows
it at the column's ~750 px width). Every event names its source: the paper or the
announcement that dates it. Time runs down a vertical axis whose years before 2010 are
squeezed, since most of the events after word2vec fall within a decade; the labels sit in a
column to the right, in date order, each joined to its date by a thin line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "book" / "figures" / "history_timeline.png"
WIDTH_IN, HEIGHT_IN, DPI = 7.5, 8.9, 200  # shown 750 px wide: 2x resolution at dpi 200
BREAK_YEAR = 2010.0  # years before it take EARLY_SHARE of the axis, the rest take the remainder
FIRST_YEAR, LAST_YEAR, EARLY_SHARE = 1950.0, 2025.5, 0.3

# What each colour stands for, in legend order.
KINDS = {
    "rules": ("rules and statistics", "0.45"),
    "representation": ("word vectors and encoders (representation)", "tab:blue"),
    "sequence": ("recurrent networks, attention, the Transformer", "tab:green"),
    "generative": ("decoders that generate text", "tab:orange"),
}


@dataclass(frozen=True)
class Event:
    year: int
    month: int  # of the paper or announcement that dates the event
    label: str
    kind: str  # a key of KINDS
    source: str
    open_weights: bool | None = None  # for generative models: can anyone download them?

    @property
    def date(self) -> float:
        return self.year + (self.month - 1) / 12


# One event per entry, as a table (ruff would put every argument on a line of its own).
# fmt: off
EVENTS = [
    Event(1954, 1, "Georgetown-IBM experiment: Russian to English by hand-written rules",
          "rules", "Hutchins, The Georgetown-IBM experiment demonstrated in January 1954, 2004"),
    Event(1966, 1, "ELIZA: a chatbot made of pattern-matching rules", "rules",
          "Weizenbaum, Communications of the ACM 9(1), 1966"),
    Event(1975, 11, "Vector space model: documents as vectors of word weights", "rules",
          "Salton, Wong and Yang, Communications of the ACM 18(11), 1975"),
    Event(1990, 6, "Statistical machine translation learned from parallel text", "rules",
          "Brown et al., Computational Linguistics 16(2), 1990"),
    Event(1997, 11, "LSTM: a recurrent network that keeps long-range memory", "sequence",
          "Hochreiter and Schmidhuber, Neural Computation 9(8), 1997"),
    Event(2003, 2, "A neural network language model with learned word vectors",
          "representation", "Bengio et al., JMLR 3, 2003"),
    Event(2013, 1, "word2vec: word embeddings from predicting neighbours", "representation",
          "Mikolov et al., arXiv:1301.3781, 2013"),
    Event(2014, 9, "Seq2seq: an RNN encoder-decoder translates", "sequence",
          "Sutskever, Vinyals and Le, arXiv:1409.3215, 2014"),
    Event(2014, 9, "Attention: the decoder looks back at every input word", "sequence",
          "Bahdanau, Cho and Bengio, arXiv:1409.0473, 2014"),
    Event(2014, 10, "GloVe: word vectors from co-occurrence counts", "representation",
          "Pennington, Socher and Manning, EMNLP 2014"),
    Event(2017, 6, "The Transformer: attention without recurrence", "sequence",
          "Vaswani et al., arXiv:1706.03762, 2017"),
    Event(2018, 6, "GPT-1: a decoder pre-trained on books, then fine-tuned", "generative",
          "Radford et al., Improving Language Understanding by Generative Pre-Training, 2018",
          open_weights=True),
    Event(2018, 10, "BERT: an encoder pre-trained by filling in masked words", "representation",
          "Devlin et al., arXiv:1810.04805, 2018"),
    Event(2019, 2, "GPT-2: 1.5 billion parameters, writes coherent paragraphs", "generative",
          "Radford et al., Language Models are Unsupervised Multitask Learners, 2019",
          open_weights=True),
    Event(2019, 8, "Sentence-BERT: one embedding per sentence, for search", "representation",
          "Reimers and Gurevych, arXiv:1908.10084, 2019"),
    Event(2020, 5, "GPT-3: 175 billion parameters, learns from examples in the prompt",
          "generative", "Brown et al., arXiv:2005.14165, 2020", open_weights=False),
    Event(2022, 3, "InstructGPT: tuned to follow instructions with human feedback",
          "generative", "Ouyang et al., arXiv:2203.02155, 2022", open_weights=False),
    Event(2022, 11, "ChatGPT: a GPT-3.5 model as a free chat assistant", "generative",
          "OpenAI, Introducing ChatGPT, 30 November 2022", open_weights=False),
    Event(2023, 2, "LLaMA: 7 to 65 billion parameters, weights shared with researchers",
          "generative", "Touvron et al., arXiv:2302.13971, 2023", open_weights=True),
    Event(2023, 3, "GPT-4: proprietary, reached only through OpenAI's API and apps",
          "generative", "OpenAI, arXiv:2303.08774, 2023", open_weights=False),
    Event(2023, 7, "Llama 2: open weights that companies may build on", "generative",
          "Touvron et al., arXiv:2307.09288, 2023", open_weights=True),
    Event(2023, 9, "Mistral 7B: open weights under the Apache 2.0 license", "generative",
          "Jiang et al., arXiv:2310.06825, 2023", open_weights=True),
    Event(2024, 4, "Phi-3: small open models, the course's Phi-3-mini", "generative",
          "Abdin et al., arXiv:2404.14219, 2024", open_weights=True),
    Event(2024, 11, "SmolLM2: the 135-million-parameter model this book runs", "generative",
          "Ben Allal et al., arXiv:2502.02737, 2025", open_weights=True),
]
# fmt: on


def axis_position(date: float) -> float:
    """Where a date sits on the axis: 0 at FIRST_YEAR (top) to 1 at LAST_YEAR (bottom)."""
    if date < BREAK_YEAR:
        return EARLY_SHARE * (date - FIRST_YEAR) / (BREAK_YEAR - FIRST_YEAR)
    return EARLY_SHARE + (1 - EARLY_SHARE) * (date - BREAK_YEAR) / (LAST_YEAR - BREAK_YEAR)


def draw(events: list[Event] = EVENTS) -> plt.Figure:
    """The timeline as a matplotlib figure (events in date order, labels evenly spaced)."""
    fig = plt.figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=100)
    # y runs from 0 at the top to 1 at the bottom; x: the axis at 0.09, labels from 0.2.
    ax = fig.add_axes((0.01, 0.1, 0.98, 0.84), xlim=(0, 1), ylim=(1.015, -0.015))
    ax.set_axis_off()
    fig.suptitle("From hand-written rules to chat assistants", fontsize=14, y=0.985)
    axis_x, label_x = 0.09, 0.17

    # The time axis, with a gap where the scale changes at 2010.
    gap = 0.012
    top, brk = axis_position(FIRST_YEAR), axis_position(BREAK_YEAR)
    _ = ax.plot([axis_x, axis_x], [top, brk - gap], color="k", lw=1.2)
    _ = ax.plot([axis_x, axis_x], [brk + gap, 1], color="k", lw=1.2)
    for y in (brk - gap, brk + gap):  # the two short strokes that mark a broken axis
        _ = ax.plot([axis_x - 0.012, axis_x + 0.012], [y + 0.004, y - 0.004], color="k", lw=1)
    for year in (1950, 1960, 1970, 1980, 1990, 2000, 2010, 2015, 2020, 2025):
        y = axis_position(year)
        _ = ax.plot([axis_x - 0.008, axis_x], [y, y], color="k", lw=1)
        _ = ax.text(axis_x - 0.015, y, str(year), ha="right", va="center", fontsize=10)

    # One label per event, evenly spaced in date order, joined to the event's date.
    ordered = sorted(events, key=lambda e: e.date)
    step = 1 / (len(ordered) - 1)
    for i, event in enumerate(ordered):
        y_date, y_label = axis_position(event.date), i * step
        colour = KINDS[event.kind][1]
        marker = "s" if event.open_weights is False else "o"
        _ = ax.plot([axis_x, label_x - 0.01], [y_date, y_label], color=colour, lw=0.7)
        _ = ax.plot(axis_x, y_date, marker, color=colour, ms=5, zorder=3)
        text = f"{event.year}  {event.label}"
        _ = ax.text(label_x, y_label, text, ha="left", va="center", fontsize=10, color="k")

    # Legend: the colours, and which generative models' weights are public.
    handles = [
        plt.Line2D([], [], color=colour, marker="o", lw=0, label=name)
        for name, colour in KINDS.values()
    ]
    handles.append(
        plt.Line2D(
            [],
            [],
            color=KINDS["generative"][1],
            marker="s",
            lw=0,
            label="proprietary: used through an API or app only",
        )
    )
    _ = fig.legend(
        handles=handles,
        loc="lower center",
        ncols=2,
        fontsize=9.5,
        frameon=False,
        bbox_to_anchor=(0.5, 0.005),
    )
    return fig


def main() -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    fig = draw()
    fig.savefig(OUTPUT, dpi=DPI, metadata={"Software": None})  # no version: stable bytes
    plt.close(fig)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
