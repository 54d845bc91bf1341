#!/usr/bin/env python3
"""Import-layer check for the crates of this Cargo workspace.

For every workspace member it reads ``src/**/*.rs``, maps each file to its module, collects the
module's imports of other modules of the same package, and fails when

1. modules import each other in a cycle, or
2. a module imports one that ``layers.txt`` (next to the workspace's ``Cargo.toml``) puts above
   it.

What counts as an import of module ``B`` by module ``A``: a ``use`` (also ``pub use``) or a path
in code (``crate::b::f()``, ``super::b::X``, ``self::b::X``, ``b::X`` for a child module ``b``,
``<lib>::b::X`` in a binary of the same package) that names ``B`` or an item of ``B``. A name
that ``B``'s parent only re-exports (``pub use b::X`` in ``a.rs``) counts as an import of ``B``,
the module that defines it. ``mod b;`` declarations are structure, not imports. Comments, doc
comments and string literals are ignored; ``#[cfg(test)]`` code counts like any other code.

Modules are files: ``foo.rs`` (or ``foo/mod.rs``) is module ``foo`` and ``foo/bar.rs`` its
child ``foo::bar``. Inline ``mod x { .. }`` blocks belong to their file. ``lib.rs`` is the
package root; ``main.rs`` is module ``main`` and its children (``cli.rs``) sit beside it;
``bin/x.rs`` is module ``bin::x``.

Cycle rule: a child may use its own parent's items (``super::X``, the normal up-reference), and
a parent may use its children; that pair alone is never a cycle. Every other import is an edge,
and each set of modules that reach each other through edges (a strongly connected component) is
reported once, with every import inside it and the names that tie it.

Layer rule: ``layers.txt`` has a ``[<crate dir>]`` section per checked crate; each line is a
chain ``a, b > c > d``: ``a`` and ``b`` are above ``c``, which is above ``d`` (transitively
across lines). Entries of a chain are siblings (``upstream::pool > upstream::connection``). A
module may import modules below it or unordered with it, never one above it. Two modules are
compared where their paths part: ``upstream::inflight`` importing ``proxy`` compares
``upstream`` with ``proxy``; a module importing its own ancestor or descendant is not compared.
Unlisted modules may sit anywhere (they are still cycle-checked); listed modules that do not
exist (yet) are allowed.

Usage: ``python3 tools/check_layers.py [--root DIR] [--layers FILE] [-v]``; exit status 0 when
clean, 1 when a cycle or layer violation is found, 2 for a bad ``layers.txt`` or workspace.
"""

from __future__ import annotations

import argparse
import functools
import glob
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Source text → tokens


@dataclass(frozen=True)
class Token:
    """An identifier (``kind == "id"``) or a punctuation token (``::`` or one character)."""

    kind: str
    text: str
    line: int


