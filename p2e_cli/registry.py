"""The registry: one folder ($P2E_HOME) with a SQLite index and a content-addressed artifact store.

This module is the only code that touches the home. Records are rows of `records` (kind, name,
JSON data), with lineage in `parents` and files in `files`; artifact files are named by their
sha256 and written atomically (temp file in the store, fsync, rename), so a kill never leaves a
partial artifact under a real name. The index runs in WAL mode with a busy timeout, so several
p2e processes can write at once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .errors import P2EError, P2ERuntimeError
from .files import TEMP_PREFIX, fsync_dir, os_error, sha256_file, write_failure

HOME_ENV = "P2E_HOME"
KINDS = ("base", "effect", "clip", "lora", "hypernet", "run", "render")
SUBKINDS = {"lora": ("reference", "canonical", "predicted", "finetuned", "imported")}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
REF_RE = re.compile(r"^(?:(?P<kind>[a-z]+):)?(?P<ref>[A-Za-z0-9][A-Za-z0-9_.+-]{0,99})$")
ID_LEN = 12
BUSY_SECONDS = 60  # how long a writer waits for another process's transaction

# Numbered schema migrations: append, never edit. Each is a list of statements run in one transaction.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE records (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT, subkind TEXT,
            created TEXT NOT NULL, version TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}')""",
        "CREATE UNIQUE INDEX records_kind_name ON records(kind, name) WHERE name IS NOT NULL",
        "CREATE INDEX records_kind ON records(kind, subkind)",
        """CREATE TABLE parents (
            child TEXT NOT NULL REFERENCES records(id), parent TEXT NOT NULL REFERENCES records(id),
            PRIMARY KEY (child, parent))""",
        "CREATE INDEX parents_parent ON parents(parent)",
        """CREATE TABLE files (
            record TEXT NOT NULL REFERENCES records(id), role TEXT NOT NULL,
            path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
            PRIMARY KEY (record, role))""",
        "CREATE INDEX files_path ON files(path)",
    ],
    # 2: `p2e lora import` (0.1.0 until this migration) stored its base's *name* as a LoRA's `base`; every
    # other writer stored the id. The base is also a parent of each such record: take its id from there.
    [
        """UPDATE records SET data = json_set(data, '$.base', (
               SELECT p.parent FROM parents p JOIN records b ON b.id = p.parent
               WHERE p.child = records.id AND b.kind = 'base' ORDER BY p.parent LIMIT 1))
           WHERE kind = 'lora' AND json_type(data, '$.base') = 'text'
             AND json_extract(data, '$.base') NOT IN (SELECT id FROM records WHERE kind = 'base')
             AND EXISTS (SELECT 1 FROM parents p JOIN records b ON b.id = p.parent
                         WHERE p.child = records.id AND b.kind = 'base')""",
    ],
]

_home_override: Path | None = None


def set_home(home: Path | str | None) -> None:
    """Set the home for this process (the CLI's --home)."""
    global _home_override
    _home_override = Path(home).expanduser() if home is not None else None


def resolve_home(home: Path | str | None = None) -> Path:
    """--home, else $P2E_HOME, else the platform's user data dir."""
    if home is not None:
        return Path(home).expanduser()
    if _home_override is not None:
        return _home_override
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("p2e", appauthor=False))


def validate_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise P2EError(
            f"invalid {what} {name!r}",
            hint="use 1-100 letters, digits, '.', '_', '+' or '-', starting with a letter or digit (no '/' or '..')",
        )
    return name


