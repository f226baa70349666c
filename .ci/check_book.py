"""Check the built book: every toc page exists as HTML, search works, and key pages render.

Pages are screenshotted with headless Chromium and checked to be non-blank, with their title
present in the rendered DOM. On every page, every figure has a real alt text, and no cell
output is wider than the text column (measured in Chromium at a 1280-px-wide window).
The book's controls (``tutorial_lib.controls``) are driven in
headless Chromium through Playwright with every http(s) request aborted, so they must work
offline: each input must change what the chart shows, and the numbers shown must equal the
library's own computation of the same data (``check_controls``). MathJax must have rendered.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
# (page, texts that must all appear in the rendered page)
RENDER_CHECKS = [
    ("book/intro", ["How Transformer LLMs Work"]),
    ("notebooks/01_bag_of_words", ["Bag of words"]),
    # The colored tokens render as HTML spans (not as escaped text or ANSI codes).
    (
        "notebooks/05_tokenizers",
        ["gpt-2: 48 tokens, vocabulary 50,257", "background:#fde2a7", "Qwen2: byte-level BPE"],
    ),
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


# --------------------------------------------------------------------------------------
# Figures: a real alt text on every image of a page's content


class _ArticleImages(HTMLParser):
    """Collects the (alt, src) of every <img> inside the page's <article>."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # how many <article> elements we are inside
        self.images: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "article":
            self.depth += 1
        elif tag == "img" and self.depth:
            attributes = dict(attrs)
            self.images.append((attributes.get("alt") or "", attributes.get("src") or ""))

    def handle_endtag(self, tag):
        if tag == "article" and self.depth:
            self.depth -= 1


def check_figure_alt_texts(page: str) -> list[str]:
    """Problems with the alt texts of the figures of one built page (none: an empty list).

    A real alt text says what the figure shows. Without one, myst-nb falls back to the image's
    file name, a content hash such as ``52d9ef4d...a59.png``.
    """
    parser = _ArticleImages()
    parser.feed((HTML / f"{page}.html").read_text(encoding="utf-8"))
    problems = []
    for number, (alt, src) in enumerate(parser.images, start=1):
        stem = Path(src).stem
        if len(alt.split()) < 3 or alt == stem or re.fullmatch(r"[0-9a-f]{16,}(\.\w+)?", alt):
            problems.append(f"{page}: figure {number} ({Path(src).name}) has no real alt text")
    return problems


# --------------------------------------------------------------------------------------
# Code and outputs that fit the column

OUTPUT_WINDOW = "1280,1600"  # the narrowest common desktop window: the text column is ~750 px
# Runs in the page once it has loaded: every code cell and output box, and every box inside
# it, must neither scroll sideways (content wider than the box) nor reach past the text
# column.
_MEASURE_JS = r"""
window.addEventListener("load", () => {
  const article = document.querySelector("article.bd-article");
  const right = article ? article.getBoundingClientRect().right : Infinity;
  const cells = [...document.querySelectorAll("div.cell")];
  const wide = [];
  document.querySelectorAll("div.cell_input, div.cell_output").forEach((area) => {
    const boxes = [area, ...area.querySelectorAll("pre, table, div, img")];
    for (const box of boxes) {
      const scrolls = box.clientWidth > 0 && box.scrollWidth > box.clientWidth + 1;
      const sticksOut = box.getBoundingClientRect().right > right + 1;
      if (scrolls || sticksOut) {
        wide.push({cell: cells.indexOf(area.closest("div.cell")) + 1,
                   part: area.classList.contains("cell_input") ? "code" : "output",
                   tag: box.tagName.toLowerCase(),
                   width: Math.max(box.scrollWidth, Math.ceil(box.getBoundingClientRect().width)),
                   room: box.clientWidth,
                   text: (box.innerText || "").trim().split("\n")[0].slice(0, 50)});
        break;  // one report per output
      }
    }
  });
  const result = document.createElement("script");
  result.type = "application/json";
  result.id = "check-book-widths";
  result.textContent = JSON.stringify({column: article ? article.clientWidth : 0, wide: wide});
  document.body.appendChild(result);
});
"""


