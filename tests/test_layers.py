"""Layers: SQL is written only in the stores (``catalog/``, ``index/``, ``batching/``).

Everything else (the runner, the watcher, the API, discovery, the CLI, ops) asks the
catalog or the index for what it needs, so a new backend or table touches the stores
alone. The check reads the source with ``ast``: a call to a method that runs SQL, or a
string literal shaped like a statement, anywhere else fails it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gristmill

PACKAGE = Path(gristmill.__file__).parent
STORES = ("catalog", "index", "batching")

# Methods that run SQL: sqlite3's and psycopg's, and psycopg's ``cursor.copy(statement)``
# (called with the statement; ``dict.copy()`` and an image's ``copy()`` take nothing).
_RUNS_SQL = {"execute", "executemany", "executescript"}

# A statement's opening, not an English sentence that starts with the same word
# ("Select the files", "Delete the items", the HTTP method "DELETE").
_STATEMENT = re.compile(
    r"""\s*(?:
        SELECT\s+(?:.*\bFROM\b|\S+\s*$)
      | INSERT\s+(?:OR\s+\w+\s+)?INTO\s
      | UPDATE\s+\w+\s+SET\s
      | DELETE\s+FROM\s
      | WITH\s+(?:RECURSIVE\s+)?\w+(?:\s*\([^)]*\))?\s+AS\s*\(
      | CREATE\s+(?:\w+\s+){0,3}?(?:TABLE|INDEX|VIEW|TRIGGER|EXTENSION)\b
      | (?:DROP|ALTER)\s+(?:TABLE|INDEX|VIEW|TRIGGER)\b
      | PRAGMA\s+\w+
      | COPY\s+\S.*\b(?:FROM\s+STDIN|TO\s+STDOUT)\b
    )""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)


def sql_outside_stores(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for every SQL call or SQL-shaped literal in ``source``."""
    tree = ast.parse(source)
    modules = {alias.asname or alias.name.split(".")[0]
               for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    # A string standing alone as a statement is a docstring (prose), never run; an
    # f-string is read whole (below), not piece by piece.
    unread = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    unread |= {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
              for part in node.values}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            receiver = node.func.value
            if name in _RUNS_SQL or (
                    name == "copy" and (node.args or node.keywords)
                    and not (isinstance(receiver, ast.Name) and receiver.id in modules)):
                found.append((node.lineno, f".{name}() call"))
        text = _literal_text(node)
        if text is not None and id(node) not in unread and _STATEMENT.match(text):
            found.append((node.lineno, f"SQL {text.strip()[:50]!r}"))
    return found


def _literal_text(node: ast.AST) -> str | None:
    """A string literal's text; an f-string's with each ``{...}`` as ``x``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "x"
                       for part in node.values)
    return None


def test_no_sql_outside_the_stores() -> None:
    """No module outside catalog/, index/ and batching/ runs or writes SQL."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in STORES:
            continue
        for line, what in sql_outside_stores(path.read_text(encoding="utf-8")):
            offences.append(f"{relative}:{line}: {what}")
    assert offences == [], ("SQL outside the stores; give the catalog or the index a "
                            "method for it:\n" + "\n".join(offences))


def test_the_check_sees_sql_and_ignores_prose() -> None:
    """The check flags SQL calls and statements (f-strings too), not prose or HTTP verbs."""
    source = '''
import shutil


def f(db, cursor, image, marks, cols):
    """Select the items, delete them, create a table: prose."""
    db.conn.execute(query)
    cursor.executemany(query, rows)
    cursor.copy(statement)
    "SELECT 1"
    x = "select id from items"
    y = f"SELECT {cols} FROM items WHERE id IN ({marks})"
    z = ("UPDATE items SET status = 'pending' "
         "WHERE id = ?")
    w = """WITH RECURSIVE down (id) AS (SELECT 1)
           SELECT id FROM down"""
    v = "  delete from chunks where item_id = ?"
    u = "CREATE VIRTUAL TABLE t USING fts5(x)"
    t = "INSERT OR IGNORE INTO embeddings VALUES (?)"
    s = "COPY chunks (text) FROM STDIN"
    ok = ["DELETE", "select", "Delete the items with these sources", " with FTS5",
          "Create the home folder and its log folder", "Select the files to ingest"]
    image.copy()
    dict(a=1).copy()
    shutil.copy(a, b)
'''
    found = sql_outside_stores(source)
    lines = sorted(line for line, _ in found)
    # Line numbers in ``source`` (its first line is empty).
    assert lines == [7, 8, 9, 11, 12, 13, 15, 17, 18, 19, 20], found
