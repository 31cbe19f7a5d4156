"""Comments and documents cite only what a clone has: the repository's `docs/` (each of whose sections
names its public source) or a public standard named in place (RFC, ISO/IEC, H.264, a draft).

Checked in every tracked source and document file:
- no path to the sibling folder of notes these files were first written from;
- no "issue N" (a comment states the requirement itself, not where it was asked for);
- every section sign names its document, on its own line or one of the two before it, and a
  `<name>.md §N` resolves to a file in the repository with a heading for that section. In `docs/`
  a bare section sign means the page's own section.
- every `type: ignore[code]` comment in what mypy checks (the packages and tests/) names its reason
  after it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = (".py", ".md", ".yaml", ".yml", ".html", ".js", ".toml")
SHARED_NOTES = re.compile(r"\.\./" + "shared|" + "shared" + r"/docs")
ISSUE_REF = re.compile(r"\bissues? #?\d+\b", re.IGNORECASE)
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)")
DOC_PATH = re.compile(r"[\w./-]+\.md\b")
PUBLIC_SPEC = re.compile(r"RFC \d+|ISO/IEC [\d-]+|H\.264|VP9 spec|draft-[\w-]+|\"Encapsulation of Opus in ISO BMFF\"")
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?(.*)$")  # spelt so that this line is no match
MYPY_PACKAGES = ("broker/", "ingress/", "schemas/", "functions/", "localrun/", "deploy/", "wtpulsar/",
                 "audit/", "clients/", "realpulsar/", "bench/", "tests/")


def _repo_files() -> list[str]:
    """The tracked files; without git (an exported tree), every file outside the ignored folders."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts)]
    return out.split()


def tracked_text_files() -> list[str]:
    return [f for f in _repo_files() if f.endswith(TEXT_SUFFIXES) and not f.endswith("_pb2.py")
            and f != "tests/test_repo_hygiene.py" and (ROOT / f).is_file() and _is_utf8(ROOT / f)]


def _is_utf8(path: Path) -> bool:
    """Fuzz corpora hold deliberately undecodable inputs; they are data, not documents."""
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    return True


def resolve_doc(name: str, citing: str) -> Path | None:
    for candidate in (ROOT / name, ROOT / "docs" / name, (ROOT / citing).parent / name):
        if candidate.is_file():
            return candidate
    return None


def has_section(doc: Path, section: str) -> bool:
    heading = re.compile(rf"^#+\s+§?{re.escape(section)}(?![\d.]*\d)\b", re.MULTILINE)
    return bool(heading.search(doc.read_text(encoding="utf-8")))


def section_problems(path: str, lines: list[str]) -> list[str]:
    found: list[str] = []
    own_doc = path.startswith("docs/") and path.endswith(".md")
    for index, line in enumerate(lines):
        for match in SECTION.finditer(line):
            before = "\n".join([*lines[max(0, index - 2):index], line[: match.start()]])
            sources = list(DOC_PATH.finditer(before)) + list(PUBLIC_SPEC.finditer(before))
            where = f"{path}:{index + 1}"
            if not sources:
                if not own_doc:
                    found.append(f"{where}: {match.group(0)} names no document")
                elif not has_section(ROOT / path, match.group(1)):
                    found.append(f"{where}: {match.group(0)} is not a section of {path}")
                continue
            nearest = max(sources, key=lambda m: m.end())
            if not DOC_PATH.fullmatch(nearest.group(0)):
                continue  # a public standard, cited in place
            doc = resolve_doc(nearest.group(0), path)
            if doc is None:
                found.append(f"{where}: {nearest.group(0)} is not in the repository")
            elif not has_section(doc, match.group(1)):
                found.append(f"{where}: {nearest.group(0)} has no section {match.group(1)}")
    return found


def test_sources_cite_what_a_clone_has() -> None:
    problems: list[str] = []
    for path in tracked_text_files():
        lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if SHARED_NOTES.search(line):
                problems.append(f"{path}:{number}: cites the notes folder outside the repository")
            if ISSUE_REF.search(line):
                problems.append(f"{path}:{number}: cites an issue number instead of the requirement")
        problems += section_problems(path, lines)
    assert problems == []


def ignore_without_code_or_reason(line: str) -> bool:
    match = TYPE_IGNORE.search(line)
    return bool(match and (not match.group(1) or not re.match(r"\s+#\s*\S", match.group(2))))


def test_every_type_ignore_names_its_code_and_reason() -> None:
    problems = []
    for path in tracked_text_files():
        if not (path.endswith(".py") and path.startswith(MYPY_PACKAGES)):
            continue
        for number, line in enumerate((ROOT / path).read_text(encoding="utf-8").splitlines(), 1):
            if ignore_without_code_or_reason(line):
                problems.append(f"{path}:{number}: {line.strip()}")
    assert problems == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The section check is not vacuous: it flags a bare sign, an unknown page and a missing section."""
    bad = ["see (§2.2)", "see docs/no-such-page.md §1", "see docs/pulsar-functions.md §99",
           "see docs/pulsar-functions.md §2.2 and RFC 9297 §3.2"]
    assert [len(section_problems("x.py", [line])) for line in bad] == [1, 1, 1, 0]
    assert ISSUE_REF.search("as issue 8 asks") and not ISSUE_REF.search("certificates valid for 13 days")
    assert SHARED_NOTES.search("../" + "shared/docs/x.md")
    ignore = "x = f()  # type" + ": ignore"
    assert [ignore_without_code_or_reason(line) for line in
            [ignore, ignore + "[attr-defined]", ignore + "[attr-defined]  # the stub lacks it", "x = f()"]] \
        == [True, True, False, False]
