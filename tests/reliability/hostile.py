"""Hostile inputs for the reliability suite, built without torch (numpy safetensors, raw bytes).

Every builder writes one file and returns its path. LoRA layers are named as in the micro world
(2 blocks, dim 32) unless a builder says otherwise.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

DIM = 32  # the micro world's model dim (2 heads x 16)
LAYER = "transformer.blocks.0.attn1.to_q"


def lora_tensors(rank: int = 4, dim: int = DIM, module: str = LAYER, dtype: Any = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"{module}.lora_A.weight": (rng.standard_normal((rank, dim)) * 0.1).astype(dtype),
            f"{module}.lora_B.weight": (rng.standard_normal((dim, rank)) * 0.1).astype(dtype)}


def safetensors_file(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata=metadata)
    return path


def good_lora(path: Path) -> Path:
    """A valid rank-4 LoRA on the micro world's first query projection."""
    return safetensors_file(path, lora_tensors())


def raw_safetensors(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    """A file laid out as safetensors: u64 header length (default: the true one), header, data."""
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


class _Payload:
    """Unpickling this runs `touch MARKER`: the proof that a loader executed the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickle_lora(path: Path, marker: Path) -> Path:
    """A legacy PyTorch checkpoint (a bare pickle, protocol 2) whose loading would run code."""
    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=2))
    return path


def torch_zip_lora(path: Path, marker: Path) -> Path:
    """A PyTorch zip checkpoint (what torch.save writes) holding a code-running pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weights": _Payload(marker)}, protocol=2))
        archive.writestr("archive/version", "3\n")
    return path


def png(path: Path, size: int = 24) -> Path:
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    Image.fromarray(np.stack([x * 9, y * 9, (x + y) * 5], -1).astype(np.uint8)).save(path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels, with almost no data: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def video(path: Path, frames: int = 9, size: int = 32) -> Path:
    import imageio.v3 as iio

    t, y, x = np.mgrid[0:frames, 0:size, 0:size]
    clip = np.stack([(x * 7 + t * 20) % 256, (y * 7) % 256, (x + y + t * 9) % 256], -1).astype(np.uint8)
    iio.imwrite(path, clip, plugin="FFMPEG", fps=8, codec="libx264", macro_block_size=1, ffmpeg_log_level="error")
    return path


def truncated(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def yaml_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def billion_laughs(levels: int = 9) -> str:
    """A YAML 'billion laughs': nine levels of nine aliases (9^9 strings if anything expands it)."""
    lines = ["kind: lora", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"rank: *a{levels - 1}")
    return "\n".join(lines) + "\n"