def measure_output_widths(page: str) -> dict:
    """Load one built page in Chromium and measure its cell outputs against the column.

    The page is copied with the measuring script added and a <base> pointing at the original,
    so that its styles load exactly as for a reader. Returns {"column": px, "wide": [...]}.
    """
    source = HTML / f"{page}.html"
    text = source.read_text(encoding="utf-8")
    head = f'<base href="{source.as_uri()}"><script>{_MEASURE_JS}</script>'
    text = text.replace("<head>", "<head>" + head, 1)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "page.html"
        copy.write_text(text, encoding="utf-8")
        dom = chromium(
            f"--window-size={OUTPUT_WINDOW}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            copy.as_uri(),
        ).stdout
    found = re.search(
        r'<script type="application/json" id="check-book-widths">(.*?)</script>', dom, re.S
    )
    if found is None:
        raise RuntimeError(f"{page}: the width measurement did not run in Chromium")
    return json.loads(found.group(1))  # a script's text is not HTML-escaped


def check_output_widths(page: str) -> list[str]:
    """Code cells and outputs wider than the text column on one page (none: empty)."""
    try:
        measured = measure_output_widths(page)
    except RuntimeError as error:
        return [str(error)]
    return [
        f"{page}: the {w['part']} of code cell {w['cell']} (In [{w['cell']}]) is "
        f"{w['width']} px wide in a {w['room']} px <{w['tag']}>: {w['text']!r}"
        for w in measured["wide"]
    ]


# Controls that run in the browser (issue 14): Playwright, offline
# --------------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
# page -> the controls on it (the ids are "control-<name>", see tutorial_lib.controls.show)
CONTROL_PAGES = {
    "notebooks/02_word_embeddings": ["glove-neighbours"],
    "notebooks/03_rnn_attention": ["date-attention"],
    "notebooks/04_transformers": ["minilm-heads"],
    "notebooks/06_architecture_overview": ["sampling-explorer"],
    "notebooks/08_self_attention": ["smollm2-heads"],
    "notebooks/11_rope": ["rotary-explorer"],
    "notebooks/12_mixture_of_experts": ["expert-router"],
}
MATH_PAGES = ["notebooks/11_rope"]  # pages with formulas that MathJax must have rendered


def control_spec(page: str, name: str) -> dict:
    """The Vega-Lite specification of control ``name`` as embedded in the built page.

    The notebook wrote it (data computed by the library); the page calls the drawing
    function with it: ``})(<spec>, <embed options>);`` after the control's div id.
    """
    html = (HTML / f"{page}.html").read_text(encoding="utf-8")
    start = html.index(f'outputDiv.id !== "control-{name}"')
    call = html.index("})(", start) + len("})(")
    spec, _ = json.JSONDecoder().raw_decode(html, call)
    return spec


def data_rows(spec, field: str) -> list[dict]:
    """The first inline data rows in ``spec`` (searched depth first) that have ``field``."""
    if isinstance(spec, dict):
        values = spec.get("values")
        if isinstance(values, list) and values and field in values[0]:
            return values
        children = list(spec.values())
    elif isinstance(spec, list):
        children = spec
    else:
        return []
    for child in children:
        if rows := data_rows(child, field):
            return rows
    return []


def _texts(root, css: str) -> list[str]:
    """The text marks under ``css`` in a control, with Vega's minus sign made ASCII."""
    return [t.replace("\u2212", "-") for t in root.locator(css).all_text_contents()]


def _set_range(root, name: str, value) -> None:
    slider = root.locator(f"input[type=range][name={name}]")
    slider.fill(str(value))
    slider.dispatch_event("input")
    slider.dispatch_event("change")


def _svg(root) -> str:
    return root.locator("svg").first.inner_html()


