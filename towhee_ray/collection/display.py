"""Showing a collection as a table: ``show()`` in a terminal or a notebook, and the
table a notebook displays for an unstreamed collection (``_repr_html_``).

Rows become table rows and their fields columns; plain values are one column. Long
strings, lists and arrays are shortened, images shown as their shape, so that a row of
embeddings stays one line.
"""
from __future__ import annotations

import html
import itertools
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from towhee_ray.rows import fields_of, is_entity
from towhee_ray.guard import Empty

# Cell widths: a 60-character string and three array values keep a row of a few fields
# within a 120-column terminal (chosen by eye on the README's examples).
MAX_TEXT = 60
MAX_ITEMS = 3


def _text(value: str) -> str:
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT - 3] + '...'


def brief(value: Any) -> str:
    """A short, one-line text for a table cell.

    >>> brief('x' * 100)[-5:], brief(list(range(10)))
    ('xx...', '[0, 1, 2, ...] len=10')
    >>> import numpy
    >>> brief(numpy.zeros((2, 512), dtype='float32'))
    'ndarray float32 shape=(2, 512)'
    >>> brief(numpy.arange(5.0))
    '[0.0, 1.0, 2.0, ...] shape=(5,)'
    """
    if value.__class__ is Empty:
        return _text(f'Empty({type(value.exception).__name__}: {value.exception})')
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, (bytes, bytearray)):
        return f'<{len(value)} bytes>'
    shape, dtype = getattr(value, 'shape', None), getattr(value, 'dtype', None)
    if isinstance(shape, tuple) and dtype is not None:   # numpy arrays, towhee Images, tensors
        mode = getattr(value, 'mode', None)
        if mode is not None:
            return f'Image shape={shape} mode={mode}'
        if len(shape) == 1:
            return _items(value.tolist()[:MAX_ITEMS + 1], shape[0]) + f' shape={shape}'
        return f'{type(value).__name__} {dtype} shape={shape}'
    if isinstance(value, (list, tuple)):
        shown = _items(value[:MAX_ITEMS + 1], len(value))
        return shown if len(value) <= MAX_ITEMS else f'{shown} len={len(value)}'
    if is_entity(value) or isinstance(value, dict):
        return _text(str(dict(fields_of(value))))
    return _text(repr(value))


def _items(values: Sequence[Any], total: int) -> str:
    shown = [brief(v) for v in values[:MAX_ITEMS]]
    return '[' + ', '.join(shown + (['...'] if total > MAX_ITEMS else [])) + ']'


def table(elements: List[Any], header: Optional[Sequence[str]] = None) -> Tuple[List[str], List[List[Any]]]:
    """The header and the rows of cells (raw values) of a table of ``elements``: one column
    per field of entity or dict rows, else one per element; ``header`` labels the columns
    (as in Towhee 0.9), it does not choose them.

    >>> from towhee_ray import Entity
    >>> table([Entity(a=1, b='x')], header=['A', 'B'])
    (['A', 'B'], [[1, 'x']])
    """
    if elements and all(isinstance(e, dict) or is_entity(e) for e in elements):
        fields = list(dict.fromkeys(name for e in elements for name in fields_of(e)))
        rows = [[fields_of(e).get(name, '') for name in fields] for e in elements]
        return list(header or fields), rows
    return list(header or []), [[e] for e in elements]


def plain_table(elements: List[Any], header: Optional[Sequence[str]] = None, tablefmt: str = 'plain') -> str:
    """A text table (``tabulate``'s ``plain`` or ``grid`` format).

    >>> from towhee_ray import Entity
    >>> print(plain_table([Entity(a=1, b='x'), Entity(a=2, b='y' * 80)]))
      a  b
      1  x
      2  yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...
    """
    from tabulate import tabulate   # a dependency of Towhee
    names, rows = table(elements, header)
    return tabulate([[brief(cell) for cell in row] for row in rows], headers=names, tablefmt=tablefmt)


def html_table(elements: List[Any], header: Optional[Sequence[str]] = None,
               formatter: Optional[Dict[str, Callable[[Any], str]]] = None, footer: str = '') -> str:
    """An HTML table; ``formatter`` maps a field to a function giving its cell's HTML.

    >>> html_table([{'a': '<b>'}])
    '<table><tr><th>a</th></tr><tr><td>&lt;b&gt;</td></tr></table>'
    """
    formatter = formatter or {}
    names, rows = table(elements, header)
    cells = [[formatter[name](cell) if name in formatter else html.escape(brief(cell))
              for name, cell in zip(names or [''] * len(row), row)] for row in rows]
    lines = ['<tr>' + ''.join(f'<th>{html.escape(n)}</th>' for n in names) + '</tr>'] if names else []
    lines += ['<tr>' + ''.join(f'<td>{c}</td>' for c in row) + '</tr>' for row in cells]
    caption = f'<caption>{html.escape(footer)}</caption>' if footer else ''
    return f'<table>{caption}{"".join(lines)}</table>'


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tables are shown as HTML)."""
    shell = sys.modules.get('IPython') and sys.modules['IPython'].get_ipython()
    return type(shell).__name__ == 'ZMQInteractiveShell'


def _display_html(table: str) -> None:
    try:
        from IPython.display import HTML, display
    except ImportError:   # not in a notebook: the HTML text is what there is to show
        sys.stdout.write(table + '\n')
        return
    display(HTML(table))


class DisplayMixin:
    """``show()`` and the notebook table."""

    def show(self, limit: int = 5, header: Optional[Sequence[str]] = None, tablefmt: Optional[str] = None,
             formatter: Optional[Dict[str, Callable[[Any], str]]] = None) -> None:
        """Show the first ``limit`` elements as a table (all if ``limit`` is negative): in
        a notebook as HTML, in a terminal as text (``tablefmt`` ``'plain'``, ``'grid'`` or
        ``'html'`` chooses). On a stream it reads, and so consumes, those elements.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['path', 'size']([('a.jpg', 10), ('b.jpg', 20)]).show()
        path      size
        a.jpg       10
        b.jpg       20
        """
        tablefmt = tablefmt or ('html' if in_notebook() else 'plain')
        if tablefmt not in ('plain', 'grid', 'html'):
            raise ValueError(f"show(tablefmt=...) supports 'plain', 'grid' and 'html', got {tablefmt!r}")
        elements = self._first(limit)
        if tablefmt == 'html':
            _display_html(html_table(elements, header, formatter))
        else:
            sys.stdout.write(plain_table(elements, header, tablefmt) + '\n')

    def _first(self, limit: int) -> List[Any]:
        return list(self._items if limit < 0 else itertools.islice(self._items, limit))

    def _repr_html_(self) -> Optional[str]:
        """The table a notebook shows for an unstreamed collection (a stream is not read)."""
        if self.is_stream:
            return None
        limit = 5
        footer = f'first {limit} of {len(self._items)} elements' if len(self._items) > limit else ''
        return html_table(list(self._items[:limit]), footer=footer)
