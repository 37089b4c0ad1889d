"""A griffe extension for the API reference: towhee_ray's docstrings read well in Markdown.

The docstrings are prose with doctests (``>>>``) and a few reStructuredText habits. Rendered
as Markdown as they are, ``>>>`` becomes nested block quotes and ``:func:`init``` shows its
role. This extension, loaded by mkdocstrings (``mkdocs.yml``), rewrites each docstring once:

* a run of doctest lines (``>>>``, ``...`` and the expected output up to a blank line)
  becomes a fenced ``pycon`` block at the run's own indentation;
* ``:func:`name```, ``:class:`~pkg.Name``` and the other roles become ``name`` in code;
* a paragraph ending in ``::`` (a reST literal block follows) ends in ``:``.

>>> markdown_docstring('Add one.\\n\\n>>> 1 + 1\\n2').splitlines()
['Add one.', '', '```pycon', '>>> 1 + 1', '2', '```']
>>> markdown_docstring('See :func:`~towhee_ray.init`.')
'See `init`.'
"""
from __future__ import annotations

import re
from typing import Any, List

import griffe

_ROLE = re.compile(r':(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`~?([^`]+)`')
_FENCE = '```'


def _role(match: 're.Match[str]') -> str:
    target = match[1]
    if match[0].split('`')[1].startswith('~'):   # :class:`~a.b.C` shows C
        target = target.rsplit('.', 1)[-1]
    return f'`{target}`'


def markdown_docstring(text: str) -> str:
    """``text`` with its doctests fenced and its reST roles made code (see the module)."""
    lines = text.splitlines()
    out: List[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(_FENCE):
            in_fence = not in_fence
        if not in_fence and stripped.startswith('>>>'):
            indent = line[:len(line) - len(stripped)]
            out.append(f'{indent}{_FENCE}pycon')
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f'{indent}{_FENCE}')
            continue
        if not in_fence:
            line = _ROLE.sub(_role, line)
            if line.rstrip().endswith('::') and not line.rstrip().endswith(':::'):
                line = line.rstrip()[:-1]
        out.append(line)
        i += 1
    return '\n'.join(out)


class DoctestFences(griffe.Extension):
    """Rewrites every docstring griffe loads with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
