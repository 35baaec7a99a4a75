"""How the page reports trouble: a user's mistake is one red line, a bug is a line plus details.

Each section of the page runs inside ``guarded``, so a bad upload, missing weights or an
unexpected failure in one tab never takes the rest of the page down.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from attnviz.errors import AttnvizError


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Show ``AttnvizError`` messages as they are; anything else briefly, details folded away.

    Streamlit's own control flow (``st.stop``, reruns) derives from ``BaseException`` and
    passes through untouched.
    """
    try:
        yield
    except AttnvizError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - the page must survive a bug in one section
        st.error(f"Something went wrong while {what}. The rest of the page still works; "
                 "the details below help a bug report.")
        with st.expander("Details"):
            st.exception(exc)