def check_inputs_change_the_chart(page, name: str) -> list[str]:
    """Every slider, dropdown and radio button of control ``name`` changes what it draws."""
    errors = []
    root = page.locator(f"#control-{name}")
    for slider in root.locator("input[type=range]").all():
        key = slider.get_attribute("name")
        before = _svg(root)
        low, high = slider.get_attribute("min"), slider.get_attribute("max")
        _set_range(root, key, high if slider.input_value() != high else low)
        page.wait_for_timeout(200)
        if _svg(root) == before:
            errors.append(f"{name}: moving the slider {key!r} changed nothing")
    for select in root.locator("select").all():
        before = _svg(root)
        options = select.locator("option").evaluate_all("options => options.map(o => o.value)")
        select.select_option(options[-1] if select.input_value() != options[-1] else options[0])
        page.wait_for_timeout(200)
        if _svg(root) == before:
            errors.append(
                f"{name}: choosing another {select.get_attribute('name')!r} changed nothing"
            )
    radios = root.locator("input[type=radio]").all()
    first = next((r for r in radios if r.is_checked()), None)
    for radio in [r for r in radios if r is not first] + ([first] if first else []):
        before = _svg(root)
        radio.check()  # each button that is not on, then back to the one that was
        page.wait_for_timeout(200)
        if _svg(root) == before:
            errors.append(
                f"{name}: the radio button {radio.get_attribute('value')!r} changed nothing"
            )
    return errors


def expected_sampling(spec: dict, prompt: str, temperature: float, top_k: int, top_p: float):
    """Python's answer for the sampling explorer: ``process_logits`` on the page's logits.

    The page holds the rounded logits as integers (value x s) with a count each; expanded,
    they are the rounded vocabulary vector the notebook built with ``group_logits``.
    Returns the shown probabilities (the listed tokens and "all other tokens") sorted, the
    entropy and how many tokens can be drawn.
    """
    import torch

    from tutorial_lib.generation import process_logits

    (row,) = [r for r in data_rows(spec, "prompt") if r["prompt"] == prompt]
    n_listed = len(row["t"])
    units = torch.tensor(row["u"]).repeat_interleave(torch.tensor(row["c"]))  # (vocab,)
    logits = units.float() / row["s"]  # the same float32 division as group_logits
    if temperature == 0:  # greedy
        probs = torch.zeros_like(logits).index_fill(0, logits.argmax(), 1.0)
    else:
        probs = process_logits(logits[None], temperature, top_k or None, top_p)[0].softmax(-1)
    listed = probs[:n_listed]  # the listed tokens come first in the expanded vector
    shown = sorted(listed.tolist() + [1 - listed.sum().item()])
    kept = probs[probs > 0]
    entropy = max(float(-(kept * kept.log()).sum()), 0.0) + 0.0  # + 0.0: no "-0.000"
    return shown, entropy, int((probs > 0).sum())


def check_sampling_explorer(page, page_name: str) -> list[str]:
    errors, name = [], "sampling-explorer"
    spec = control_spec(page_name, name)
    root = page.locator(f"#control-{name}")
    prompts = [r["prompt"] for r in data_rows(spec, "prompt")]
    settings = [(prompts[0], 0.8, 50, 0.9), (prompts[1], 1.5, 0, 0.6), (prompts[2], 0, 5, 0.5)]
    for prompt, temperature, top_k, top_p in settings:
        root.locator("select[name=prompt]").select_option(prompt)
        for key, value in (("T", temperature), ("K", top_k), ("P", top_p)):
            _set_range(root, key, value)
        page.wait_for_timeout(300)
        readout = _texts(root, "g[class*=readout] text")[0]
        shown = sorted(float(t) for t in _texts(root, "g[class*=probabilities] text"))
        want, entropy, n_kept = expected_sampling(spec, prompt, temperature, top_k, top_p)
        top = ", ".join(f"{v:.4f}" for v in sorted(shown, reverse=True)[:3])
        print(
            f"  {name} {prompt!r} T={temperature} top-k={top_k} top-p={top_p}: "
            f"page: {readout}; largest bars {top} | Python: entropy {entropy:.3f}, "
            f"{n_kept:,} tokens"
        )
        if (
            len(shown) != len(want)
            or max(abs(a - b) for a, b in zip(shown, want, strict=True)) > 1e-3
        ):
            errors.append(
                f"{name} {prompt!r} T={temperature} k={top_k} p={top_p}: "
                f"page {shown[-3:]} != Python {want[-3:]}"
            )
        if f"entropy {entropy:.3f} nats" not in readout:
            errors.append(f"{name}: entropy {readout!r}, Python {entropy:.3f}")
        if f"{n_kept:,} of" not in readout:
            errors.append(f"{name}: {readout!r}, Python keeps {n_kept:,} tokens")
    return errors


