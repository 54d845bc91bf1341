#!/usr/bin/env python3
"""Lists the imports and exports of proxy-wasm filter modules and checks the exports a host needs.

Usage: ``python3 filters/check_wasm.py [-v] FILE.wasm...``. For each module it checks that it
exports ``memory``, an ABI version marker (``proxy_abi_version_0_2_1`` or ``..._0_1_0``), an
allocator (``proxy_on_memory_allocate`` or ``malloc``), a start function (``_initialize`` or
``_start``) and ``proxy_on_context_create``; it prints one line per module, and with ``-v`` every
import (``module.name: (params) -> results``) and export. Exit status 1 when a check fails.
Reads the binary format directly (type, import and export sections); no dependencies.
"""

from __future__ import annotations

import sys
from pathlib import Path

VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref",
            0x6F: "externref"}
KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def name(self) -> str:
        n = self.uleb()
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def limits(self) -> None:
        flags = self.byte()
        self.uleb()
        if flags & 1:
            self.uleb()


def parse(data: bytes):
    if data[:4] != b"\0asm":
        raise ValueError("not a Wasm module")
    r = Reader(data, 8)
    types, imports, exports = [], [], []
    while r.pos < len(data):
        sid, size = r.byte(), r.uleb()
        end = r.pos + size
        if sid == 1:
            for _ in range(r.uleb()):
                assert r.byte() == 0x60
                params = [VALTYPES[r.byte()] for _ in range(r.uleb())]
                results = [VALTYPES[r.byte()] for _ in range(r.uleb())]
                types.append((params, results))
        elif sid == 2:
            for _ in range(r.uleb()):
                module, name, kind = r.name(), r.name(), r.byte()
                if kind == 0:
                    params, results = types[r.uleb()]
                    sig = f"({', '.join(params)}) -> ({', '.join(results)})"
                elif kind == 1:
                    r.byte()
                    r.limits()
                    sig = "table"
                elif kind == 2:
                    r.limits()
                    sig = "memory"
                elif kind == 3:
                    r.byte()
                    r.byte()
                    sig = "global"
                else:
                    raise ValueError(f"import kind {kind}")
                imports.append((module, name, sig))
        elif sid == 7:
            for _ in range(r.uleb()):
                name, kind = r.name(), r.byte()
                r.uleb()
                exports.append((name, KINDS.get(kind, str(kind))))
        r.pos = end
    return imports, exports


def check(path: Path, verbose: bool) -> bool:
    imports, exports = parse(path.read_bytes())
    names = {n for n, _ in exports}
    missing = []
    for need in (("memory",), ("proxy_abi_version_0_2_1", "proxy_abi_version_0_1_0"),
                 ("proxy_on_memory_allocate", "malloc"), ("_initialize", "_start"),
                 ("proxy_on_context_create",)):
        if not names.intersection(need):
            missing.append(" or ".join(need))
    abi = sorted(n for n in names if n.startswith("proxy_abi_version_"))
    status = "ok" if not missing else "MISSING " + ", ".join(missing)
    print(f"{path.name}: {status}; abi {', '.join(abi) or '-'}; "
          f"{len(imports)} imports, {len(exports)} exports")
    if verbose:
        for module, name, sig in imports:
            print(f"  import {module}.{name}: {sig}")
        for name, kind in exports:
            print(f"  export {name} ({kind})")
    return not missing


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    files = [Path(a) for a in argv if a != "-v"]
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    ok = all([check(f, verbose) for f in files])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
