"""The few primitives every store operation is written over, and the one SQL text that serves both databases.

The way procrastinate's manager and connectors split the work: an operation (`store/operations.py`) is
written once, as an `async` function that runs named queries (`store/queries.py`) on a `Connection`; each
backend adapts only the primitives (`fetch`, `fetch_into`, `fetchval`, `execute`) and maps its driver's
errors. A query is written once, in PostgreSQL's placeholder style (`$1`, `$2`: SQLite reads them as
`?1`, `?2`), and a set of rows is named by its record type (`Rows`): SQLite unpacks it from one JSON
document with `json_each`, PostgreSQL from one array per column with `unnest`, the column names and array
types both read off the record type's fields.

On SQLite the operations run in the writer thread (or a reader's) on a connection whose methods never
suspend, so `run_sync` drives the coroutine to its end without an event loop (`coro.send(None)` once).
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, get_type_hints

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]

ROW_NUMBER = "row_n"
"""A column every row set carries besides its fields: the row's place in the list (0, 1, ...), for an
`ORDER BY` where rows must be written in the order given (ids grow in arrival order)."""


@dataclass(frozen=True)
class Rows:
    """A set of rows bound as one argument, at `{alias}` in a query's text (see `Query`). `of` is a
    NamedTuple type (its fields are the columns), or `int` for a list of ids (one column, `id`)."""

    alias: str
    of: Any


@dataclass(frozen=True)
class AnyOf:
    """A list of ids bound as one argument, and the condition that `column` is one of them, at `{alias}` in
    a query's text: `column = ANY($n::bigint[])` on PostgreSQL (an index lookup per id), `column IN (SELECT
    value FROM json_each(?n))` on SQLite."""

    alias: str
    column: str


@dataclass(frozen=True, eq=False)  # equal and hashed by identity: each is a named constant
class Query:
    """One SQL statement, written once for both databases.

    `text` uses `$1`… for single values and `{alias}` where a row set (`rows`) is read as a table; the row
    sets are bound after the single values, in the order listed. `lock` is added after the statement on
    PostgreSQL only (`FOR UPDATE OF d`, `FOR UPDATE SKIP LOCKED`): there several processes write at once,
    while SQLite's one writer thread makes every write transaction see nothing change under it.
    `postgresql_only` queries exist only to take such locks and are not run on SQLite at all."""

    text: str
    rows: Sequence[Rows | AnyOf] = ()
    lock: str | None = None
    postgresql_only: bool = False
    _rendered: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, dialect: Dialect) -> str:
        """The statement as `dialect` reads it (rendered once, then kept)."""
        text = self._rendered.get(dialect)
        if text is None:
            text = self._rendered[dialect] = _render(self, dialect)
        return text


class Connection(Protocol):
    """What an operation runs its queries on: a connection inside the operation's transaction (writes) or
    a reading connection. Arguments are the single values, then one list per row set (rows as tuples,
    or ids). Driver errors come out as `StoreError`s."""

    dialect: Dialect

    async def fetch(self, query: Query, *args: Any) -> list[tuple[Any, ...]]: ...
    async def fetch_into(self, into: type[T], query: Query, *args: Any) -> list[T]:
        """The rows as records of `into` (a NamedTuple or dataclass whose fields the query's columns are
        named after, in order); enum fields are converted from their values."""

    async def fetchval(self, query: Query, *args: Any) -> Any:
        """The first column of the first row; None when there is none."""

    async def execute(self, query: Query, *args: Any) -> int:
        """Rows changed."""


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run an operation whose connection never suspends (SQLite's) to its end, in this thread."""
    try:
        coro.send(None)
    except StopIteration as done:
        return typing.cast(T, done.value)
    coro.close()
    raise RuntimeError("a store operation on SQLite waited for something other than its connection")


# Rendering


_PLACEHOLDER = re.compile(r"\$(\d+)")


def _render(query: Query, dialect: Dialect) -> str:
    singles = max((int(n) for n in _PLACEHOLDER.findall(query.text)), default=0)
    sources: dict[str, str] = {}
    n = singles + 1
    for rows in query.rows:
        if isinstance(rows, AnyOf):
            sources[rows.alias] = (
                f"{rows.column} IN (SELECT value FROM json_each(?{n}))"
                if dialect == "sqlite"
                else f"{rows.column} = ANY(${n}::bigint[])"
            )
            n += 1
        elif dialect == "sqlite":
            sources[rows.alias] = _json_rows(rows, n)
            n += 1
        else:
            sources[rows.alias] = _unnest_rows(rows, n)
            n += len(_columns(rows.of))
    text = query.text.format_map(sources) if query.rows else query.text
    if dialect == "sqlite":
        return _PLACEHOLDER.sub(r"?\1", text)
    return f"{text.rstrip()} {query.lock}" if query.lock else text


def _json_rows(rows: Rows, n: int) -> str:
    if rows.of is int:
        return f"(SELECT key AS {ROW_NUMBER}, value AS id FROM json_each(?{n})) AS {rows.alias}"
    values = ", ".join(f"json_extract(value, '$[{i}]') AS {name}" for i, (name, _) in enumerate(_columns(rows.of)))
    return f"(SELECT key AS {ROW_NUMBER}, {values} FROM json_each(?{n})) AS {rows.alias}"


def _unnest_rows(rows: Rows, n: int) -> str:
    columns = _columns(rows.of)
    arrays = ", ".join(f"${n + i}::{kind}[]" for i, (_, kind) in enumerate(columns))
    names = ", ".join(name for name, _ in columns)
    # WITH ORDINALITY counts from 1; json_each's key from 0
    return f"unnest({arrays}) WITH ORDINALITY AS {rows.alias}({names}, {ROW_NUMBER})"


_PG_TYPES: Mapping[type, str] = {int: "bigint", str: "text", bool: "boolean", float: "float8", bytes: "bytea"}


@functools.cache
def _columns(of: Any) -> tuple[tuple[str, str], ...]:
    """(name, PostgreSQL type) of each field of a row type, from its annotations."""
    if of is int:
        return (("id", "bigint"),)
    hints = get_type_hints(of)
    return tuple((name, _pg_type(hints[name])) for name in of._fields)


def _pg_type(hint: Any) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = (a for a in typing.get_args(hint) if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
        return "text"
    return _PG_TYPES[hint]


def bind(query: Query, args: Sequence[Any], dialect: Dialect, encode: Callable[[Any], Any] | None = None) -> list[Any]:
    """The arguments of `query` as the driver binds them: the single values, then each row set's."""
    if not query.rows:
        return list(args)
    split = len(args) - len(query.rows)
    bound = list(args[:split])
    for rows, value in zip(query.rows, args[split:], strict=True):
        bound.extend(row_set_args(dialect, int if isinstance(rows, AnyOf) else rows.of, value, encode))
    return bound


def row_set_args(dialect: Dialect, of: Any, rows: Sequence[Any], encode: Callable[[Any], Any] | None) -> list[Any]:
    """The arguments one row set is bound as: one JSON document (SQLite, `encode`d), or one list per
    column (PostgreSQL)."""
    if dialect == "sqlite":
        assert encode is not None
        return [encode(rows)]
    if of is int:
        return [list(rows)]
    return transpose(rows) if rows else [[] for _ in _columns(of)]


def transpose(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows to one list per column: the arguments of an `unnest($1::t1[], $2::t2[], ...)`."""
    return [list(column) for column in zip(*rows, strict=True)]
