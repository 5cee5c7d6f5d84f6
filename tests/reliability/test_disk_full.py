"""A full disk: a clear error (exit 1), no partial file under a real name, nothing corrupt.

As root, the disk is a real 1 MiB tmpfs; elsewhere it is simulated (every fsync fails with ENOSPC),
and the case that needs a disk full before p2e starts is skipped.
"""

import errno
import os
import subprocess

import pytest


def small_disk(case, size: str = "1m"):
    """A tmpfs of `size` mounted for this case, or None where none can be mounted."""
    disk = case.root / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", disk],
                                           capture_output=True).returncode != 0:
        return None
    case.cleanups.append(lambda: subprocess.run(["umount", "-l", disk], check=True))
    return disk


def fill(disk):
    """Fill the disk to the last byte with one file (removed again to free it)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_disk_fills_during_an_artifact_write(case):
    disk = small_disk(case)
    home, fault = (disk / "home", None) if disk else (case.home, "enospc")
    if disk:
        case.seed(home)
    run = case.p2e("curate", "synth", "--effects", "melt", "-n", "8", "--size", "128", home=home, fault=fault)
    case.expect(run, 1, "no space left on device")
    report = case.expect(case.p2e("doctor", "--json", home=home), 0).json()
    assert report["ok"] and not report["temp_files"]


def test_disk_already_full(case):
    disk = small_disk(case)
    if disk is None:
        pytest.skip("needs a small file system (run as root)")
    home = disk / "home"
    case.seed(home)
    filler = fill(disk)
    synth = ("curate", "synth", "--effects", "melt", "-n", "1", "--size", "16")
    case.expect(case.p2e(*synth, home=home), 1, "cannot open the registry", "disk is not full")
    case.expect(case.p2e("doctor", home=home), 1, "cannot open the registry")
    filler.unlink()
    case.expect(case.p2e(*synth, home=home), 0)


def test_output_to_a_full_disk(case):
    disk = small_disk(case)
    folder, fault = (disk, None) if disk else (case.work, "enospc")
    out = folder / "coffee.png"
    case.expect(case.p2e("effects", "photo", "coffee", "--size", "2048", "-o", out, fault=fault), 1,
                "no space left on device")
    assert not out.exists() and not list(folder.glob(".p2e-tmp-*"))
