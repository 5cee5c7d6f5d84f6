import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from p2e_cli.errors import P2EError, P2ERuntimeError
from p2e_cli.registry import open_registry


@pytest.fixture
def reg(home):
    registry = open_registry()
    yield registry
    registry.close()


def test_migrations_are_numbered_and_recorded(reg):
    rows = reg.db.execute("SELECT version FROM migrations").fetchall()
    assert [r[0] for r in rows] == list(range(1, reg.schema_version + 1))
    assert reg.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_add_get_by_id_prefix_name_and_kind_name(reg):
    rec = reg.add("effect", name="melt", data={"split": "train"})
    assert reg.get(rec.id).name == "melt"
    assert reg.get(rec.id[:6]).id == rec.id
    assert reg.get("melt").id == rec.id
    assert reg.get("effect:melt").id == rec.id
    with pytest.raises(P2EError, match="no lora record"):
        reg.get("lora:melt")


def test_keyed_records_dedupe_and_names_are_unique(reg):
    a = reg.add("clip", key="abc", data={"n": 1})
    b = reg.add("clip", key="abc", data={"n": 2})
    assert a.id == b.id and b.data == {"n": 1}
    reg.add("effect", name="melt")
    with pytest.raises(P2EError, match="already exists"):
        reg.add("effect", name="melt")
    other = reg.add("effect", name="spin")
    with pytest.raises(P2EError, match="already exists"):
        reg.rename(other.id, "melt")
    assert reg.rename("melt", "melt-old").name == "melt-old" and reg.rename(other.id, "melt").id == other.id
    assert reg.get("effect:melt").id == other.id


@pytest.mark.parametrize("bad", ["../x", "a/b", "/etc/passwd", "..", "", "x" * 101, "a..b"])
def test_bad_names_and_refs_are_refused(reg, bad):
    with pytest.raises(P2EError):
        reg.add("effect", name=bad)
    with pytest.raises(P2EError):
        reg.get(bad)


def test_artifacts_are_content_addressed_and_shared(reg):
    ref = reg.store_bytes(b"hello", ".bin")
    again = reg.store_bytes(b"hello", ".bin")
    assert ref == again and reg.path(ref).read_bytes() == b"hello"
    a = reg.add("lora", subkind="reference", files={"weights": ref})
    b = reg.add("lora", subkind="imported", files={"weights": ref})
    reg.rm(a.id)
    assert reg.path(ref).exists(), "still referenced by b"
    reg.rm(b.id)
    assert not reg.path(ref).exists()


def test_rm_refuses_with_children_unless_forced_and_lineage(reg):
    clip = reg.add("clip", key="c1")
    lora = reg.add("lora", subkind="reference", parents=[clip.id])
    canon = reg.add("lora", subkind="canonical", parents=[lora.id])
    tree = reg.lineage(canon.id)
    assert tree["parents"][0]["parents"][0]["id"] == clip.id
    with pytest.raises(P2EError, match="dependent"):
        reg.rm(lora.id)
    reg.rm(lora.id, force=True)
    assert reg.get(canon.id).parents == []


def test_doctor_finds_missing_and_corrupt_and_fix_removes_orphans(reg):
    good = reg.add("clip", files={"frames": reg.store_bytes(b"one", ".bin")})
    bad = reg.add("clip", files={"frames": reg.store_bytes(b"two", ".bin")})
    assert reg.doctor()["ok"]
    reg.path(bad.files["frames"]).write_bytes(b"tampered")
    orphan = reg.store_bytes(b"orphan", ".bin")
    report = reg.doctor()
    assert not report["ok"] and [c["record"] for c in report["corrupt"]] == [bad.id]
    assert report["orphans"] == [orphan.path]
    reg.path(good.files["frames"]).unlink()
    assert [m["record"] for m in reg.doctor()["missing"]] == [good.id]
    fixed = reg.doctor(fix=True)
    assert not reg.path(orphan).exists() and fixed["fixed"]


def test_update_merges_data_and_replaces_files(reg):
    run = reg.add("run", data={"status": "running", "step": 0})
    old = reg.store_bytes(b"ckpt0", ".pt")
    reg.update(run.id, files={"checkpoint": old})
    new = reg.store_bytes(b"ckpt1", ".pt")
    updated = reg.update(run.id, data={"step": 10}, files={"checkpoint": new})
    assert updated.data == {"status": "running", "step": 10}
    assert updated.files["checkpoint"] == new and not reg.path(old).exists()


WRITER = textwrap.dedent("""
    import sys
    from p2e_cli.registry import open_registry
    reg = open_registry(sys.argv[1])
    for i in range(int(sys.argv[3])):
        reg.add("clip", key=f"{sys.argv[2]}-{i}", data={"i": i}, files={"x": reg.store_bytes(f"{sys.argv[2]}{i}".encode())})
""")


def test_two_processes_writing_200_records_each_lose_none(home):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(home), tag, "200"], stderr=subprocess.PIPE)
             for tag in ("a", "b")]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    reg = open_registry(home)
    assert len(reg.ls("clip")) == 400
    assert reg.doctor()["ok"]


def test_a_full_index_is_a_runtime_error_and_keeps_what_was_written(reg):
    kept = reg.add("effect", name="kept")
    reg.db.execute(f"PRAGMA max_page_count = {reg.db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(P2ERuntimeError, match="cannot write the registry .*database or disk is full"):
        for i in range(100):
            reg.add("clip", data={"blob": "x" * 4000})
    assert reg.get("kept").id == kept.id and not reg.db.in_transaction and reg.doctor()["ok"]


OPENER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from p2e_cli.registry import Registry
    root, start = Path(sys.argv[1]), float(sys.argv[2])
    for i in range(40):
        while time.time() < start + 0.05 * i:  # every process opens home i at the same instant
            pass
        Registry(root / f"home{i}").close()
""")


def test_four_processes_creating_the_same_new_registries(tmp_path):
    """Switching a new index to WAL while another process does the same answered 'database is locked'."""
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(tmp_path), str(start)], stderr=subprocess.PIPE)
             for _ in range(4)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors


SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from p2e_cli.registry import open_registry
    reg = open_registry(sys.argv[1])
    with reg.artifact(".bin") as a:
        with open(a.path, "wb") as f:
            f.write(b"x" * 1000); f.flush()
            print("writing", flush=True)
            time.sleep(60)
    reg.add("clip", files={"x": a.ref})
""")


def test_sigkill_during_artifact_write_leaves_no_visible_partial(home):
    open_registry(home).close()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(home)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    visible = [p for p in (home / "artifacts").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert visible == []
    reg = open_registry(home)
    report = reg.doctor()
    assert report["ok"] and len(report["temp_files"]) == 1
    reg.doctor(fix=True)
    assert reg.doctor()["temp_files"] == []
