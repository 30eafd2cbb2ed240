"""The book reads, commands compute: no chapter trains or generates a cohort at build time, every
chapter that needs precomputed figures finds them committed, and every page of the table of
contents exists with a title."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from stflib.report import chapters

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
# calls that take minutes on a fresh clone (a cohort to simulate, a model to train): commands only
SLOW_CALLS = ("default_cohort(", "load_cohort(", "train.run(", "stflib.train.run(", "simulate_cohort(", ".fit(")


def chapter_sources() -> list[Path]:
    return sorted(p for p in BOOK.rglob("*.py") if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("source", chapter_sources(), ids=lambda p: str(p.relative_to(BOOK)))
def test_no_chapter_computes_slowly_at_build_time(source):
    code = [line for line in source.read_text().splitlines() if not line.lstrip().startswith("#")]
    found = [call for call in SLOW_CALLS for line in code if call in line]
    assert not found, (f"{source.relative_to(ROOT)} calls {sorted(set(found))} at build time; compute it with "
                       "python -m stflib chapters and read the committed file")


@pytest.mark.parametrize("chapter", list(chapters.CHAPTERS))
def test_each_chapter_has_its_committed_results(chapter):
    folder = chapters.chapters_dir() / chapter
    assert (folder / "facts.json").is_file(), f"run python -m stflib chapters --chapter {chapter}"
    json.loads((folder / "facts.json").read_text())
    assert (BOOK / f"{chapter}.py").is_file(), f"{chapter} is not a chapter of the book"


def test_committed_results_are_small():
    sizes = {p.relative_to(ROOT): p.stat().st_size for p in chapters.chapters_dir().rglob("*") if p.is_file()}
    assert sizes and sum(sizes.values()) < 8 * 2**20, sizes
    assert max(sizes.values()) < 2 * 2**20, max(sizes, key=sizes.get)


def toc_files(node) -> list[str]:
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        for value in node.values():
            files += toc_files(value)
    elif isinstance(node, list):
        for item in node:
            files += toc_files(item)
    return files


def test_every_page_of_the_toc_exists_and_has_a_title():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    pages = [toc["root"], *toc_files(toc)]
    for page in pages:
        candidates = [ROOT / f"{page}{suffix}" for suffix in (".md", ".py")]
        source = next((c for c in candidates if c.is_file()), None)
        assert source is not None, f"{page}: no .md or .py source"
        assert re.search(r"^#? ?# \S", source.read_text(), flags=re.M), f"{page}: no title"
        if source.suffix == ".py":
            assert source.with_suffix(".ipynb").is_file(), f"{page}: not paired (make sync-notebooks)"


def test_glossary_defines_every_term_the_chapters_use():
    glossary = (BOOK / "glossary.md").read_text().lower()
    used = set()
    for source in [*chapter_sources(), *BOOK.rglob("*.md")]:
        used |= {t.lower() for t in re.findall(r"\{term\}`([^`<]+)`", source.read_text())}
    missing = [t for t in sorted(used) if f"\n{t}\n" not in glossary]
    assert not missing, f"terms used but not defined in book/glossary.md: {missing}"
