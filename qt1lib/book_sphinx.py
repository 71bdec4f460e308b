"""A Sphinx extension of the book: a numbered, captioned figure glued from another page.

MyST-NB pastes a glued output from another notebook with ``{glue}`` and its ``:doc:`` option
(``myst_nb.ext.glue.crossref``), but its ``{glue:figure}`` works within one notebook only, the image
it pastes across pages has no alt text (the HTML writer then writes the file path), it pastes PNG,
JPEG and GIF only (not SVG), and it writes no image file: the file exists only when the source page
shows the same bytes. The landing page shows the chapters' key figures, so this adds::

    ```{pasted-figure} fig_rmse
    :doc: ../notebooks/06_calibration.ipynb
    :alt: what the figure shows, for a reader who cannot see it
    :name: landing-rmse

    The caption: the figure's message.
    ```

a ``figure`` node (numbered like any other, ``numfig``) with the caption, and a post-transform that
reads the glued figure from MyST-NB's glue cache of that page (``<docname>.glue.json``), writes it
into the site's ``_images/`` (SVG preferred, then PNG, JPEG) and puts an image with the alt text in
the figure. A missing page, key or image is a warning (an error under ``-W``).

It also serves plotly.js from the book itself, for the interactive figures of
:mod:`qt1lib.interactive`, whose HTML leaves plotly.js out: every page whose body holds a Plotly
figure (a ``<div class="plotly-graph-div">``) loads :data:`PLOTLY_JS` from the site's ``_static``
(relative to the page, before the figure's own script runs), and the build writes that one file from
the installed plotly package. No page asks a CDN for plotly.js, and the book reads offline. A page with
a figure and no plotly package to serve it is a warning.

Registered in ``_config.yml`` (``sphinx.extra_extensions``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from binascii import a2b_base64
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

__all__ = ["PLOTLY_JS", "PLOTLY_DIV_CLASS", "PastedFigure", "ResolvePastedFigures", "load_plotly_where_needed",
           "write_plotly_js", "setup"]

LOGGER = logging.getLogger(__name__)
#: Image types a pasted figure takes, in order of preference: (MIME type, file extension, base64-encoded).
IMAGE_TYPES = (("image/svg+xml", ".svg", False), ("image/png", ".png", True), ("image/jpeg", ".jpeg", True))
#: Where the site serves plotly.js, relative to its ``_static`` folder.
PLOTLY_JS = "plotly/plotly.min.js"
#: Class of the ``<div>`` that Plotly's ``to_html`` draws a figure in: a page holding one loads :data:`PLOTLY_JS`.
PLOTLY_DIV_CLASS = "plotly-graph-div"


class pasted_image(nodes.General, nodes.Element):  # noqa: N801 - docutils node naming
    """Placeholder for the glued image: ``refdoc``, ``key``, ``alt``."""


class PastedFigure(SphinxDirective):
    """``{pasted-figure} KEY``: the figure glued as ``KEY`` in the notebook ``:doc:``, with a caption."""

    required_arguments = 1
    has_content = True
    option_spec = {
        "doc": directives.unchanged_required,
        "alt": directives.unchanged_required,
        "name": directives.unchanged,
        "figclass": directives.class_option,
    }

    def run(self) -> list[nodes.Node]:
        key = self.arguments[0]
        for option in ("doc", "alt"):
            if not self.options.get(option):
                raise self.error(f"pasted-figure {key}: the :{option}: option is required")
        _, path = self.env.relfn2path(self.options["doc"], self.env.docname)
        refdoc = self.env.path2doc(path)
        if refdoc is None:
            raise self.error(f"pasted-figure {key}: no page {self.options['doc']!r} (looked for {path})")
        if not self.content:
            raise self.error(f"pasted-figure {key}: a caption (the directive's content) is required")
        placeholder = pasted_image(refdoc=refdoc, key=key, alt=" ".join(self.options["alt"].split()))
        figure = nodes.figure("", placeholder, classes=["pasted-figure", *self.options.get("figclass", [])])
        self.set_source_info(figure)
        self.set_source_info(placeholder)
        self.options.setdefault("name", key.replace("_", "-"))  # an id: Sphinx numbers figures that have one
        self.add_name(figure)
        parsed = nodes.Element()
        self.state.nested_parse(self.content, self.content_offset, parsed)
        first = parsed[0]
        if not isinstance(first, nodes.paragraph):
            raise self.error(f"pasted-figure {key}: the caption must be a paragraph")
        figure += nodes.caption(first.rawsource, "", *first.children)
        if len(parsed) > 1:
            figure += nodes.legend("", *parsed[1:])
        return [figure]


class ResolvePastedFigures(SphinxPostTransform):
    """Replace each :class:`pasted_image` by the glued image, written into the site's ``_images/``."""

    default_priority = 5

    def run(self, **kwargs) -> None:
        from myst_nb.ext.glue.crossref import read_glue_cache

        builder = self.app.builder
        for node in list(self.document.findall(pasted_image)):
            glued = read_glue_cache(self.env.mystnb_config.output_folder, node["refdoc"]).get(node["key"])
            data = glued["data"] if glued else {}
            found = next(((m, e, b) for m, e, b in IMAGE_TYPES if m in data), None)
            if found is None:
                what = f"no image in it (types {sorted(data)})" if glued else "no such key"
                LOGGER.warning(f"pasted-figure: {node['key']!r} of {node['refdoc']!r}: {what}", location=node)
                node.parent.remove(node)
                continue
            mime, extension, encoded = found
            content = data[mime]
            content = "".join(content) if isinstance(content, list) else content
            raw = a2b_base64(content) if encoded else content.encode()
            images = Path(builder.outdir) / builder.imagedir
            images.mkdir(parents=True, exist_ok=True)
            target = images / f"{hashlib.sha256(raw).hexdigest()}{extension}"
            if not target.exists():
                target.write_bytes(raw)
            uri = os.path.relpath(target, (Path(builder.outdir) / self.env.docname).parent)
            node.replace_self(nodes.image(uri=Path(uri).as_posix(), alt=node["alt"], candidates={"*": uri}))