_RAW_STRING = re.compile(r'b?r(#*)"')
_CHAR_LITERAL = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]{1,8}\}|.)|[^\\'\n])'")


def strip_comments_and_literals(text: str) -> str:
    """Blanks comments, string and character literals (keeping newlines, so lines still match).

    Lifetimes (``'a``) are kept; nested block comments are handled.
    """
    out: list[str] = []
    i, n = 0, len(text)

    def blank(s: str) -> str:
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(blank(text[i:end]))
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif (m := _RAW_STRING.match(text, i)) and not _ident_char_before(text, i):
            closing = '"' + m.group(1)
            end = text.find(closing, m.end())
            end = n if end < 0 else end + len(closing)
            out.append(blank(text[i:end]))
            i = end
        elif c == '"' or (text.startswith('b"', i) and not _ident_char_before(text, i)):
            j = i + (1 if c == '"' else 2)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i : j + 1]))
            i = j + 1
        elif c == "'" and (m := _CHAR_LITERAL.match(text, i)):
            out.append(blank(m.group(0)))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _ident_char_before(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")


_TOKEN = re.compile(r"(?P<id>(?:r#)?[A-Za-z_][A-Za-z0-9_]*)|(?P<path>::)|(?P<nl>\n)|(?P<p>\S)")


def tokenize(text: str) -> list[Token]:
    """Identifiers and punctuation of Rust source, comments and literals removed."""
    tokens: list[Token] = []
    line = 1
    for m in _TOKEN.finditer(strip_comments_and_literals(text)):
        kind = m.lastgroup
        if kind == "nl":
            line += 1
        elif kind == "id":
            tokens.append(Token("id", m.group().removeprefix("r#"), line))
        else:
            tokens.append(Token("p", m.group(), line))
    return tokens


# ---------------------------------------------------------------------------------------------
# Tokens → what one file declares and refers to


@dataclass(frozen=True)
class PathRef:
    """A path written in a file: ``segments`` as written, in inline scope ``scope``."""

    scope: tuple[str, ...]
    segments: tuple[str, ...]
    line: int
    binding: str | None = None  # the name a `use` binds (alias or last segment)
    glob: bool = False  # `use a::*`


@dataclass
class FileFacts:
    """What the parser finds in one file."""

    # Child module declarations `mod x;` (file modules) per inline scope.
    file_mods: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    # Inline modules `mod x { .. }` per inline scope.
    inline_mods: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    uses: list[PathRef] = field(default_factory=list)
    code_paths: list[PathRef] = field(default_factory=list)


def parse_file(tokens: list[Token]) -> FileFacts:
    """Collects mod declarations, `use` trees and paths in code, tracking inline `mod` scopes."""
    facts = FileFacts()
    scope: list[str] = []
    # Brace depth at which each inline module was opened.
    opened: list[int] = []
    depth = 0
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "p" and t.text == "{":
            depth += 1
        elif t.kind == "p" and t.text == "}":
            depth -= 1
            if opened and opened[-1] == depth:
                opened.pop()
                scope.pop()
        elif _is_id(t, "mod") and i + 2 < len(tokens) and tokens[i + 1].kind == "id":
            name, after = tokens[i + 1].text, tokens[i + 2]
            if after.text == ";":
                facts.file_mods.setdefault(tuple(scope), []).append(name)
                i += 3
                continue
            if after.text == "{":
                facts.inline_mods.setdefault(tuple(scope), set()).add(name)
                opened.append(depth)
                depth += 1
                scope.append(name)
                i += 3
                continue
        elif _is_id(t, "use") and not _follows_path_sep(tokens, i):
            refs, i = _parse_use(tokens, i + 1, tuple(scope))
            facts.uses.extend(refs)
            continue
        elif t.kind == "id" and not _follows_path_sep(tokens, i) and _next_is(tokens, i, "::"):
            segments, end = _read_path(tokens, i)
            facts.code_paths.append(PathRef(tuple(scope), tuple(segments), t.line))
            i = end
            continue
        i += 1
    return facts


def _is_id(t: Token, text: str) -> bool:
    return t.kind == "id" and t.text == text


def _next_is(tokens: list[Token], i: int, text: str) -> bool:
    return i + 1 < len(tokens) and tokens[i + 1].text == text


def _follows_path_sep(tokens: list[Token], i: int) -> bool:
    return i > 0 and tokens[i - 1].text in ("::", "$")  # `$crate` is a macro's crate root


def _read_path(tokens: list[Token], i: int) -> tuple[list[str], int]:
    """Reads `a::b::c` from token `i`; returns the segments and the index after them."""
    segments = [tokens[i].text]
    i += 1
    while i + 1 < len(tokens) and tokens[i].text == "::" and tokens[i + 1].kind == "id":
        segments.append(tokens[i + 1].text)
        i += 2
    return segments, i


def _parse_use(tokens: list[Token], i: int, scope: tuple[str, ...]) -> tuple[list[PathRef], int]:
    """Parses the use tree starting at token `i` up to its `;`."""
    refs: list[PathRef] = []
    if i < len(tokens) and tokens[i].text == "::":
        i += 1  # `use ::std::x`: an extern crate, resolved as such below.
    i = _parse_use_tree(tokens, i, [], scope, refs)
    while i < len(tokens) and tokens[i].text != ";":
        i += 1
    return refs, i + 1


def _parse_use_tree(
    tokens: list[Token],
    i: int,
    prefix: list[str],
    scope: tuple[str, ...],
    refs: list[PathRef],
) -> int:
    """Parses one use tree under `prefix` from token `i`; returns the index after it."""
    segments = list(prefix)
    while i < len(tokens):
        t = tokens[i]
        if t.kind == "id":
            segments.append(t.text)
            i += 1
            if i < len(tokens) and tokens[i].text == "::":
                i += 1
                continue
            binding = segments[-1]
            if i + 1 < len(tokens) and _is_id(tokens[i], "as"):
                binding = tokens[i + 1].text
                i += 2
            if segments[-1] == "self":
                segments.pop()
                if binding == "self":
                    binding = segments[-1] if segments else None
            refs.append(PathRef(scope, tuple(segments), t.line, binding))
            return i
        if t.text == "*":
            refs.append(PathRef(scope, tuple(segments), t.line, None, glob=True))
            return i + 1
        if t.text == "{":
            i += 1
            while i < len(tokens) and tokens[i].text != "}":
                after = _parse_use_tree(tokens, i, segments, scope, refs)
                i = after if after > i else i + 1  # skips `,` (and anything unexpected)
            return i + 1
        return i
    return i


# ---------------------------------------------------------------------------------------------
# Files → modules of one package


@dataclass
class Module:
    """One `.rs` file."""

    rel: str  # path under src/, e.g. "upstream/pool.rs"
    layer_path: tuple[str, ...]  # e.g. ("upstream", "pool"); () for lib.rs
    tree: str  # which crate root it belongs to (its root's `rel`)
    logical: tuple[str, ...]  # path inside that crate (from `crate::`)
    parent: str | None  # rel of the file that declares it
    facts: FileFacts


@dataclass
class Import:
    """Module `source` names `name` (None: the module itself) of module `target` at `line`."""

    source: str
    target: str
    name: str | None
    line: int


def layer_path_of(rel: str) -> tuple[str, ...]:
    """Module path of a file under src/ as the layer file names it."""
    parts = rel.removesuffix(".rs").split("/")
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return ()
    return tuple(parts)


def _children_dir(rel: str, is_root: bool) -> str:
    """Directory (under src/) that holds the child files of the module in `rel`."""
    directory = os.path.dirname(rel)
    if is_root or os.path.basename(rel) == "mod.rs":
        return directory
    return rel.removesuffix(".rs")


def _roots(src: Path) -> list[str]:
    roots = [r for r in ("lib.rs", "main.rs") if (src / r).is_file()]
    bin_dir = src / "bin"
    if bin_dir.is_dir():
        for p in sorted(bin_dir.iterdir()):
            if p.suffix == ".rs":
                roots.append(f"bin/{p.name}")
            elif (p / "main.rs").is_file():
                roots.append(f"bin/{p.name}/main.rs")
    return roots


class Package:
    """The modules of one workspace member and the imports between them."""

    def __init__(self, directory: Path, lib_name: str):
        self.directory = directory
        self.lib_name = lib_name
        self.modules: dict[str, Module] = {}
        # (tree, logical path) → module rel
        self._by_logical: dict[tuple[str, tuple[str, ...]], str] = {}
        self.unreached: list[str] = []
        self._load()
        self.imports = self._collect_imports()

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> None:
        src = self.directory / "src"
        for root in _roots(src):
            self._add(src, root, root, (), None, is_root=True)
        every = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.rs"))
        self.unreached = [rel for rel in every if rel not in self.modules]
        for rel in self.unreached:
            # Not declared by any `mod`: still checked, as if the library declared it.
            self._add(src, rel, "lib.rs", layer_path_of(rel), None, is_root=False)

    def _add(
        self,
        src: Path,
        rel: str,
        tree: str,
        logical: tuple[str, ...],
        parent: str | None,
        is_root: bool,
    ) -> None:
        if rel in self.modules:
            return
        text = (src / rel).read_text(encoding="utf-8")
        facts = parse_file(tokenize(text))
        module = Module(rel, layer_path_of(rel), tree, logical, parent, facts)
        self.modules[rel] = module
        self._by_logical[(tree, logical)] = rel
        base = _children_dir(rel, is_root)
        for scope, names in facts.file_mods.items():
            for name in names:
                directory = "/".join(p for p in (base, *scope) if p)
                for candidate in (f"{name}.rs", f"{name}/mod.rs"):
                    child = f"{directory}/{candidate}" if directory else candidate
                    if (src / child).is_file():
                        self._add(src, child, tree, logical + scope + (name,), rel, False)
                        break

    # -- resolution ---------------------------------------------------------------------------

    def _child_names(self, module: Module, scope: tuple[str, ...]) -> set[str]:
        names = set(module.facts.file_mods.get(scope, []))
        return names | module.facts.inline_mods.get(scope, set())

    def _absolute(self, module: Module, ref: PathRef) -> tuple[str, tuple[str, ...]] | None:
        """The (tree, logical path) a written path names, or None for other crates."""
        segments = list(ref.segments)
        here = module.logical + ref.scope
        if not segments:
            return None
        first = segments[0]
        if first == "crate":
            return module.tree, tuple(segments[1:])
        in_binary = module.tree != "lib.rs" and ("lib.rs", ()) in self._by_logical
        if first == self.lib_name and in_binary:
            return "lib.rs", tuple(segments[1:])
        if first in ("self", "super"):
            base = list(here)
            while segments and segments[0] in ("self", "super"):
                if segments.pop(0) == "super":
                    if not base:
                        return None
                    base.pop()
            return module.tree, tuple(base + segments)
        if first in self._child_names(module, ref.scope):
            return module.tree, tuple(here) + tuple(segments)
        return None

    def _locate(self, tree: str, logical: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
        """Splits a logical path into (module rel, rest) at its longest module prefix."""
        for cut in range(len(logical), -1, -1):
            rel = self._by_logical.get((tree, logical[:cut]))
            if rel is not None:
                return rel, logical[cut:]
        return None

    def _binding(self, module: Module, name: str) -> PathRef | None:
        """The `use` in `module` (top scope) that binds `name`, if any."""
        for ref in module.facts.uses:
            if ref.scope == () and ref.binding == name and not ref.glob:
                return ref
        return None

    def resolve(self, module: Module, ref: PathRef, hops: int = 0) -> tuple[str, str | None] | None:
        """The module (rel) and item name a path refers to, following re-exports."""
        absolute = self._absolute(module, ref)
        if absolute is None:
            return None
        located = self._locate(*absolute)
        if located is None:
            return None
        rel, rest = located
        name = rest[0] if rest else None
        target = self.modules[rel]
        if name is not None and hops < 16:
            via = self._binding(target, name)
            if via is not None and via is not ref:
                followed = self.resolve(target, via, hops + 1)
                if followed is not None:
                    return followed
        return rel, name

    def _collect_imports(self) -> list[Import]:
        imports = []
        for module in self.modules.values():
            for ref in module.facts.uses + module.facts.code_paths:
                resolved = self.resolve(module, ref)
                if resolved is None:
                    continue
                target, name = resolved
                if target != module.rel:
                    imports.append(Import(module.rel, target, name, ref.line))
        return imports

    def is_up_reference(self, imp: Import) -> bool:
        """An import of the importing module's own parent (the file that declares it)."""
        return self.modules[imp.source].parent == imp.target


# ---------------------------------------------------------------------------------------------
# Cycles


def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components with more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(found)


def find_cycles(package: Package) -> list[list[str]]:
    """Module sets that import each other, up-references to a module's own parent left out."""
    edges: dict[str, set[str]] = {}
    for imp in package.imports:
        if not package.is_up_reference(imp):
            edges.setdefault(imp.source, set()).add(imp.target)
    return strongly_connected(list(package.modules), edges)


def describe_imports(imports: list[Import]) -> str:
    """`Name (line 3), other (line 9)`: each name once, at its first line."""
    first: dict[str, int] = {}
    for imp in sorted(imports, key=lambda i: i.line):
        label = imp.name if imp.name is not None else "(the module)"
        first.setdefault(label, imp.line)
    return ", ".join(f"{name} (line {line})" for name, line in first.items())


def cycle_report(package: Package, component: list[str]) -> list[str]:
    members = set(component)
    by_edge: dict[tuple[str, str], list[Import]] = {}
    for imp in package.imports:
        if imp.source in members and imp.target in members and not package.is_up_reference(imp):
            by_edge.setdefault((imp.source, imp.target), []).append(imp)
    lines = [f"import cycle between {' ↔ '.join(component)}:"]
    for (source, target), imps in sorted(by_edge.items()):
        lines.append(f"{source} → {target}: {describe_imports(imps)}")
    return lines


# ---------------------------------------------------------------------------------------------
# Layers


class LayerError(Exception):
    """A malformed layer file."""


@dataclass
class Layers:
    """The declared order of one crate: `above[a]` = every entry above `a`."""

    entries: set[tuple[str, ...]] = field(default_factory=set)
    above: dict[tuple[str, ...], set[tuple[str, ...]]] = field(default_factory=dict)

    def is_above(self, a: tuple[str, ...], b: tuple[str, ...]) -> bool:
        """Whether `a` is declared (transitively) above `b`."""
        return a in self.above.get(b, set())


def parse_layers(text: str, source: str = "layers.txt") -> dict[str, Layers]:
    """Parses the layer file: `[crate dir]` sections of `a, b > c > d` chains."""
    sections: dict[str, Layers] = {}
    current: Layers | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip()
            if not name or name in sections:
                raise LayerError(f"{where}: empty or repeated section [{name}]")
            current = sections[name] = Layers()
            continue
        if current is None:
            raise LayerError(f"{where}: a chain before the first [crate] section")
        steps = [_parse_step(step, where) for step in line.split(">")]
        parents = {entry[:-1] for step in steps for entry in step}
        if len(parents) != 1:
            raise LayerError(f"{where}: the entries of one chain must be siblings: {line}")
        for step in steps:
            current.entries.update(step)
        for upper, lower in zip(steps, steps[1:]):
            for b in lower:
                current.above.setdefault(b, set()).update(upper)
    for name, layers in sections.items():
        _close(layers, name, source)
    return sections


_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(::[A-Za-z_][A-Za-z0-9_-]*)*")


def _parse_step(step: str, where: str) -> set[tuple[str, ...]]:
    names = [n.strip() for n in step.split(",")]
    if not all(_MODULE_PATH.fullmatch(n) for n in names):
        raise LayerError(f"{where}: not a module path list: {step.strip()!r}")
    return {tuple(n.split("::")) for n in names}


def _close(layers: Layers, name: str, source: str) -> None:
    """Makes `above` transitive; a module above itself means the order contradicts itself."""
    changed = True
    while changed:
        changed = False
        for b, ups in layers.above.items():
            extra = set().union(*(layers.above.get(a, set()) for a in ups)) - ups
            if extra:
                ups.update(extra)
                changed = True
    for b, ups in layers.above.items():
        if b in ups:
            raise LayerError(f"{source} [{name}]: {'::'.join(b)} is declared above itself")


Upward = tuple[Import, tuple[str, ...], tuple[str, ...]]


def upward_imports(package: Package, layers: Layers) -> list[Upward]:
    """Imports of a module declared above the importer: (import, importer's entry, target's)."""
    found = []
    for imp in package.imports:
        a = package.modules[imp.source].layer_path
        b = package.modules[imp.target].layer_path
        common = 0
        while common < min(len(a), len(b)) and a[common] == b[common]:
            common += 1
        if common == len(a) or common == len(b):
            continue  # one contains the other
        la, lb = a[: common + 1], b[: common + 1]
        if layers.is_above(lb, la):
            found.append((imp, la, lb))
    return found


def layer_report(package: Package, layers: Layers) -> list[str]:
    grouped: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], list[Import]] = {}
    for imp, la, lb in upward_imports(package, layers):
        grouped.setdefault((imp.source, imp.target, la, lb), []).append(imp)
    lines = []
    for (source, target, la, lb), imps in sorted(grouped.items()):
        lines.append(
            f"layer violation: {source} imports {target}, but {'::'.join(lb)} is above "
            f"{'::'.join(la)}: {describe_imports(imps)}"
        )
    return lines


