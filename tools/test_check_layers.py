"""Tests of check_layers.py on small fake workspaces written to a temporary directory.

Run from the repository root: ``python3 -m unittest tools/test_check_layers.py``.
"""

import io
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_layers  # noqa: E402  (needs the path above)


class FakeWorkspace:
    """A workspace with one crate `app` (directory `app/`) whose files are given as a dict."""

    def __init__(self, files: dict[str, str], layers: str = ""):
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        self._write("Cargo.toml", '[workspace]\nmembers = ["app"]\n')
        self._write("app/Cargo.toml", '[package]\nname = "app"\n')
        for rel, text in files.items():
            self._write(f"app/src/{rel}", text)
        self._write("layers.txt", layers)

    def _write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def check(self) -> tuple[int, str]:
        out = io.StringIO()
        status = check_layers.check(self.root, self.root / "layers.txt", out=out)
        return status, out.getvalue()

    def package(self) -> check_layers.Package:
        return check_layers.Package(self.root / "app", "app")

    def close(self) -> None:
        self._tmp.cleanup()


LAYERS = """
    [app]
    top > middle > bottom
"""


class CheckerTest(unittest.TestCase):
    def workspace(self, files: dict[str, str], layers: str = LAYERS) -> FakeWorkspace:
        ws = FakeWorkspace(files, layers)
        self.addCleanup(ws.close)
        return ws

    def test_a_clean_tree_passes(self):
        ws = self.workspace(
            {
                "lib.rs": "pub mod top;\npub mod middle;\npub mod bottom;\npub use top::Top;\n",
                "top.rs": "use crate::middle::Middle;\npub struct Top(Middle);\n",
                "middle.rs": "pub struct Middle(crate::bottom::Bottom);\n",
                "bottom.rs": "pub struct Bottom;\n",
            }
        )
        self.assertEqual(ws.check(), (0, ""))

    def test_a_cycle_is_reported_with_the_names_that_tie_it(self):
        ws = self.workspace(
            {
                "lib.rs": "mod a;\nmod b;\nmod c;\n",
                "a.rs": "use crate::b::{Bee, helper};\npub struct Ay;\n",
                "b.rs": "pub struct Bee;\npub fn helper() { crate::c::run(); }\n",
                "c.rs": "pub fn run() {\n    let _ = super::a::Ay;\n}\n",
            },
            layers="",
        )
        status, out = ws.check()
        self.assertEqual(status, 1, out)
        self.assertIn("import cycle between a.rs ↔ b.rs ↔ c.rs", out)
        self.assertIn("a.rs → b.rs: Bee (line 1), helper (line 1)", out)
        self.assertIn("b.rs → c.rs: run (line 2)", out)
        self.assertIn("c.rs → a.rs: Ay (line 2)", out)

    def test_an_upward_import_is_reported(self):
        ws = self.workspace(
            {
                "lib.rs": "mod top;\nmod middle;\nmod bottom;\n",
                "top.rs": "pub struct Top;\n",
                "middle.rs": "pub struct Middle;\n",
                "bottom.rs": "use crate::top::Top;\n",
            }
        )
        status, out = ws.check()
        self.assertEqual(status, 1, out)
        self.assertIn(
            "layer violation: bottom.rs imports top.rs, but top is above bottom: Top (line 1)", out
        )

    def test_a_child_using_its_parent_is_not_a_cycle(self):
        ws = self.workspace(
            {
                "lib.rs": "mod config;\n",
                "config.rs": "mod codec;\nmod error;\npub use codec::Codec;\npub struct Context;\n",
                "config/codec.rs": """\
                    use super::error::Error;
                    use super::Context;
                    pub struct Codec;
                """,
                "config/error.rs": "pub struct Error;\n",
            },
            layers="",
        )
        self.assertEqual(ws.check(), (0, ""))

    def test_a_cycle_through_a_parents_re_export_is_found(self):
        # `crate::up::Conn` is defined in up/conn.rs; the cycle runs worker → up/conn → worker.
        ws = self.workspace(
            {
                "lib.rs": "mod up;\nmod worker;\n",
                "up.rs": "mod conn;\npub use conn::Conn;\n",
                "up/conn.rs": "pub struct Conn(crate::worker::Codec);\n",
                "worker.rs": "use crate::up::Conn;\npub struct Codec;\n",
            },
            layers="",
        )
        status, out = ws.check()
        self.assertEqual(status, 1, out)
        self.assertIn("import cycle between up/conn.rs ↔ worker.rs", out)

    def test_sub_module_order_compares_siblings_where_paths_part(self):
        layers = """
            [app]
            proxy > up
            up::pool > up::conn
        """
        ws = self.workspace(
            {
                "lib.rs": "mod proxy;\nmod up;\n",
                "proxy.rs": "pub struct Proxy;\n",
                "up.rs": "mod conn;\nmod pool;\npub struct Shared;\n",
                "up/pool.rs": "use super::conn::Conn;\nuse super::Shared;\n",
                "up/conn.rs": """\
                    pub struct Conn;
                    fn f() { let _ = crate::proxy::Proxy; let _ = super::pool::X; }
                """,
            },
            layers,
        )
        status, out = ws.check()
        self.assertEqual(status, 1, out)
        self.assertIn("up/conn.rs imports proxy.rs, but proxy is above up", out)
        self.assertIn("up/conn.rs imports up/pool.rs, but up::pool is above up::conn", out)
        self.assertNotIn("up/pool.rs imports", out, "downward and parent imports are fine")

    def test_listed_modules_that_do_not_exist_are_allowed(self):
        ws = self.workspace(
            {"lib.rs": "mod bottom;\n", "bottom.rs": ""},
            layers="[app]\ntop > not_written_yet > bottom\n",
        )
        self.assertEqual(ws.check(), (0, ""))

    def test_comments_strings_and_other_crates_are_not_imports(self):
        ws = self.workspace(
            {
                "lib.rs": "mod top;\nmod bottom;\n",
                "top.rs": "pub struct Top;\n",
                "bottom.rs": """\
                    //! See [`crate::top::Top`].
                    /* use crate::top::Top; /* nested */ still a comment */
                    use std::fmt;
                    const S: &str = "crate::top::Top";
                    const R: &str = r#"use crate::top::Top;"#;
                    fn f<'a>(x: &'a str) -> char { let _ = x; '"' }
                """,
            }
        )
        self.assertEqual(ws.package().imports, [])
        self.assertEqual(ws.check(), (0, ""))

    def test_super_inside_an_inline_test_module_is_the_file_itself(self):
        ws = self.workspace(
            {
                "lib.rs": "mod top;\nmod bottom;\n",
                "top.rs": "pub struct Top;\n",
                "bottom.rs": """\
                    pub struct B;
                    #[cfg(test)]
                    mod tests {
                        use super::*;
                        use super::super::top::Top;
                    }
                    fn after_the_block() { let _ = super::top::run(); }
                """,
            }
        )
        imports = [(i.source, i.target, i.name, i.line) for i in ws.package().imports]
        self.assertEqual(
            imports, [("bottom.rs", "top.rs", "Top", 5), ("bottom.rs", "top.rs", "run", 7)]
        )

    def test_a_binary_reaches_the_library_by_its_crate_name(self):
        ws = self.workspace(
            {
                "lib.rs": "pub mod top;\npub mod bottom;\n",
                "top.rs": "pub fn run() {}\n",
                "bottom.rs": "",
                "main.rs": "mod cli;\nfn main() { cli::main() }\n",
                "cli.rs": "use app::top;\npub fn main() { top::run(); app::bottom::f(); }\n",
            },
            layers="[app]\nmain, cli > top > bottom\n",
        )
        imports = sorted((i.source, i.target) for i in ws.package().imports)
        self.assertEqual(
            imports, [("cli.rs", "bottom.rs"), ("cli.rs", "top.rs"), ("main.rs", "cli.rs")]
        )
        self.assertEqual(ws.check(), (0, ""))

    def test_bad_layer_files_are_refused(self):
        refused = ("a > b\n", "[app]\na > b\nb > a\n", "[app]\nx::a > b\n", "[app]\na >> b\n")
        for text in refused:
            with self.subTest(text=text):
                with self.assertRaises(check_layers.LayerError):
                    check_layers.parse_layers(text)
        ws = self.workspace({"lib.rs": ""}, layers="[nope]\na > b\n")
        status, out = ws.check()
        self.assertEqual(status, 2, out)
        self.assertIn("nope", out)


if __name__ == "__main__":
    unittest.main()
