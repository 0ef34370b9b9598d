"""The documentation site (mkdocs.yml, docs/) and the README that points into it: the site builds
with --strict, a broken link, a missing anchor, a page left out of the nav or a missing generated
table fails that build, and the README stays a short front door whose links all land."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = DOCS / "generated"
README_MAX_LINES = 200


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site``, its output captured. Never -q: it
    hides the warnings that --strict turns into a failure."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


class _Loader(yaml.SafeLoader):
    """Reads mkdocs.yml, whose ``!relative`` tag safe_load does not know."""


_Loader.add_constructor("!relative", lambda loader, node: loader.construct_scalar(node))


def _nav_pages(nav: list) -> set[str]:
    pages: set[str] = set()
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages |= _nav_pages(value) if isinstance(value, list) else {value}
    return pages


def test_site__builds_strictly(tmp_path):
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "sweep" / "index.html").is_file()


def test_every_page_under_docs__is_in_the_nav():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)
    pages = {
        path.relative_to(DOCS).as_posix()
        for path in DOCS.rglob("*.md")
        if GENERATED not in path.parents
    }
    assert pages == _nav_pages(config["nav"])


def test_every_generated_table__a_page_includes_exists():
    included = {
        match
        for page in DOCS.glob("*.md")
        for match in re.findall(r'^--8<-- "([^"]+)"$', page.read_text(), flags=re.M)
    }
    assert included, "no page includes a generated table"
    assert all(path.startswith("docs/generated/") for path in included), included
    assert {(ROOT / path).is_file() for path in included} == {True}


def _copy_site(tmp_path: Path) -> Path:
    """mkdocs.yml and docs/ copied into ``tmp_path``, to break; the copy's config path."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    return tmp_path / "mkdocs.yml"


def _leave_out_of_nav(config: Path) -> None:
    text = config.read_text()
    assert "  - Data: data.md\n" in text
    config.write_text(text.replace("  - Data: data.md\n", ""))


def _append(line: str):
    def breaks(config: Path) -> None:
        page = config.parent / "docs" / "sweep.md"
        page.write_text(page.read_text() + f"\n{line}\n")

    return breaks


def _remove_generated(config: Path) -> None:
    (config.parent / "docs" / "generated" / "bench-cpu.md").unlink()


@pytest.mark.parametrize(
    ("breaks", "says"),
    [
        (_leave_out_of_nav, 'not included in the "nav" configuration'),
        (_append("[gone](no-such-page.md)"), "the target is not found"),
        (_append("[gone](metrics.md#no-such-heading)"), "does not contain an anchor"),
        (_append("[gone](#no-such-heading)"), "there is no such anchor on this page"),
        (_remove_generated, "Snippet at path 'docs/generated/bench-cpu.md' could not be found"),
    ],
    ids=[
        "page-left-out-of-nav",
        "broken-link",
        "missing-anchor",
        "missing-local-anchor",
        "missing-generated-table",
    ],
)
def test_strict_build__fails_on(tmp_path, breaks, says):
    config = _copy_site(tmp_path)
    # the copy builds as it is, so the failure below is the break's
    assert _build(config, tmp_path / "intact").returncode == 0
    breaks(config)
    result = _build(config, tmp_path / "broken")
    assert result.returncode != 0
    assert says in result.stdout + result.stderr


def test_readme__is_at_most_200_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES


def _anchors(page: Path) -> set[str]:
    """The ids the site gives the headings of ``page`` (Python-Markdown's toc slugify), those of
    the generated files its snippet lines pull in included."""
    text = re.sub(
        r'^--8<-- "([^"]+)"$',
        lambda m: (ROOT / m.group(1)).read_text(),
        page.read_text(),
        flags=re.M,
    )
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # no code's comments
    headings = re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    slugs = (re.sub(r"[^\w\s-]", "", h.replace("`", "")).strip().lower() for h in headings)
    return {re.sub(r"[-\s]+", "-", slug) for slug in slugs}


def test_readme__every_relative_link_lands():
    """mkdocs checks the site's links; the README's, read on GitHub, are checked here."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert any(t.startswith("docs/") and t.endswith(".md") for t in relative)
    missing = [t for t in relative if not (ROOT / t.split("#")[0]).is_file()]
    assert missing == []
    anchored = [t.split("#") for t in relative if "#" in t]
    assert anchored, "the README links no section of a page"
    assert [(p, a) for p, a in anchored if a not in _anchors(ROOT / p)] == []


def test_anchors__match_the_ids_mkdocs_gives(tmp_path):
    """The slugs ``_anchors`` computes are the ids in the built page, so the README check above
    checks what GitHub and the site link to."""
    assert _build(ROOT / "mkdocs.yml", tmp_path / "site").returncode == 0
    for page in ("sweep", "several-machines"):
        html = (tmp_path / "site" / page / "index.html").read_text()
        assert _anchors(DOCS / f"{page}.md") == set(re.findall(r'<h[1-6] id="([^"]+)"', html))


def test_ci__builds_the_site_strictly():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs: .*\n\t.*mkdocs build --strict", makefile, flags=re.M)
    assert "make docs" in (ROOT / ".ci" / "run").read_text()