def _disk_trouble(error: BaseException) -> bool:
    """A full or failing disk (a runtime failure), as opposed to a bad home (bad input)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO)
    return getattr(error, "sqlite_errorcode", 0) & 0xFF in (13, 10)  # SQLITE_FULL, SQLITE_IOERR


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class FileRef:
    path: str  # relative to the home
    sha256: str
    size: int


@dataclass
class Record:
    id: str
    kind: str
    name: str | None
    subkind: str | None
    created: str
    version: str
    data: dict[str, Any]
    parents: list[str] = field(default_factory=list)
    files: dict[str, FileRef] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name or self.id}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PendingArtifact:
    """A file being written into the store: write to `.path`; `.ref` is set once it is stored."""

    def __init__(self, path: Path):
        self.path = path
        self.ref: FileRef | None = None


class Registry:
    def __init__(self, home: Path):
        self.home = home
        self.store = home / "artifacts"
        try:
            self.store.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(home / "index.sqlite", timeout=BUSY_SECONDS, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_SECONDS * 1000}")
            self._use_wal()
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (OSError, sqlite3.Error) as e:
            error = P2ERuntimeError if _disk_trouble(e) else P2EError
            raise error(f"cannot open the registry at {home}: {e}",
                        hint="check that the folder is writable and its disk is not full, "
                             "or pass --home DIR / set P2E_HOME") from e

    def _use_wal(self) -> None:
        """Switch the index to WAL. SQLite answers 'database is locked' at once, without waiting on
        the busy timeout, while another process is switching a new index at the same instant
        (several p2e commands creating one home), so wait here instead."""
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                self.db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction():
            self.db.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
            current = self.db.execute("SELECT COALESCE(MAX(version), 0) FROM migrations").fetchone()[0]
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version > current:
                    for statement in statements:
                        self.db.execute(statement)
                    self.db.execute("INSERT INTO migrations VALUES (?, ?)", (version, _now()))

    @property
    def schema_version(self) -> int:
        return self.db.execute("SELECT MAX(version) FROM migrations").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: writers queue on the busy timeout, never fail fast)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise P2ERuntimeError(f"cannot write the registry at {self.home}: {e}",
                                  hint="check that the folder is writable and the disk is not full") from e
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as e:
            if self.db.in_transaction:  # SQLite may have rolled back already (e.g. on a full disk)
                self.db.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError):
                raise P2ERuntimeError(f"cannot write the registry at {self.home}: {e}",
                                      hint="check that the folder is writable and the disk is not full") from e
            raise

    def close(self) -> None:
        self.db.close()

    # -- artifacts ---------------------------------------------------------------------------

    @contextmanager
    def artifact(self, suffix: str = "") -> Iterator[PendingArtifact]:
        """Write a new artifact: `with reg.artifact(".safetensors") as a: save(a.path)`, then `a.ref`."""
        tmp = self.store / f"{TEMP_PREFIX}{uuid.uuid4().hex}{suffix}"
        pending = PendingArtifact(tmp)
        try:
            yield pending
            if not tmp.is_file():
                raise P2ERuntimeError(f"internal: artifact {tmp.name} was not written")
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            sha, size = sha256_file(tmp), tmp.stat().st_size
            final = self.store / sha[:2] / f"{sha}{suffix}"
            final.parent.mkdir(exist_ok=True)
            if final.exists() and sha256_file(final) == sha:
                tmp.unlink()
            else:
                os.replace(tmp, final)
                fsync_dir(final.parent)
            pending.ref = FileRef(path=str(final.relative_to(self.home)), sha256=sha, size=size)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if (cause := os_error(e)) is not None:
                raise write_failure(f"an artifact under {self.store}", cause) from e
            raise

    def store_bytes(self, payload: bytes, suffix: str = "") -> FileRef:
        with self.artifact(suffix) as pending:
            pending.path.write_bytes(payload)
        assert pending.ref is not None
        return pending.ref

    def path(self, ref: FileRef) -> Path:
        return self.home / ref.path

    def folder(self, *parts: str) -> Path:
        """A managed folder under the home (caches, worlds), created on demand. Parts are validated."""
        for part in parts:
            validate_name(part, "folder name")
        path = self.home.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- records -----------------------------------------------------------------------------

    def add(self, kind: str, *, name: str | None = None, key: str | None = None, subkind: str | None = None,
            data: dict[str, Any] | None = None, parents: list[str] = (), files: dict[str, FileRef] | None = None) -> Record:
        """Add a record. With `key` the id is derived from it, and re-adding the same key returns
        the existing record (content dedupe); without, every call makes a new record."""
        if kind not in KINDS:
            raise P2EError(f"unknown record kind {kind!r}", hint=f"kinds: {', '.join(KINDS)}")
        if subkind is not None and kind in SUBKINDS and subkind not in SUBKINDS[kind]:
            raise P2EError(f"unknown {kind} kind {subkind!r}", hint=f"one of: {', '.join(SUBKINDS[kind])}")
        if name is not None:
            validate_name(name)
        record_id = hashlib.sha256(f"{kind}\0{key or uuid.uuid4().hex}".encode()).hexdigest()[:ID_LEN]
        payload = json.dumps(data or {}, sort_keys=True, default=str)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone():
                existing = self._load(record_id)
                return existing
            if name is not None and db.execute("SELECT 1 FROM records WHERE kind = ? AND name = ?", (kind, name)).fetchone():
                raise P2EError(f"a {kind} named {name!r} already exists",
                               hint=f"choose another name, or remove it first: p2e rm {kind}:{name}")
            parent_ids = [self._resolve_id(p) for p in parents]
            db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (record_id, kind, name, subkind, _now(), __version__, payload))
            db.executemany("INSERT OR IGNORE INTO parents VALUES (?, ?)", [(record_id, p) for p in parent_ids])
            db.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                           [(record_id, role, f.path, f.sha256, f.size) for role, f in (files or {}).items()])
        return self._load(record_id)

    def update(self, ref: str, *, data: dict[str, Any] | None = None, files: dict[str, FileRef] | None = None,
               subkind: str | None = None) -> Record:
        """Merge `data` into a record's data and add or replace its files (runs grow as they train)."""
        with self.transaction() as db:
            record = self._load(self._resolve_id(ref))
            merged = {**record.data, **(data or {})}
            db.execute("UPDATE records SET data = ?, subkind = COALESCE(?, subkind) WHERE id = ?",
                       (json.dumps(merged, sort_keys=True, default=str), subkind, record.id))
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                           [(record.id, role, f.path, f.sha256, f.size) for role, f in (files or {}).items()])
        replaced = {record.files[r].path for r in (files or {}) if r in record.files}
        self._unlink_unreferenced(replaced)
        return self._load(record.id)

    def rename(self, ref: str, name: str | None) -> Record:
        """Give a record another name (None: none); names stay unique within a kind."""
        if name is not None:
            validate_name(name)
        with self.transaction() as db:
            record = self._load(self._resolve_id(ref))
            if name is not None and db.execute("SELECT 1 FROM records WHERE kind = ? AND name = ? AND id != ?",
                                               (record.kind, name, record.id)).fetchone():
                raise P2EError(f"a {record.kind} named {name!r} already exists",
                               hint=f"choose another name, or remove it first: p2e rm {record.kind}:{name}")
            db.execute("UPDATE records SET name = ? WHERE id = ?", (name, record.id))
        return self._load(record.id)

    def _load(self, record_id: str) -> Record:
        row = self.db.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
        parents = [r[0] for r in self.db.execute("SELECT parent FROM parents WHERE child = ? ORDER BY parent", (record_id,))]
        files = {r["role"]: FileRef(r["path"], r["sha256"], r["size"])
                 for r in self.db.execute("SELECT * FROM files WHERE record = ? ORDER BY role", (record_id,))}
        return Record(row["id"], row["kind"], row["name"], row["subkind"], row["created"], row["version"],
                      json.loads(row["data"]), parents, files)

    def _resolve_id(self, ref: str, kind: str | None = None) -> str:
        match = REF_RE.match(ref) if isinstance(ref, str) else None
        if not match or ".." in ref:
            raise P2EError(f"not a registry id or name: {ref!r}",
                           hint="ids are hex prefixes such as 3fa2c1; names use letters, digits, '.', '_', '+', '-'; see p2e ls")
        kind = match["kind"] or kind
        ref = match["ref"]
        if kind is not None and kind not in KINDS:
            raise P2EError(f"unknown record kind {kind!r} in {ref!r}", hint=f"kinds: {', '.join(KINDS)}")
        kind_sql, kind_arg = ("AND kind = ?", (kind,)) if kind else ("", ())
        rows = self.db.execute(f"SELECT id FROM records WHERE name = ? {kind_sql}", (ref, *kind_arg)).fetchall()
        if not rows and re.fullmatch(r"[0-9a-f]{4,12}", ref):
            rows = self.db.execute(f"SELECT id FROM records WHERE id LIKE ? {kind_sql}", (ref + "%", *kind_arg)).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        what = f"{kind} " if kind else ""
        if not rows:
            raise P2EError(f"no {what}record {ref!r} in the registry at {self.home}",
                           hint=f"list what exists with: p2e ls{' ' + kind if kind else ''}")
        raise P2EError(f"{ref!r} matches {len(rows)} records", hint="give a longer id, or KIND:NAME such as lora:melt")

    def get(self, ref: str, kind: str | None = None) -> Record:
        """A record by id, id prefix (>= 4 hex), name, or KIND:NAME."""
        return self._load(self._resolve_id(ref, kind))

    def find(self, kind: str, name: str) -> Record | None:
        row = self.db.execute("SELECT id FROM records WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return self._load(row[0]) if row else None

    def ls(self, kind: str | None = None, subkind: str | None = None) -> list[Record]:
        if kind is not None and kind not in KINDS:
            raise P2EError(f"unknown record kind {kind!r}", hint=f"kinds: {', '.join(KINDS)}")
        clauses, args = [], []
        for column, value in (("kind", kind), ("subkind", subkind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        ids = [r[0] for r in self.db.execute(f"SELECT id FROM records {where} ORDER BY created, id", args)]
        return [self._load(i) for i in ids]

    def children(self, ref: str) -> list[str]:
        record_id = self._resolve_id(ref)
        return [r[0] for r in self.db.execute("SELECT child FROM parents WHERE parent = ? ORDER BY child", (record_id,))]

    def lineage(self, ref: str) -> dict[str, Any]:
        """The ancestry tree of a record: {"id", "label", "parents": [...]} down to its roots."""

        def walk(record_id: str, seen: frozenset[str]) -> dict[str, Any]:
            record = self._load(record_id)
            node: dict[str, Any] = {"id": record.id, "label": record.label, "subkind": record.subkind, "parents": []}
            if record_id not in seen:
                node["parents"] = [walk(p, seen | {record_id}) for p in record.parents]
            return node

        return walk(self._resolve_id(ref), frozenset())

    def rm(self, ref: str, force: bool = False) -> Record:
        """Remove a record; refuse when others descend from it unless `force`. Artifact files go
        only when no other record references them."""
        with self.transaction() as db:
            record = self._load(self._resolve_id(ref))
            children = [r[0] for r in db.execute("SELECT child FROM parents WHERE parent = ?", (record.id,))]
            if children and not force:
                raise P2EError(f"{record.label} has {len(children)} dependent record(s): {', '.join(children[:5])}",
                               hint="remove those first, or pass --force to remove it anyway")
            db.execute("DELETE FROM parents WHERE child = ? OR parent = ?", (record.id, record.id))
            db.execute("DELETE FROM files WHERE record = ?", (record.id,))
            db.execute("DELETE FROM records WHERE id = ?", (record.id,))
        self._unlink_unreferenced({f.path for f in record.files.values()})
        return record

    def _unlink_unreferenced(self, paths: set[str]) -> None:
        for path in paths:
            if not self.db.execute("SELECT 1 FROM files WHERE path = ?", (path,)).fetchone():
                (self.home / path).unlink(missing_ok=True)

    # -- integrity ---------------------------------------------------------------------------

    def doctor(self, fix: bool = False) -> dict[str, Any]:
        """Check the index and every artifact's hash. `ok` is False when a referenced file is missing
        or corrupt. With `fix`: remove stale temp files and orphan artifacts, and rebuild indexes."""
        integrity = self.db.execute("PRAGMA integrity_check").fetchone()[0]
        missing, corrupt = [], []
        referenced = set()
        for row in self.db.execute("SELECT record, role, path, sha256 FROM files ORDER BY record, role").fetchall():
            referenced.add(row["path"])
            path = self.home / row["path"]
            entry = {"record": row["record"], "role": row["role"], "path": row["path"]}
            if not path.is_file():
                missing.append(entry)
            elif sha256_file(path) != row["sha256"]:
                corrupt.append(entry)
        stored = [p for p in self.store.rglob("*") if p.is_file()]
        temp = sorted(str(p.relative_to(self.home)) for p in stored if p.name.startswith(TEMP_PREFIX))
        orphans = sorted(rel for p in stored if not p.name.startswith(TEMP_PREFIX)
                         and (rel := str(p.relative_to(self.home))) not in referenced)
        dangling = [dict(r) for r in self.db.execute(
            "SELECT child, parent FROM parents WHERE parent NOT IN (SELECT id FROM records)")]
        fixed = []
        if fix:
            for rel in temp + orphans:
                (self.home / rel).unlink(missing_ok=True)
                fixed.append(f"removed {rel}")
            self.db.execute("REINDEX")
            fixed.append("rebuilt indexes")
        return {
            "home": str(self.home),
            "schema_version": self.schema_version,
            "records": self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0],
            "files": len(referenced),
            "integrity": integrity,
            "missing": missing,
            "corrupt": corrupt,
            "orphans": orphans,
            "temp_files": temp,
            "dangling_parents": dangling,
            "fixed": fixed,
            "ok": integrity == "ok" and not missing and not corrupt,
        }


def open_registry(home: Path | str | None = None) -> Registry:
    """Open (creating if needed) the registry at --home / $P2E_HOME / the user data dir."""
    return Registry(resolve_home(home))