def check_rotary_explorer(page, page_name: str) -> list[str]:
    errors, name = [], "rotary-explorer"
    curve = {d["offset"]: d["score"] for d in data_rows(control_spec(page_name, name), "offset")}
    root = page.locator(f"#control-{name}")
    scores = {}
    for m, n in ((5, 2), (30, 27), (10, 40)):
        _set_range(root, "m", m)
        _set_range(root, "n", n)
        page.wait_for_timeout(200)
        readout = _texts(root, "g[class*=readout] text")[0]
        scores[m, n] = float(readout.rsplit("=", 1)[1])
        print(f"  {name} m={m} n={n}: page: {readout} | Python rope_scores: {curve[m - n]:.4f}")
        if abs(scores[m, n] - curve[m - n]) > 1e-3:
            errors.append(f"{name}: m={m}, n={n}: page {scores[m, n]} != Python {curve[m - n]}")
    if scores[5, 2] != scores[30, 27]:
        errors.append(f"{name}: the same m - n gave two scores: {scores}")
    return errors


def check_expert_router(page, page_name: str) -> list[str]:
    errors, name = [], "expert-router"
    spec = control_spec(page_name, name)
    rows = data_rows(spec, "expert")
    root = page.locator(f"#control-{name}")
    radios = root.locator("input[type=radio]")
    for layer in (0, 1):
        radios.nth(layer).check()
        page.wait_for_timeout(200)
        shown = [int(t) for t in _texts(root, "g[class*=load] text")]
        counts: dict[int, int] = {}
        for r in rows:
            if r["layer"] == layer:
                counts[r["expert"]] = counts.get(r["expert"], 0) + 1
        want = [counts[e] for e in sorted(counts)]
        print(f"  {name} layer {layer}: page: tokens per expert {shown} | Python: {want}")
        if sorted(shown) != sorted(want):
            errors.append(f"{name} layer {layer}: page {shown} != Python {want}")
    return errors


# The text marks a chart draws (not its axes' or title's): the numbers and labels it shows.
MARK_TEXTS = "g.mark-text.role-mark text"


def check_word_neighbours(page, page_name: str) -> list[str]:
    """Each query of the dropdown shows its precomputed neighbours' similarities."""
    errors, name = [], "glove-neighbours"
    rows = data_rows(control_spec(page_name, name), "similarity")
    root = page.locator(f"#control-{name}")
    queries = list(dict.fromkeys(r["query"] for r in rows))
    for query in (queries[0], queries[-1]):
        root.locator("select").select_option(query)
        page.wait_for_timeout(200)
        shown = sorted(_texts(root, MARK_TEXTS))
        want = sorted(f"{r['similarity']:.3f}" for r in rows if r["query"] == query)
        words = [r["word"] for r in sorted(rows, key=lambda r: r["rank"]) if r["query"] == query]
        print(f"  {name} {query!r}: page: {max(shown)} ... | Python: {words[:3]} {want[-1]}")
        if shown != want:
            errors.append(f"{name} {query!r}: page {shown} != Python {want}")
    return errors


def check_date_attention(page, page_name: str) -> list[str]:
    """Each date text of the dropdown shows the translator's output for it."""
    errors, name = [], "date-attention"
    rows = data_rows(control_spec(page_name, name), "source_tokens")
    root = page.locator(f"#control-{name}")
    for row in (rows[0], rows[-1]):
        root.locator("select").select_option(row["source"])
        page.wait_for_timeout(200)
        shown = _texts(root, MARK_TEXTS)
        print(f"  {name} {row['source']!r}: page: {shown} | Python: {row['output']!r}")
        if shown != [f"output: {row['output']}"]:
            errors.append(f"{name} {row['source']!r}: page {shown} != {row['output']!r}")
    return errors


def check_attention_heads(page, page_name: str, name: str) -> list[str]:
    """Two (text, layer, head) choices show that head's weights, the numbers in the cells."""
    errors = []
    rows = data_rows(control_spec(page_name, name), "weights")
    root = page.locator(f"#control-{name}")
    for row in (rows[0], rows[-1]):
        if root.locator("select").count():  # a dropdown when there is more than one text
            root.locator("select").select_option(row["text"])
        _set_range(root, "layer", row["layer"])
        _set_range(root, "head", row["head"])
        page.wait_for_timeout(300)
        shown = sorted(_texts(root, MARK_TEXTS))
        want = sorted(f"{w / 100:.2f}" for w in row["weights"])
        where = f"{row['text']!r} layer {row['layer']} head {row['head']}"
        print(
            f"  {name} {where}: page: {len(shown)} cells, largest {shown[-1]} | Python: "
            f"{len(want)} cells, largest {want[-1]}"
        )
        if shown != want:
            errors.append(f"{name} {where}: page {shown[:5]}... != Python {want[:5]}...")
    return errors


