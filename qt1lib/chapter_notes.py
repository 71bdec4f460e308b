"""What a chapter says when one of its sections needs what the dataset lacks.

On a user's dataset the chapters run every section that the data support and, for a section that
needs the digital cohort's truth (the true T1, B1+, head motion) or SIR images, show a visible note
instead of stopping. The numbers such a section would have glued into the prose are glued as NaN,
so that the page still builds and reads "nan" where the number would be, under the note that says why.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["not_available"]


def not_available(reason: str, glue_keys: Iterable[str] = ()) -> None:
    """Show a note that a section does not apply to this dataset, and glue NaN for its numbers.

    Parameters
    ----------
    reason : str
        What the section needs that the dataset lacks (one sentence, Markdown).
    glue_keys : iterable of str
        Names the section would have glued with :func:`myst_nb.glue`.
    """
    from IPython.display import Markdown, display
    from myst_nb import glue

    display(Markdown(f"> **Not available for this dataset.** {reason}"))
    for key in glue_keys:
        glue(key, float("nan"), display=False)
