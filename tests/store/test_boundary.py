"""The store's seam holds: SQL only in a backend package, callers typed against the
protocols, the driver's exceptions never caught outside the backend."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("bridge/store/sqlite/", "bridge/store/postgresql/")
"""Backend packages: the only places in ``bridge/`` allowed SQL and drivers."""
OUTSIDE_BRIDGE = ("adapters/email/",)
"""Adapter packages whose state moved into the store: they hold no SQL either
(``legacy.py`` reads the side file of earlier versions, once)."""
LEGACY_READERS = {"adapters/email/legacy.py"}

_SQL = re.compile(r"^\s*(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|"
                  r"DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|ALTER\s+TABLE|PRAGMA|BEGIN|COMMIT|"
                  r"ROLLBACK|SAVEPOINT)\b", re.IGNORECASE | re.DOTALL)
_DRIVERS = {"sqlite3", "asyncpg", "psycopg", "psycopg2", "aiosqlite"}
_PROTOCOLS = {"Tx", "Store"}


def _files() -> list[Path]:
    out = [p for p in (ROOT / "bridge").rglob("*.py")
           if not any(str(p.relative_to(ROOT)).startswith(b) for b in BACKENDS)]
    for top in OUTSIDE_BRIDGE:
        out += [p for p in (ROOT / top).rglob("*.py")
                if str(p.relative_to(ROOT)) not in LEGACY_READERS]
    return sorted(out)


def problems(path: Path, root: Path = ROOT) -> list[str]:
    """What in *path* breaks the seam, one line each."""
    rel = path.relative_to(root)
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and _SQL.search(node.value):
            found.append(f"{rel}:{node.lineno}: SQL outside a backend: {node.value[:60]!r}")
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if _SQL.search(text):
                found.append(f"{rel}:{node.lineno}: SQL outside a backend: {text[:60]!r}")
        elif isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany",
                                                               "executescript"):
            found.append(f"{rel}:{node.lineno}: .{node.attr}( outside a backend")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                else [node.module or ""]
            for name in names:
                if name.split(".")[0] in _DRIVERS:
                    found.append(f"{rel}:{node.lineno}: imports the driver {name}")
                if name.startswith("bridge.store.sqlite") and rel.parts[:2] != ("bridge",
                                                                                "store"):
                    found.append(f"{rel}:{node.lineno}: imports the SQLite backend; type "
                                 "against bridge.store's protocols")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in _PROTOCOLS and not node.attr.startswith("__") \
                and isinstance(getattr(node, "ctx", None), ast.Load):
            # Tx.method is the protocol's stub, not the backend's method: it returns None.
            found.append(f"{rel}:{node.lineno}: {node.value.id}.{node.attr} calls the "
                         "protocol's stub; call it on the instance")
    return found


def test_no_sql_and_no_driver_outside_the_backends() -> None:
    files = _files()
    assert any(str(p).endswith("bridge/store/archive.py") for p in files)
    assert any(str(p).endswith("bridge/cli/main.py") for p in files)
    assert any(str(p).endswith("adapters/email/store.py") for p in files)
    found = [line for p in files for line in problems(p)]
    assert found == []


def test_the_checker_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bridge" / "probe.py"
    bad.parent.mkdir()
    bad.write_text(
        "import sqlite3\n"
        "from bridge.store.sqlite import SqliteTx\n"
        "from bridge.store import Tx\n"
        "def f(tx):\n"
        "    tx.c.execute('SELECT 1 FROM posts')\n"
        "    w = 'x'\n"
        "    q = f\"UPDATE deliveries SET state='sent' WHERE id={w}\"\n"
        "    return Tx.delivery_state\n")
    kinds = [line.split(": ", 1)[1] for line in problems(bad, tmp_path)]
    assert any("imports the driver sqlite3" in k for k in kinds)
    assert any("imports the SQLite backend" in k for k in kinds)
    assert any(".execute( outside" in k for k in kinds)
    sql = [k for k in kinds if "SQL outside a backend" in k]
    assert any("SELECT 1" in k for k in sql) and any("UPDATE deliveries" in k for k in sql)
    assert any("Tx.delivery_state calls the protocol's stub" in k for k in kinds)
