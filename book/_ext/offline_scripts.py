"""Sphinx extension: every page works offline and loads only what it uses.

- **Vega.** The controls (``tutorial_lib.controls``) are Vega-Lite charts. Altair's HTML
  output loads Vega, Vega-Lite and Vega-Embed from a CDN unless the page already has them.
  This extension writes one pinned bundle of the three (from ``vl-convert-python``, which
  embeds them) into ``_static/`` at build time and loads it, with the versions Altair's
  loader looks for, only on the pages that have a chart.
- **MathJax** is made offline by ``sphinx-mathjax-offline``, which copies the whole MathJax
  distribution (24 MB) while pages load one component of it; the copy is pruned to that
  component, its fonts and the TeX extensions it may load on demand.
- **Font Awesome.** The theme's ``fontawesome.js`` (1.5 MB, every free icon) is replaced by
  a script with the icons the built pages name, drawn the same way (inline SVG).
- **Theme scripts.** Each page included the thebe configuration twice (``const
  THEBE_JS_URL`` declared twice: a script error on every page); thebe is unused here (no
  live code cells), so its scripts are not loaded, and duplicate inline scripts are dropped.
  The colour mode defaults to "auto" in ``_config.yml`` (the first visit logged "Got invalid
  theme mode").
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

BUNDLE = "vega-bundle.js"
MATHJAX_KEEP = (  # under _static/mathjax: what tex-chtml.js loads (see mathjax_path)
    "tex-chtml.js",
    "output/chtml/fonts/woff-v2",  # the fonts CHTML output draws with, loaded per glyph set
    "input/tex/extensions",  # TeX packages autoloaded by a macro (\boldsymbol, \cancel, ...)
)


def _has_chart(body: str) -> bool:
    return "vegaEmbed" in body


def page_scripts(app, pagename, templatename, context, doctree) -> None:
    """The Vega bundle on pages with a chart; each inline script once."""
    if _has_chart(context.get("body", "")):
        import altair as alt

        # Altair's loader skips the CDN for a library whose version is recorded here.
        versions = {
            "vega_version": alt.VEGA_VERSION,
            "vegalite_version": alt.VEGALITE_VERSION,
            "vegaembed_version": alt.VEGAEMBED_VERSION,
        }
        app.add_js_file(BUNDLE)
        app.add_js_file(None, body=f"var VEGA_DEBUG = {json.dumps(versions)};")
    unique, seen = [], set()
    for script in context.get("script_files", []):
        key = (
            str(getattr(script, "filename", script) or ""),
            json.dumps(getattr(script, "attributes", {}), sort_keys=True),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def write_bundle(app, exception) -> None:
    """After a successful build, write the Vega bundle to ``_static/``."""
    if exception is not None or app.builder.format != "html":
        return
    import altair as alt
    import vl_convert

    # Vega-Lite "6.4.1" -> the "6.4" build that vl-convert embeds.
    vl_version = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    bundle = vl_convert.javascript_bundle(vl_version=vl_version)
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    # A function scope keeps the bundle's top-level names out of the page's globals; the
    # bundle itself sets window.vega, window.vegaLite and window.vegaEmbed.
    (static / BUNDLE).write_text(f"(function () {{\n{bundle}\n}})();\n", encoding="utf-8")


def prune_mathjax(app, exception) -> None:
    """Keep of the copied MathJax only what ``tex-chtml.js`` loads (runs after the copy)."""
    if exception is not None or app.builder.format != "html":
        return
    root = Path(app.outdir) / "_static" / "mathjax"
    if not (root / "tex-chtml.js").is_file():
        return
    keep = [root / k for k in MATHJAX_KEEP]
    for path in sorted(root.rglob("*"), reverse=True):  # children before their folders
        inside = any(path == k or k in path.parents for k in keep)
        above = any(path in k.parents for k in keep)
        if inside or above:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


# --------------------------------------------------------------------------------------
# Font Awesome: the icons the pages use, not all 2,000

_FA_PACKS = {"fab": "brands", "fa-brands": "brands", "far": "regular", "fa-regular": "regular"}
_FA_ICON = re.compile(  # name:[width,height,[aliases],"unicode","path" or ["path","path"]]
    r'(?:"([a-z0-9-]+)"|\b([a-z0-9]+)):\[(\d+),(\d+),\[[^\]]*\],"[0-9a-f]+",'
    r'("(?:[^"\\]|\\.)*"|\[[^\]]*\])\]'
)
_FA_SCRIPT = """/*! Font Awesome Free icons (CC BY 4.0), code (MIT): fontawesome.js.LICENSE.txt.
 * The icons this book's pages use, written by book/_ext/offline_scripts.py from the theme's
 * fontawesome.js. Replaces <i class="fa-solid fa-bars"> by its inline SVG as that does. */
