#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/, not committed) from the captured Bolt
frames in protocols/bolt/testdata (see its README).

- bolt_decode: every captured frame as it is, its v2 form with and without CRC32, and two
  frames back to back.
- abi_layouts: the header section of every frame, and the ABI buffers a host and a plugin
  exchange for it: a decode result (§5.4), a host command (§5.3), an encode result (§5.5),
  plus a §5.2 pairs buffer of a plugin configuration.
- guest_memory: its input is a structured sequence of accesses (`arbitrary`), which no
  captured bytes resemble; it starts from an empty corpus.

Idempotent: seeds are named by content hash, existing corpus files are kept.
Usage: python3 fuzz/seed.py [CORPUS_DIR]   (default: fuzz/corpus next to this script)
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTDATA = HERE.parent / "protocols" / "bolt" / "testdata"


def frames() -> list[bytes]:
    found = sorted(TESTDATA.glob("*/*.bin"))
    if not found:
        sys.exit(f"no captured frames under {TESTDATA}")
    return [p.read_bytes() for p in found]


def v1_parts(frame: bytes) -> dict:
    """The fields of a v1 frame (README: request fixed part 22 bytes, response 20)."""
    assert frame[0] == 1, "captured frames are Bolt v1"
    response = frame[1] == 0
    fixed = 20 if response else 22
    tos_len = 2 if response else 4
    class_len, header_len, content_len = struct.unpack_from(">HHI", frame, 10 + tos_len)
    class_at = fixed
    header_at = class_at + class_len
    content_at = header_at + header_len
    assert content_at + content_len == len(frame)
    return {
        "head": frame[1:10],  # type, cmdCode, ver2, id, codec
        "tos": frame[10 : 10 + tos_len],
        "lens": frame[10 + tos_len : fixed],
        "id": struct.unpack_from(">I", frame, 5)[0],
        "timeout_or_status": int.from_bytes(frame[10 : 10 + tos_len], "big"),
        "flag": 0x40 if not response else 0x41,
        "class": frame[class_at:header_at],
        "headers": frame[header_at:content_at],
        "content": frame[content_at:],
    }


def to_v2(frame: bytes, crc: bool) -> bytes:
    """The same frame as Bolt v2: ver1 after the protocol byte, switch after the codec."""
    p = v1_parts(frame)
    ver1, switch = (2, 1) if crc else (1, 0)
    out = (
        bytes([2, ver1])
        + p["head"]
        + bytes([switch])
        + p["tos"]
        + p["lens"]
        + p["class"]
        + p["headers"]
        + p["content"]
    )
    if crc:
        out += struct.pack(">I", zlib.crc32(out) & 0xFFFFFFFF)
    return out


def decode_result(p: dict, drain: int) -> bytes:
    h, c = p["headers"], p["content"]
    return (
        struct.pack(">I", len(h))
        + h
        + struct.pack(">BQIII", p["flag"], p["id"], p["timeout_or_status"], drain, len(c))
        + c
    )


def host_command(p: dict) -> bytes:
    h, c = p["headers"], p["content"]
    return (
        struct.pack(">I", len(h))
        + h
        + struct.pack(">BQQII", p["flag"], p["id"] + 1, p["id"], p["timeout_or_status"], len(c))
        + c
    )


def encode_result(p: dict, frame: bytes) -> bytes:
    return struct.pack(">IBQII", 0, p["flag"], p["id"], p["timeout_or_status"], len(frame)) + frame


def pairs(kv: list[tuple[bytes, bytes]]) -> bytes:
    out = struct.pack("<I", len(kv))
    for k, v in kv:
        out += struct.pack("<II", len(k), len(v))
    for k, v in kv:
        out += k + b"\0" + v + b"\0"
    return out


def seeds() -> dict[str, list[bytes]]:
    bolt, abi = [], []
    captured = frames()
    for frame in captured:
        bolt += [frame, to_v2(frame, crc=False), to_v2(frame, crc=True)]
        p = v1_parts(frame)
        abi += [p["headers"], decode_result(p, len(frame)), host_command(p), encode_result(p, frame)]
    bolt.append(captured[0] + captured[-1])
    abi.append(pairs([(b"protocol", b"x-bolt"), (b"max_frame_bytes", b"1048576")]))
    return {"bolt_decode": bolt, "abi_layouts": abi, "guest_memory": []}


def main() -> None:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    for target, items in seeds().items():
        d = corpus / target
        d.mkdir(parents=True, exist_ok=True)
        for item in items:
            (d / ("seed-" + hashlib.sha1(item).hexdigest())).write_bytes(item)
        print(f"{target}: {len(items)} seeds in {d} ({len(list(d.iterdir()))} files)")


if __name__ == "__main__":
    main()
