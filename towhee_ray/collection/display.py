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
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from towhee_ray.rows import fields_of, is_entity
from towhee_ray.guard import Empty

# Cell widths: a 60-character string and three array values keep a row of a few fields
# within a 120-column terminal (chosen by eye on the README's examples).
MAX_TEXT = 60
MAX_ITEMS = 3


def _text(value: str) -> str:
    r"""``value`` on one line (line breaks and tabs shown escaped), at most ``MAX_TEXT`` long.

    >>> _text('a\nb\tc')
    'a\\nb\\tc'
    """
    value = value.replace('\r', '\\r').replace('\n', '\\n').replace('\t', '\\t')
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


class Table(NamedTuple):
    """A table of elements: its column ``labels`` (the header), the ``fields`` the columns
    show (none for plain elements) and the ``rows`` of cells (raw values)."""
    labels: List[str]
    fields: List[str]
    rows: List[List[Any]]


def table(elements: List[Any], header: Optional[Sequence[str]] = None) -> Table:
    """The table of ``elements``: one column per field of entity or dict rows, else one per
    element; ``header`` labels the columns (as in Towhee 0.9), it does not choose them.

    >>> from towhee_ray import Entity
    >>> table([Entity(a=1, b='x')], header=['A', 'B'])
    Table(labels=['A', 'B'], fields=['a', 'b'], rows=[[1, 'x']])
    """
    if elements and all(isinstance(e, dict) or is_entity(e) for e in elements):
        fields = list(dict.fromkeys(name for e in elements for name in fields_of(e)))
        rows = [[fields_of(e).get(name, '') for name in fields] for e in elements]
    else:
        fields, rows = [], [[e] for e in elements]
    if header is None:
        return Table(fields, fields, rows)
    labels = [header] if isinstance(header, str) else list(header)
    if rows and len(labels) != len(rows[0]):
        plural = 's' if len(labels) != 1 else ''
        names = f' ({", ".join(map(repr, fields))})' if fields else ''
        raise ValueError(f'header={labels} names {len(labels)} column{plural} and the table has '
                         f'{len(rows[0])}{names}: give one name per column, or leave header out to use '
                         f'the field names')
    return Table(labels, fields, rows)


def _cells(shown: Table, formatter: Optional[Dict[str, Callable[[Any], str]]],
           default: Callable[[Any], str]) -> List[List[str]]:
    """The cells' texts: ``formatter[name](value)`` in a column ``formatter`` names (by its
    field or its label), else ``default(value)``; a formatter for no column is an error."""
    formatter = formatter or {}
    width = len(shown.rows[0]) if shown.rows else 0
    fields, labels = shown.fields or [None] * width, shown.labels or [None] * width
    unknown = [name for name in formatter if name not in fields and name not in labels]
    if unknown and shown.rows:
        raise ValueError(f'formatter names {unknown[0]!r}, which is not a column of the table (its columns: '
                         f'{", ".join(map(repr, shown.fields or shown.labels)) or "one, unnamed"})')
    chosen = [formatter.get(field, formatter.get(label, default)) for field, label in zip(fields, labels)]
    return [[format_cell(cell) for format_cell, cell in zip(chosen, row)] for row in shown.rows]


def plain_table(elements: List[Any], header: Optional[Sequence[str]] = None, tablefmt: str = 'plain',
                formatter: Optional[Dict[str, Callable[[Any], str]]] = None) -> str:
    """A text table (``tabulate``'s ``plain`` or ``grid`` format); ``formatter`` maps a field
    to a function giving its cell's text.

    >>> from towhee_ray import Entity
    >>> print(plain_table([Entity(a=1, b='x'), Entity(a=2, b='y' * 80)]))
      a  b
      1  x
      2  yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...
    """
    from tabulate import tabulate   # a dependency of Towhee
    shown = table(elements, header)
    return tabulate(_cells(shown, formatter, brief), headers=shown.labels, tablefmt=tablefmt)


def html_table(elements: List[Any], header: Optional[Sequence[str]] = None,
               formatter: Optional[Dict[str, Callable[[Any], str]]] = None, footer: str = '') -> str:
    """An HTML table; ``formatter`` maps a field to a function giving its cell's HTML.

    >>> html_table([{'a': '<b>'}])
    '<table><tr><th>a</th></tr><tr><td>&lt;b&gt;</td></tr></table>'
    """
    shown = table(elements, header)
    cells = _cells(shown, formatter, lambda cell: html.escape(brief(cell)))
    head = ''.join(f'<th>{html.escape(label)}</th>' for label in shown.labels)
    lines = [f'<tr>{head}</tr>'] if shown.labels else []
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

    def show(self, limit: Optional[int] = 5, header: Optional[Sequence[str]] = None,
             tablefmt: Optional[str] = None,
             formatter: Optional[Dict[str, Callable[[Any], str]]] = None) -> None:
        """Show the first ``limit`` elements as a table (all if ``limit`` is None or
        negative): in a notebook as HTML, in a terminal as text (``tablefmt`` ``'plain'``,
        ``'grid'`` or ``'html'`` chooses). ``header`` names the columns, one name each;
        ``formatter`` maps a field to a function giving its cell (HTML in HTML tables). On a
        stream it reads, and so consumes, those elements.

        >>> from towhee_ray import DataCollection
        >>> DataCollection['path', 'size']([('a.jpg', 10), ('b.jpg', 20)]).show()
        path      size
        a.jpg       10
        b.jpg       20
        """
        tablefmt = tablefmt or ('html' if in_notebook() else 'plain')
        if tablefmt not in ('plain', 'grid', 'html'):
            raise ValueError(f"show(tablefmt=...) supports 'plain', 'grid' and 'html', got {tablefmt!r}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise TypeError(f'show(limit=...) takes a number of elements, or None for all; got '
                            f'{limit!r}')
        elements = self._first(limit)
        if tablefmt == 'html':
            _display_html(html_table(elements, header, formatter))
        else:
            sys.stdout.write(plain_table(elements, header, tablefmt, formatter) + '\n')

    def _first(self, limit: Optional[int]) -> List[Any]:
        return list(self._items if limit is None or limit < 0 else itertools.islice(self._items, limit))

    def _repr_html_(self) -> Optional[str]:
        """The table a notebook shows for an unstreamed collection (a stream is not read)."""
        if self.is_stream:
            return None
        limit = 5
        footer = f'first {limit} of {len(self._items)} elements' if len(self._items) > limit else ''
        return html_table(list(self._items[:limit]), footer=footer)
