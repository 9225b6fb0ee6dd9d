"""Griffe extension: the Sphinx roles of the docstrings read as code in the API reference.

The package's docstrings cross-reference with Sphinx roles (``:class:`~hyperunmix.Scene```,
``:func:`open_scene```, ``:mod:`hyperunmix.conventions```), which Markdown would print as
written. Each becomes inline code: the last component of a ``~`` target, else the target.
The docstrings themselves are left as they are.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _as_code(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_as_code, obj.docstring.value)