(() => {
  const ICONS = %(icons)s;
  const style = document.createElement("style");
  style.textContent = %(css)s;
  document.head.appendChild(style);
  const PACKS = {fab: "fab", "fa-brands": "fab", far: "far", "fa-regular": "far"};
  const draw = (el) => {
    const classes = [...el.classList];
    const pack = classes.map((c) => PACKS[c]).find(Boolean) || "fas";
    const name = classes.find((c) => ICONS[pack + " " + c.slice(3)] && c.startsWith("fa-"));
    if (!name) return;
    const [width, height, paths] = ICONS[pack + " " + name.slice(3)];
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    for (const a of el.attributes) if (a.name !== "class") svg.setAttribute(a.name, a.value);
    const kept = classes.filter((c) => !(c in PACKS) && c !== "fa-solid" && c !== "fas");
    svg.setAttribute("class", ["svg-inline--fa", ...kept].join(" "));
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("data-prefix", pack);
    svg.setAttribute("data-icon", name.slice(3));
    svg.setAttribute("role", "img");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    for (const d of paths) {
      const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("fill", "currentColor");
      path.setAttribute("d", d);
      svg.appendChild(path);
    }
    el.replaceWith(svg);
  };
  const drawAll = (root) => root.querySelectorAll("i[class*='fa-'], span[class*='fa-']")
    .forEach(draw);
  const start = () => {
    drawAll(document);
    new MutationObserver((changes) => changes.forEach((change) => change.addedNodes
      .forEach((node) => { if (node.nodeType === 1) {
        if (node.matches("i[class*='fa-'], span[class*='fa-']")) draw(node);
        else drawAll(node);
      } }))).observe(document.body, {childList: true, subtree: true});
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
"""
# Icon names the theme's scripts insert into pages (not in the built HTML).
_FA_SCRIPTED = [("fas", "xmark")]


def _used_icons(outdir: Path) -> set[tuple[str, str]]:
    """(pack prefix, icon name) for every Font Awesome icon named in the built pages."""
    used = set(_FA_SCRIPTED)
    for page in outdir.rglob("*.html"):
        for classes in re.findall(r'class="([^"]*\bfa[a-z-]*[^"]*)"', page.read_text("utf-8")):
            tokens = classes.split()
            pack = next((_FA_PACKS[t] for t in tokens if t in _FA_PACKS), "solid")
            prefix = {"brands": "fab", "regular": "far", "solid": "fas"}[pack]
            for token in tokens:
                if token.startswith("fa-") and token not in _FA_PACKS and token != "fa-solid":
                    used.add((prefix, token[3:]))
    return used


def subset_fontawesome(app, exception) -> None:
    """Replace the theme's 1.5-MB ``fontawesome.js`` by one with the icons pages use."""
    if exception is not None or app.builder.format != "html":
        return
    scripts = Path(app.outdir) / "_static" / "scripts"
    full = scripts / "fontawesome.js"
    text = full.read_text(encoding="utf-8")
    if "book/_ext/offline_scripts.py" in text:  # already replaced (an incremental build)
        return
    # The bundle defines three packs in turn, each ending with d("fab", ...) and so on.
    ends = {p: text.index(f'd("{p}",') for p in ("fab", "far", "fas")}
    starts = {"fab": 0, "far": ends["fab"], "fas": ends["far"]}
    css_start = text.index("':host,:root{") + 1
    css = text[css_start : text.index("'", css_start)]
    icons = {}
    for prefix, name in sorted(_used_icons(Path(app.outdir))):
        region = text[starts[prefix] : ends[prefix]]
        for m in _FA_ICON.finditer(region):
            if (m.group(1) or m.group(2)) == name:
                paths = json.loads(m.group(5))
                icons[f"{prefix} {name}"] = [
                    int(m.group(3)),
                    int(m.group(4)),
                    [paths] if isinstance(paths, str) else paths,
                ]
                break
        # fa-lg and the like are sizes, not icons: they match nothing, as meant
    full.write_text(
        _FA_SCRIPT % {"icons": json.dumps(icons, separators=(",", ":")), "css": json.dumps(css)},
        encoding="utf-8",
    )
    (scripts / "fontawesome.js.map").unlink(missing_ok=True)


def setup(app):
    # thebe (live code through Binder) is not used by this book, but jupyter-book loads
    # sphinx_thebe, which adds its configuration script on every page (twice, see above).
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "").startswith("sphinx_thebe"):
                app.disconnect(listener.id)
    app.registry.css_files = [
        (name, attrs) for name, attrs in app.registry.css_files if name != "sphinx-thebe.css"
    ]
    app.connect("html-page-context", page_scripts, priority=900)
    app.connect("build-finished", write_bundle)
    app.connect("build-finished", prune_mathjax, priority=900)  # after the offline copy
    app.connect("build-finished", subset_fontawesome)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