CONTROL_CHECKS = {
    "glove-neighbours": check_word_neighbours,
    "date-attention": check_date_attention,
    "minilm-heads": lambda page, page_name: check_attention_heads(page, page_name, "minilm-heads"),
    "smollm2-heads": lambda page, page_name: check_attention_heads(
        page, page_name, "smollm2-heads"
    ),
    "sampling-explorer": check_sampling_explorer,
    "rotary-explorer": check_rotary_explorer,
    "expert-router": check_expert_router,
}


def check_controls() -> list[str]:
    """Drive every control on the built pages offline; check MathJax rendered."""
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for page_name in sorted(set(CONTROL_PAGES) | set(MATH_PAGES)):
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.route("http*://**", lambda route: route.abort())  # offline: nothing from a CDN
            failures: list[str] = []
            page.on("pageerror", lambda e, failures=failures: failures.append(str(e)))
            page.goto((HTML / f"{page_name}.html").as_uri())
            for name in CONTROL_PAGES.get(page_name, []):
                try:
                    page.wait_for_selector(f"#control-{name} svg", timeout=15000)
                except Exception:  # noqa: BLE001 - report, go on with the other controls
                    errors.append(f"{page_name}: control {name!r} did not draw ({failures})")
                    continue
                errors += CONTROL_CHECKS[name](page, page_name)
                errors += check_inputs_change_the_chart(page, name)
            if page_name in MATH_PAGES:
                try:
                    page.wait_for_selector("mjx-container", timeout=15000)
                except Exception:  # noqa: BLE001
                    errors.append(f"{page_name}: MathJax did not render (no mjx-container)")
                text = page.locator("article").first.inner_text()
                if "\\(" in text or "$$" in text:
                    errors.append(f"{page_name}: raw TeX left in the page")
                print(f"  {page_name}: {page.locator('mjx-container').count()} formulas rendered")
            page.close()
        browser.close()
    return errors


def main() -> int:
    errors = []
    for page in toc_files():
        if not (HTML / f"{page}.html").is_file():
            errors.append(f"missing page: _build/html/{page}.html")
    for needed in ("search.html", "searchindex.js"):
        if not (HTML / needed).is_file():
            errors.append(f"search is missing: _build/html/{needed}")

    for page in toc_files():  # every figure says what it shows
        if (HTML / f"{page}.html").is_file():
            errors += check_figure_alt_texts(page)

    if shutil.which("chromium") is None:
        errors.append("chromium is not installed: cannot check that pages render")
    else:
        shots = ROOT / "_build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        for page, texts in RENDER_CHECKS:
            url = (HTML / f"{page}.html").as_uri()
            png = shots / (page.replace("/", "_") + ".png")
            chromium(f"--screenshot={png}", "--window-size=1280,1600", url)
            dom = chromium("--dump-dom", url).stdout
            if not png.is_file():
                errors.append(f"{page}: no screenshot")
                continue
            pixels = mpimg.imread(png)[..., :3]  # (height, width, 3) floats in [0, 1]
            inked = float((pixels.mean(axis=-1) < 0.9).mean())  # share of non-white pixels
            print(f"{page}: screenshot {pixels.shape[1]}x{pixels.shape[0]}, {inked:.1%} inked")
            if inked < 0.02:
                errors.append(f"{page}: the screenshot is blank ({inked:.1%} non-white pixels)")
            for text in texts:
                if text not in dom:
                    errors.append(f"{page}: {text!r} is not in the rendered page")
        for page in toc_files():  # code and outputs within the text column
            if (HTML / f"{page}.html").is_file():
                errors += check_output_widths(page)
    if Path(CHROMIUM).is_file():
        errors += check_controls()
    else:
        errors.append(f"{CHROMIUM} is missing: cannot check the controls")
    for e in errors:
        print("error:", e, file=sys.stderr)
    print(f"{len(toc_files())} toc pages checked, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
