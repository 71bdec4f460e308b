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
the figure. A missing page, key or image is a warning (an error under ``-W``). Registered in
``_config.yml`` (``sphinx.extra_extensions``).
"""

from __future__ import annotations

import hashlib
import os
from binascii import a2b_base64
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

__all__ = ["PastedFigure", "ResolvePastedFigures", "setup"]

LOGGER = logging.getLogger(__name__)
#: Image types a pasted figure takes, in order of preference: (MIME type, file extension, base64-encoded).
IMAGE_TYPES = (("image/svg+xml", ".svg", False), ("image/png", ".png", True), ("image/jpeg", ".jpeg", True))


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


def setup(app: Sphinx) -> dict:
    app.add_node(pasted_image)
    app.add_directive("pasted-figure", PastedFigure)
    app.add_post_transform(ResolvePastedFigures)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
