"""Check the built book as readers open it: served over http, in Chromium, offline.

Every toc page exists as HTML and search works. Every figure has a real alt text. Then
every toc page is opened in headless Chromium (Playwright), served from 127.0.0.1 with
every other host cut off, once in a laptop window (1280 px) and once in a phone's (390 px):

- no request to another host (each one is a failure, not merely blocked), no missing local
  file, no script error and nothing logged as an error;
- every figure keeps its true aspect ratio (rendered within 3 % of naturalWidth/Height);
- no display equation and no chart wider than the text column unless it scrolls sideways
  in its own box; MathJax rendered every page that has formulas;
- the page itself is never wider than the window (a phone must not pan sideways);
- at 1280 px no code cell or output is wider than the column, and the visible sidebar
  toggle collapses the chapter list; at 390 px the visible toggle opens it;
- the book's controls (``tutorial_lib.controls``) work offline: each input changes the
  chart, and the numbers shown equal the library's own computation (``check_controls``).

Usage: ``python .ci/check_book.py [--html DIR]`` (default ``_build/html``).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import re
import shutil
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium")  # the one place the browser is looked up
WINDOWS = {"laptop": (1280, 900), "phone": (390, 844)}  # name -> (width, height) in px
ASPECT_TOLERANCE = 0.03  # a figure's rendered width/height within 3 % of its true shape
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


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    return files


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
# The built site, served as a reader's browser gets it


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request on stderr
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; returns (server, base URL)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


# Resolves once the page is drawn: its images decoded, MathJax done typesetting, every
# control's chart drawn (tutorial_lib.controls gives each a div with id "control-<name>").
_READY_JS = r"""
async () => {
  await Promise.all([...document.images].map(
    (img) => img.complete ? null : new Promise((done) => {
      img.addEventListener("load", done); img.addEventListener("error", done); })));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const drawn = () => [...document.querySelectorAll("div[id^='control-']")]
    .every((div) => div.querySelector("svg, canvas"));
  for (let i = 0; i < 400 && !drawn(); i++) await new Promise((r) => setTimeout(r, 25));
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
}
"""

# Measures the drawn page. The text column is the <article>'s content box. A box that is
# wider than the column passes only if it, or an ancestor inside the column, scrolls
# sideways (overflow-x auto or scroll) and that scrolling box itself fits the column.
_MEASURE_JS = r"""
(withCode) => {
  const article = document.querySelector("article.bd-article");
  if (!article) return {error: "no article.bd-article"};
  const style = getComputedStyle(article), box = article.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft);
  const right = box.right - parseFloat(style.paddingRight);
  const shown = (el) => { const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden"; };
  const within = (r) => r.left >= left - 1 && r.right <= right + 1;
  const scroller = (el) => {
    for (let e = el; e && e !== article; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX;
      if (o === "auto" || o === "scroll") return e;
    }
    return null;
  };
  const text = (el) => (el.innerText || el.textContent || "").trim().split("\n")[0].slice(0, 50);
  // A box whose drawn content is `width` px wide from its left edge: fits or scrolls?
  const tooWide = (el, width) => {
    const r = el.getBoundingClientRect();
    if (r.left >= left - 1 && r.left + width <= right + 1) return false;
    const s = scroller(el);
    return !(s && within(s.getBoundingClientRect()) && s.clientWidth < s.scrollWidth + 1);
  };
  const heading = (el) => { // the section the element is in, to find it in the page
    const s = el.closest("section"); const h = s && s.querySelector("h1, h2, h3");
    return h ? h.textContent.replace("#", "").trim().slice(0, 50) : "";
  };
  const figures = [], equations = [], charts = [], wide = [];
  article.querySelectorAll("img").forEach((img, i) => {
    if (!shown(img) || !img.naturalWidth || !img.naturalHeight) return;
    const r = img.getBoundingClientRect();
    const ratio = (r.width / r.height) / (img.naturalWidth / img.naturalHeight);
    figures.push({n: i + 1, ratio, width: Math.round(r.width), height: Math.round(r.height),
                  natural: [img.naturalWidth, img.naturalHeight], alt: img.alt.slice(0, 60)});
  });
  article.querySelectorAll("mjx-container[display='true']").forEach((eq) => {
    if (!shown(eq)) return;
    const math = eq.querySelector("mjx-math") || eq;
    const width = Math.max(math.getBoundingClientRect().width, eq.scrollWidth);
    equations.push({width: Math.round(width), bad: tooWide(eq, width), where: heading(eq),
                    scrolls: width > right - left + 1,
                    text: (eq.querySelector("mjx-assistive-mml") || eq).textContent.slice(0, 50)});
  });
  article.querySelectorAll(".vega-embed").forEach((chart) => {
    if (!shown(chart)) return;
    let width = chart.scrollWidth;
    chart.querySelectorAll("svg, canvas, form, .vega-bindings").forEach((part) => {
      const r = part.getBoundingClientRect();
      width = Math.max(width, r.right - chart.getBoundingClientRect().left);
    });
    charts.push({id: chart.id, width: Math.round(width), bad: tooWide(chart, width),
                 scrolls: width > right - left + 1});
  });
  if (withCode) {
    const cells = [...document.querySelectorAll("div.cell")];
    document.querySelectorAll("div.cell_input, div.cell_output").forEach((area) => {
      for (const el of [area, ...area.querySelectorAll("pre, table, div, img")]) {
        if (el.closest(".vega-embed")) continue;  // charts are measured above
        const scrolls = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
        const sticksOut = el.getBoundingClientRect().right > right + 1;
        if (scrolls || sticksOut) {
          wide.push({cell: cells.indexOf(area.closest("div.cell")) + 1,
                     part: area.classList.contains("cell_input") ? "code" : "output",
                     tag: el.tagName.toLowerCase(),
                     width: Math.max(el.scrollWidth, Math.ceil(el.getBoundingClientRect().width)),
                     room: el.clientWidth, text: text(el)});
          break;  // one report per output
        }
      }
    });
    article.querySelectorAll("div.highlight pre").forEach((pre) => {  // code blocks in prose
      if (pre.closest("div.cell") || !(pre.scrollWidth > pre.clientWidth + 1)) return;
      wide.push({cell: 0, part: "code block", tag: "pre", width: pre.scrollWidth,
                 room: pre.clientWidth, text: heading(pre) + ": " + text(pre)});
    });
  }
  const culprits = [];  // what makes a page wider than the window: the innermost boxes
  if (document.documentElement.scrollWidth > window.innerWidth) {
    for (const el of document.body.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.right <= window.innerWidth + 1 || !shown(el) || scroller(el.parentElement)) continue;
      const inner = [...el.children].some(
        (c) => c.getBoundingClientRect().right > window.innerWidth + 1);
      if (!inner) culprits.push(`<${el.tagName.toLowerCase()}> ${Math.round(r.right)} px in `
        + `${JSON.stringify(heading(el))}: ${JSON.stringify(text(el))}`);
      if (culprits.length === 3) break;
    }
  }
  const math = document.querySelectorAll("div.math, span.math").length;
  return {column: Math.round(right - left), figures, equations, charts, wide,
          formulas: math, rendered: document.querySelectorAll("mjx-container").length,
          rawTeX: /\\\(|\$\$/.test(article.innerText),
          pageWidth: document.documentElement.scrollWidth, window: window.innerWidth,
          culprits};
}
"""

# Is the chapter list (the primary sidebar's links) on screen, in the sidebar or its dialog?
_CHAPTERS_SHOWN_JS = r"""
() => [...document.querySelectorAll("nav.bd-links")].some((nav) => {
  const r = nav.getBoundingClientRect(), s = getComputedStyle(nav);
  let visible = s.visibility !== "hidden" && r.width > 0 && r.height > 0
    && r.right > 0 && r.left < window.innerWidth;
  for (let e = nav; visible && e; e = e.parentElement) {
    const es = getComputedStyle(e);
    if (es.visibility === "hidden" || parseFloat(es.opacity) === 0) visible = false;
  }
  return visible;
})
"""


def _visible_toggle(page, css: str):
    """The first of the buttons matching ``css`` that a reader can see, or None."""
    for button in page.locator(css).all():
        if button.is_visible():
            return button
    return None


def check_sidebar_toggle(page, page_name: str, window: str) -> list[str]:
    """The visible sidebar toggle opens the chapter list (phone) or collapses it (laptop)."""
    button = _visible_toggle(page, ".primary-toggle")
    if button is None:
        return [f"{page_name} [{window}]: no visible sidebar toggle"]
    before = page.evaluate(_CHAPTERS_SHOWN_JS)
    button.click()
    try:
        page.wait_for_function(
            f"() => ({_CHAPTERS_SHOWN_JS})() !== {json.dumps(before)}", timeout=3000
        )
    except Exception:  # noqa: BLE001 - the state never changed: reported below
        pass
    after = page.evaluate(_CHAPTERS_SHOWN_JS)
    errors = []
    if window == "phone" and not after:
        errors.append(
            f"{page_name} [phone]: the visible sidebar toggle does not open the chapter list"
        )
    if window == "laptop" and (not before or after):
        errors.append(
            f"{page_name} [laptop]: the visible sidebar toggle does not collapse the chapter list"
        )
    page.keyboard.press("Escape")  # closes the phone's dialog; the laptop's stays as it is
    return errors


def check_page(page, page_name: str, window: str) -> tuple[list[str], tuple]:
    """Measure one drawn page against the column and the window (see _MEASURE_JS)."""
    m = page.evaluate(_MEASURE_JS, window == "laptop")
    if "error" in m:
        return [f"{page_name} [{window}]: {m['error']}"], (0, 0, 0, 0, 0)
    where = f"{page_name} [{window}]"
    errors = []
    for f in m["figures"]:
        if abs(f["ratio"] - 1) > ASPECT_TOLERANCE:
            errors.append(
                f"{where}: figure {f['n']} drawn at {f['ratio']:.2f} of its shape "
                f"({f['width']}x{f['height']} px for {f['natural'][0]}x{f['natural'][1]}): "
                f"{f['alt']!r}"
            )
    for e in m["equations"]:
        if e["bad"]:
            errors.append(
                f"{where}: a display equation {e['width']} px wide in a {m['column']}-px column "
                f"is cut off (it does not scroll in its own box), in {e['where']!r}: "
                f"{e['text']!r}"
            )
    for c in m["charts"]:
        if c["bad"]:
            errors.append(
                f"{where}: chart #{c['id']} is {c['width']} px wide in a {m['column']}-px "
                "column and does not scroll in its own box"
            )
    if m["pageWidth"] > m["window"]:
        errors.append(
            f"{where}: the page is {m['pageWidth']} px wide in a {m['window']}-px "
            f"window (it pans sideways): {'; '.join(m['culprits'])}"
        )
    if m["formulas"] and not m["rendered"]:
        errors.append(f"{where}: MathJax rendered none of {m['formulas']} formulas")
    if m["rawTeX"]:
        errors.append(f"{where}: raw TeX left in the page")
    errors += [
        f"{where}: the {w['part']} of code cell {w['cell']} (In [{w['cell']}]) is "
        f"{w['width']} px wide in a {w['room']} px <{w['tag']}>: {w['text']!r}"
        if w["cell"]
        else f"{where}: a code block is {w['width']} px wide in a {w['room']} px <pre>, "
        f"in {w['text']!r}"
        for w in m["wide"]
    ]
    counts = (  # what was measured, and how many equations and charts scroll in their box
        len(m["figures"]),
        len(m["equations"]),
        sum(e["scrolls"] and not e["bad"] for e in m["equations"]),
        len(m["charts"]),
        sum(c["scrolls"] and not c["bad"] for c in m["charts"]),
    )
    return errors, counts


def check_render(page, page_name: str, texts: list[str]) -> list[str]:
    """A screenshot that is not blank, and the texts in the rendered DOM."""
    pixels = mpimg.imread(io.BytesIO(page.screenshot()), format="png")[..., :3]
    inked = float((pixels.mean(axis=-1) < 0.9).mean())  # share of non-white pixels
    print(f"  {page_name}: screenshot {pixels.shape[1]}x{pixels.shape[0]}, {inked:.1%} inked")
    errors = []
    if inked < 0.02:
        errors.append(f"{page_name}: the screenshot is blank ({inked:.1%} non-white pixels)")
    dom = page.content()
    errors += [f"{page_name}: {t!r} is not in the rendered page" for t in texts if t not in dom]
    return errors


# --------------------------------------------------------------------------------------
# Controls that run in the browser (issue 14), checked at 1280 px in check_pages
# --------------------------------------------------------------------------------------
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


def _poll(page, done, timeout_ms: int = 5000) -> bool:
    """Wait until ``done()`` (a reading of the page's DOM) is true; False on timeout.

    Vega redraws a chart a frame or two after an input event: polling for the state that
    is wanted replaces a fixed sleep (fast when it is there, patient on a busy machine).
    """
    for _ in range(timeout_ms // 25):
        try:
            if done():
                return True
        except (ValueError, IndexError):  # a half-drawn chart: not there yet
            pass
        page.wait_for_timeout(25)
    return False


def _changed(page, root, before: str) -> bool:
    """Wait until the control's chart differs from ``before``; False if it never does."""
    return _poll(page, lambda: _svg(root) != before)


def _readout_score(root) -> float:
    """The number after the last "=" of the rotary explorer's readout."""
    return float(_texts(root, "g[class*=readout] text")[0].rsplit("=", 1)[1])


def check_inputs_change_the_chart(page, name: str) -> list[str]:
    """Every slider, dropdown and radio button of control ``name`` changes what it draws."""
    errors = []
    root = page.locator(f"#control-{name}")
    for slider in root.locator("input[type=range]").all():
        key = slider.get_attribute("name")
        before = _svg(root)
        low, high = slider.get_attribute("min"), slider.get_attribute("max")
        start = slider.input_value()
        _set_range(root, key, high if start != high else low)
        if not _changed(page, root, before):
            errors.append(f"{name}: moving the slider {key!r} changed nothing")
        _set_range(root, key, start)  # back: each slider is tried from the control's defaults
    for select in root.locator("select").all():
        before = _svg(root)
        options = select.locator("option").evaluate_all("options => options.map(o => o.value)")
        select.select_option(options[-1] if select.input_value() != options[-1] else options[0])
        if not _changed(page, root, before):
            errors.append(
                f"{name}: choosing another {select.get_attribute('name')!r} changed nothing"
            )
    radios = root.locator("input[type=radio]").all()
    first = next((r for r in radios if r.is_checked()), None)
    for radio in [r for r in radios if r is not first] + ([first] if first else []):
        before = _svg(root)
        radio.check()  # each button that is not on, then back to the one that was
        if not _changed(page, root, before):
            errors.append(
                f"{name}: the radio button {radio.get_attribute('value')!r} changed nothing"
            )
    return errors


def expected_sampling(
    spec: dict, prompt: str, temperature: float, top_k: int, top_p: float, min_p: float = 0.0
):
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
        settings = dict(temperature=temperature, top_k=top_k or None, top_p=top_p, min_p=min_p)
        probs = process_logits(logits[None], **settings)[0].softmax(-1)
    listed = probs[:n_listed]  # the listed tokens come first in the expanded vector
    shown = sorted(listed.tolist() + [1 - listed.sum().item()])
    kept = probs[probs > 0]
    entropy = max(float(-(kept * kept.log()).sum()), 0.0) + 0.0  # + 0.0: no "-0.000"
    return shown, entropy, int((probs > 0).sum())


def _close(shown: list[float], want: list[float]) -> bool:
    """The same number of values, each within 1e-3."""
    return len(shown) == len(want) and all(
        abs(a - b) <= 1e-3 for a, b in zip(shown, want, strict=True)
    )


def check_sampling_explorer(page, page_name: str) -> list[str]:
    errors, name = [], "sampling-explorer"
    spec = control_spec(page_name, name)
    root = page.locator(f"#control-{name}")
    prompts = [r["prompt"] for r in data_rows(spec, "prompt")]
    settings = [
        (prompts[0], 0.8, 50, 0.9, 0.0),
        (prompts[1], 1.5, 0, 0.6, 0.0),
        (prompts[2], 0, 5, 0.5, 0.0),
        (prompts[0], 1.2, 0, 1.0, 0.1),  # min-p alone
    ]
    for prompt, temperature, top_k, top_p, min_p in settings:
        root.locator("select[name=prompt]").select_option(prompt)
        for key, value in (("T", temperature), ("K", top_k), ("P", top_p), ("M", min_p)):
            _set_range(root, key, value)
        want, entropy, n_kept = expected_sampling(spec, prompt, temperature, top_k, top_p, min_p)
        _poll(  # until the bars show Python's answer (or 5 s: then the check reports it)
            page,
            lambda want=want: _close(
                sorted(float(t) for t in _texts(root, "g[class*=probabilities] text")), want
            ),
        )
        readout = _texts(root, "g[class*=readout] text")[0]
        shown = sorted(float(t) for t in _texts(root, "g[class*=probabilities] text"))
        top = ", ".join(f"{v:.4f}" for v in sorted(shown, reverse=True)[:3])
        print(
            f"  {name} {prompt!r} T={temperature} top-k={top_k} top-p={top_p} "
            f"min-p={min_p}: "
            f"page: {readout}; largest bars {top} | Python: entropy {entropy:.3f}, "
            f"{n_kept:,} tokens"
        )
        if not _close(shown, want):
            errors.append(
                f"{name} {prompt!r} T={temperature} k={top_k} p={top_p} min-p={min_p}: "
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
        _poll(page, lambda want=curve[m - n]: abs(_readout_score(root) - want) <= 1e-3)
        readout = _texts(root, "g[class*=readout] text")[0]
        scores[m, n] = float(readout.rsplit("=", 1)[1])
        print(f"  {name} m={m} n={n}: page: {readout} | Python rope_scores: {curve[m - n]:.4f}")
        if abs(scores[m, n] - curve[m - n]) > 1e-3:
            errors.append(f"{name}: m={m}, n={n}: page {scores[m, n]} != Python {curve[m - n]}")
    if scores[5, 2] != scores[30, 27]:
        errors.append(f"{name}: the same m - n gave two scores: {scores}")
    return errors


def _expert_loads(root) -> dict[int, int]:
    """{expert: tokens} as the router control labels its bars.

    Each number mark carries Vega's aria label ("expert: 7; tokens routed to it: 9; ..."),
    which names its expert: the marks' order in the SVG is not the experts' order.
    """
    loads = {}
    for text in root.locator("g[class*=load] text").all():
        label = text.get_attribute("aria-label") or ""
        found = re.search(r"expert: (\d+)", label)
        if found is None:
            raise ValueError(f"a load label names no expert: {label!r}")
        loads[int(found.group(1))] = int(text.text_content())
    return loads


def check_expert_router(page, page_name: str) -> list[str]:
    """Each layer's radio button shows every expert's token count, expert by expert."""
    errors, name = [], "expert-router"
    rows = data_rows(control_spec(page_name, name), "expert")
    root = page.locator(f"#control-{name}")
    radios = root.locator("input[type=radio]")
    for layer in (0, 1):
        want: dict[int, int] = {}
        for r in rows:
            if r["layer"] == layer:
                want[r["expert"]] = want.get(r["expert"], 0) + 1
        radios.nth(layer).check()
        _poll(page, lambda want=want: _expert_loads(root) == want)
        shown = _expert_loads(root)
        shown_text, want_text = dict(sorted(shown.items())), dict(sorted(want.items()))
        print(f"  {name} layer {layer}: page: tokens per expert {shown_text} | Python: {want_text}")
        if shown != want:
            errors.append(f"{name} layer {layer}: page {shown_text} != Python {want_text}")
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
        want = sorted(f"{r['similarity']:.3f}" for r in rows if r["query"] == query)
        _poll(page, lambda want=want: sorted(_texts(root, MARK_TEXTS)) == want)
        shown = sorted(_texts(root, MARK_TEXTS))
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
        _poll(page, lambda row=row: _texts(root, MARK_TEXTS) == [f"output: {row['output']}"])
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
        want = sorted(f"{w / 100:.2f}" for w in row["weights"])
        _poll(page, lambda want=want: sorted(_texts(root, MARK_TEXTS)) == want)
        shown = sorted(_texts(root, MARK_TEXTS))
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


def check_pages(base: str) -> tuple[list[str], dict]:
    """Open every toc page at each window size; run every check above on it.

    Returns the problems and, per window, how many figures, display equations, charts and
    requests to other hosts were seen (for the log).
    """
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    seen: dict[str, list[int]] = {}
    render = dict(RENDER_CHECKS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for window, (width, height) in WINDOWS.items():
            context = browser.new_context(viewport={"width": width, "height": height})
            # Only this server: any other host is cut off (CI has no network) and counted.
            context.route(
                re.compile(r"^(?!" + re.escape(base) + ").*"),
                lambda route: route.abort(),
            )
            totals = seen.setdefault(window, [0] * 6)
            for page_name in toc_files():
                page = context.new_page()
                where = f"{page_name} [{window}]"
                outside: list[str] = []
                problems: list[str] = []

                def on_request(request, outside=outside):
                    if not request.url.startswith((base, "data:", "blob:", "about:")):
                        outside.append(request.url)

                def on_response(response, problems=problems, where=where):
                    if response.url.startswith(base) and response.status >= 400:
                        problems.append(f"{where}: {response.status} for {response.url}")

                def on_console(message, problems=problems, where=where):
                    if message.type == "error" and "Failed to load resource" not in message.text:
                        problems.append(f"{where}: console error: {message.text[:200]}")

                page.on("request", on_request)
                page.on("response", on_response)
                page.on("console", on_console)
                page.on(
                    "pageerror",
                    lambda e, problems=problems, where=where: problems.append(
                        f"{where}: script error: {e}"
                    ),
                )
                page.goto(base + page_name + ".html", wait_until="load")
                page.evaluate(_READY_JS)
                found, counts = check_page(page, page_name, window)
                errors += found
                if window == "laptop":
                    if page_name in render:
                        errors += check_render(page, page_name, render[page_name])
                    for name in CONTROL_PAGES.get(page_name, []):
                        if page.locator(f"#control-{name} svg").count() == 0:
                            errors.append(f"{where}: control {name!r} did not draw")
                            continue
                        errors += CONTROL_CHECKS[name](page, page_name)
                        errors += check_inputs_change_the_chart(page, name)
                errors += check_sidebar_toggle(page, page_name, window)
                page.close()
                errors += problems
                errors += [f"{where}: a request to another host: {url}" for url in outside]
                for i, n in enumerate((*counts, len(outside))):
                    totals[i] += n
            context.close()
        browser.close()
    return errors, seen


def main() -> int:
    global HTML
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=HTML, help="the built site")
    HTML = parser.parse_args().html.resolve()
    errors = []
    for page in toc_files():
        if not (HTML / f"{page}.html").is_file():
            errors.append(f"missing page: {HTML}/{page}.html")
    for needed in ("search.html", "searchindex.js"):
        if not (HTML / needed).is_file():
            errors.append(f"search is missing: {HTML}/{needed}")
    for page in toc_files():  # every figure says what it shows
        if (HTML / f"{page}.html").is_file():
            errors += check_figure_alt_texts(page)

    if CHROMIUM is None:
        errors.append("chromium is not installed: cannot check that pages render")
    elif not errors:
        server, base = serve(HTML)
        try:
            found, seen = check_pages(base)
        finally:
            server.shutdown()
        errors += found
        for window, (figures, equations, eq_scroll, charts, ch_scroll, outside) in seen.items():
            print(
                f"{window} {WINDOWS[window][0]} px: {figures} figures, {equations} display "
                f"equations ({eq_scroll} scroll in their box), {charts} charts ({ch_scroll} "
                f"scroll in their box), {outside} requests to other hosts"
            )
    for e in errors:
        print("error:", e, file=sys.stderr)
    print(
        f"{len(toc_files())} toc pages checked, {len(errors)} problems, "
        f"{time.monotonic() - started:.0f} s"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
