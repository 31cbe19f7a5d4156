"""The page and its ES modules as the ingress serves them from package data (ingress/page.py): types,
headers, the whole module graph, and clear 404s for anything else."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from ingress.page import static_dir
from tests.ingress_support import FakePublisher, ingress

STATIC = Path(__file__).resolve().parent.parent / "ingress" / "static"
IMPORT = re.compile(r'^import (?:[^"]* from )?"\./([a-z0-9_]+\.js)";$', re.MULTILINE)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def module_graph(read: dict[str, str], name: str = "app.js") -> set[str]:
    """Every module app.js imports, directly or not (their `import … from "./x.js"` lines)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += IMPORT.findall(read[current])
    return seen


def test_the_page_and_every_module_it_imports_are_served_with_their_types(tmp_path: Path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher(), page=None) as h, aiohttp.ClientSession() as http:
            async with http.get(h.http_url + "/") as r:
                page = await r.text()
                assert r.status == 200 and r.content_type == "text/html"
                assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["Access-Control-Allow-Origin"] == "*"  # for the page opened from disk
            assert page == (STATIC / "live_client.html").read_text()
            assert '<script type="module" src="static/app.js"></script>' in page
            served: dict[str, str] = {}
            for name in sorted(p.name for p in STATIC.glob("*.js")):
                async with http.get(f"{h.http_url}/static/{name}") as r:
                    assert r.status == 200 and r.content_type == "text/javascript", name
                    assert r.headers["Cache-Control"] == "no-store" and r.headers["Access-Control-Allow-Origin"] == "*"
                    served[name] = await r.text()
                assert served[name] == (STATIC / name).read_text()
            # app.js reaches every module there is, and each one it imports is there
            assert module_graph(served) == set(served)

    run(main())


def test_anything_else_under_static_is_a_404_that_says_why(tmp_path: Path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher(), page=None) as h, aiohttp.ClientSession() as http:
            for path, words in [("/static/nosuch.js", "the page has no such file"),
                                ("/static/..%2Fpage.py", "not a file of the page"),
                                ("/static/page.py", "not a file of the page"),
                                ("/static/live_client.html", "not a file of the page"),
                                ("/static/App.js", "not a file of the page")]:
                async with http.get(h.http_url + path) as r:
                    assert r.status == 404 and words in await r.text(), path
            async with http.get(h.http_url + "/static/../ingress/page.py") as r:  # normalised by the client: /ingress/…
                assert r.status == 404

    run(main())


def test_a_configured_page_file_replaces_the_packaged_one_and_its_absence_is_explained(tmp_path: Path) -> None:
    page = tmp_path / "mine.html"

    async def main() -> None:
        async with ingress(tmp_path, FakePublisher(), page=page) as h, aiohttp.ClientSession() as http:
            async with http.get(h.http_url + "/") as r:
                assert r.status == 404 and f"live_client.html is not there yet ({page})" in await r.text()
            page.write_text("<html>mine</html>")
            async with http.get(h.http_url + "/") as r:
                assert r.status == 200 and await r.text() == "<html>mine</html>" and r.content_type == "text/html"
            async with http.get(h.http_url + "/static/app.js") as r:  # the modules still come from the package
                assert r.status == 200

    run(main())


def test_the_page_is_package_data() -> None:
    assert (static_dir() / "live_client.html").is_file() and (static_dir() / "app.js").is_file()


def test_the_modules_import_each_other_without_a_cycle() -> None:
    imports = {p.name: set(IMPORT.findall(p.read_text())) for p in STATIC.glob("*.js")}
    assert all(imported <= set(imports) for imported in imports.values()), imports
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for imported in sorted(imports[name]):
                visit(imported, (*path, name))
            done.add(name)

    for name in sorted(imports):
        visit(name, ())
    assert {"framing.js", "fmp4.js"} <= {name for name, imported in imports.items() if not imported}  # pure