def _plotly_js() -> str | None:
    """plotly.js of the installed plotly package (the version its figures are written for), or None."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        return None
    return get_plotlyjs()


def load_plotly_where_needed(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """``html-page-context``: a page whose body holds a Plotly figure loads the site's :data:`PLOTLY_JS`."""
    if f'class="{PLOTLY_DIV_CLASS}"' not in context.get("body", ""):
        return
    if importlib.util.find_spec("plotly") is None:
        LOGGER.warning(f"{pagename}: the page shows a Plotly figure, but plotly is not installed to serve plotly.js")
        return
    app.add_js_file(PLOTLY_JS)


def write_plotly_js(app: Sphinx, exception: Exception | None) -> None:
    """``build-finished``: write plotly.js to ``_static/`` + :data:`PLOTLY_JS` (atomically: a temporary file,
    then a rename), for the pages of :func:`load_plotly_where_needed`."""
    if exception is not None or app.builder is None or app.builder.format != "html":
        return
    script = _plotly_js()
    if script is None:
        return
    target = Path(app.builder.outdir) / "_static" / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(script)
    os.chmod(tmp.name, 0o644)  # readable by the web server, like the rest of the site
    os.replace(tmp.name, target)


def drop_repeated_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """``html-page-context``: keep the first of scripts that are the same (source and attributes).

    sphinx-thebe 0.3.1 (a default extension of Jupyter Book 1, loaded although ``thebe: false``)
    registers its inline configuration script, ``const THEBE_JS_URL = ...``, so that it reaches
    Sphinx 7.4's page context twice, past Sphinx's own check for repeats; the second ``const``
    declaration is a JavaScript error in the browser's console on every page. A script without a
    source (an inline one) counts as source ``""``.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app: Sphinx) -> dict:
    app.add_node(pasted_image)
    app.add_directive("pasted-figure", PastedFigure)
    app.add_post_transform(ResolvePastedFigures)
    app.connect("html-page-context", load_plotly_where_needed)
    app.connect("html-page-context", drop_repeated_scripts)
    app.connect("build-finished", write_plotly_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