# ---------------------------------------------------------------------------------------------
# Workspace


def workspace_members(root: Path) -> list[tuple[str, Path, str]]:
    """(member dir as written, path, library name) for each member of the workspace."""
    manifest = tomllib.loads((root / "Cargo.toml").read_text(encoding="utf-8"))
    members = []
    for pattern in manifest.get("workspace", {}).get("members", []):
        for match in sorted(glob.glob(str(root / pattern))):
            path = Path(match)
            cargo = path / "Cargo.toml"
            if not cargo.is_file():
                continue
            package = tomllib.loads(cargo.read_text(encoding="utf-8"))
            lib = package.get("lib", {}).get("name") or package["package"]["name"]
            members.append((path.relative_to(root).as_posix(), path, lib.replace("-", "_")))
    return members


def findings_for(package: Package, layers: Layers | None) -> list[list[str]]:
    """Every problem of one package: a headline, then detail lines."""
    findings = [cycle_report(package, c) for c in find_cycles(package)]
    if layers is not None:
        findings.extend([line] for line in layer_report(package, layers))
    return findings


def missing_entries(package: Package, layers: Layers) -> list[str]:
    """Listed modules that the package does not have (allowed: they may be written later)."""
    present = {m.layer_path for m in package.modules.values()}
    return sorted("::".join(e) for e in layers.entries if e not in present)


def check(root: Path, layers_file: Path, verbose: bool = False, out=sys.stdout) -> int:
    """Checks every member; prints findings; returns the exit status."""
    say = functools.partial(print, file=out)
    try:
        declared = parse_layers(layers_file.read_text(encoding="utf-8"), layers_file.name)
    except (OSError, LayerError) as e:
        say(f"layers: {e}")
        return 2
    members = workspace_members(root)
    unknown = sorted(set(declared) - {name for name, _, _ in members})
    if unknown:
        say(f"layers: {layers_file.name} names crates not in the workspace: {unknown}")
        return 2
    problems = 0
    for name, path, lib in members:
        package = Package(path, lib)
        layers = declared.get(name)
        for headline, *details in findings_for(package, layers):
            problems += 1
            say(f"{name}: {headline}")
            for detail in details:
                say(f"    {detail}")
        if verbose:
            missing = missing_entries(package, layers) if layers else []
            if missing:
                say(f"{name}: listed but not present (allowed): {', '.join(missing)}")
            say(f"{name}: {len(package.modules)} modules, {len(package.imports)} imports")
    if problems:
        say(f"layers: {problems} problem(s) found")
        return 1
    if verbose:
        say("layers: no import cycles, no upward imports")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).resolve().parent.parent
    parser.add_argument(
        "--root", type=Path, default=here, help="workspace root (default: this repository)"
    )
    parser.add_argument("--layers", type=Path, help="layer file (default: ROOT/layers.txt)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print what was checked")
    args = parser.parse_args(argv)
    return check(args.root, args.layers or args.root / "layers.txt", args.verbose)


if __name__ == "__main__":
    sys.exit(main())
