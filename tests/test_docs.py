"""The documentation stands alone and cannot go stale.

- README.md's results block equals what ``egakit.readme`` renders from the committed reports now;
- the generator states the world, commit and seeds of each table, and says when a report lacks a
  world fingerprint, came from a dirty checkout or from one seed;
- every relative link (and its ``#anchor``) in README.md and docs/*.md points to something that
  exists; the README's Python example runs;
- no tracked file cites design notes that are not in the repository.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from egakit import readme

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: Citations of design notes kept outside the repository.
OUTSIDE_CITATIONS = re.compile(r"SPEC §|NOTES\.md|\.\./shared|\bNOTES\b")
#: Files that may contain such strings legitimately (license texts, this test).
CITATION_EXEMPT = {"LICENSE", "tests/test_docs.py"}
MARKDOWN_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


# --------------------------------------------------------------------------- the results block


def test_readme_results_block_is_what_the_reports_give_now():
    assert readme.current_block(REPO / "README.md") == readme.render_block(root=REPO), (
        "README.md's results block is out of date: run `python -m egakit.readme`"
    )


def test_check_mode_exits_zero_on_the_committed_readme():
    done = subprocess.run([sys.executable, "-m", "egakit.readme", "--check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _table(commit: str, seeds: int, world_extra: dict) -> dict:
    metrics = {"recall@50": 0.05, "auc": 0.61, "ectr": 4.2, "erpm": 210.0, "psi": 0.018, "dev": 0.3}
    std = {name: (0.01 if seeds > 1 else 0.0) for name in metrics}
    row = {"system": "EGA-V1", "source": "oracle", "metrics": metrics, "std": std, "seeds": seeds}
    world = {"dir": "runs/w", "preset": "small", "seed": 3, "split": "test", "requests": 64, "K": 5, **world_extra}
    return {"rows": [row, {**row, "source": "evaluator"}], "world": world, "commit": commit}


@pytest.fixture
def fixture_repo(tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    reports.mkdir()
    clean = _table("0123456789abcdef0123456789abcdef01234567", 5, {"fingerprint": "f00dfeed" * 8})
    dirty = _table("fedcba9876543210fedcba9876543210fedcba98-dirty", 1, {})
    (reports / "table1.json").write_text(json.dumps(clean))
    (reports / "table2.json").write_text(json.dumps(dirty))
    (tmp_path / "README.md").write_text(f"# demo\n\nbefore\n\n{readme.BEGIN}\nold text\n{readme.END}\n\nafter\n")
    return tmp_path


def test_generator_states_world_commit_and_seeds(fixture_repo: Path):
    block = readme.render_block(fixture_repo / "reports", None, root=fixture_repo)
    table1, table2 = block.split("### ")[1:]
    assert "Measured on world `runs/w` (preset small, seed 3), 64 test requests; fingerprint `f00dfeedf00d`" in table1
    assert "commit `0123456789ab`;" in table1 and "5 seeds" in table1
    assert "uncommitted" not in table1 and "no world fingerprint" not in table1
    assert "4.2 ± 0.01" in table1 and "1.8 ± 1" in table1  # Ψ shown in percent, std scaled with it
    assert "no world fingerprint recorded" in table2
    assert "commit `fedcba987654` with uncommitted changes" in table2 and "; 1 seed." in table2
    assert "Source: `reports/table2.json`." in table2


def test_generator_renders_a_paired_study(fixture_repo: Path):
    pair = {"mean": 0.002, "std": 0.001, "set_aware_better_in": 3, "of": 3, "sign_flip_p": 0.25}
    study = {
        "world": "runs/w (small preset, seed 0)", "commit": "1234567890ab" * 3 + "cdef",
        "summary": {"seeds": [0, 1, 2], "oracle_auc": {"set_aware": {"mean": 0.65, "std": 0.002},
                                                       "point_wise_no_gcf": {"mean": 0.648, "std": 0.002},
                                                       "paired_difference": pair}},
    }
    (fixture_repo / "reports" / "set_aware_vs_pointwise.json").write_text(json.dumps(study))
    section = readme.render_block(fixture_repo / "reports", None, root=fixture_repo).split("### ")[-1]
    assert "Measured on world runs/w (small preset, seed 0); no world fingerprint recorded; commit `1234567890ab`; 3 seeds." in section
    assert "| AUC on the truth (oracle) | 0.6500 ± 0.0020 | 0.6480 ± 0.0020 | +0.0020 ± 0.0010 | 3 of 3 seeds | 0.250 |" in section


def test_rewrite_replaces_only_the_block(fixture_repo: Path):
    path = fixture_repo / "README.md"
    assert readme.rewrite(path, fixture_repo / "reports", None) is True
    text = path.read_text()
    assert text.startswith("# demo\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "old text" not in text and readme.current_block(path) == readme.render_block(fixture_repo / "reports", None, root=fixture_repo)
    assert readme.rewrite(path, fixture_repo / "reports", None) is False


def test_generator_renders_the_perf_summary(fixture_repo: Path):
    summary = {
        "device_name": "Some CPU", "torch": "2.13.0+cpu", "commit": "ab" * 20, "dirty": True,
        "inference_growth_exponent": 0.97, "latency": {"inference_memory_exponent": 0.92},
        "kernel_speedup": {"cluster_aggregate": 2.7}, "flops_measured_over_formula": {"a": 1.0, "b": 1.3},
        "paper_claims": [{"claim": "X is cheap", "holds": False}],
    }
    path = fixture_repo / "summary.json"
    path.write_text(json.dumps(summary))
    block = readme.render_block(fixture_repo / "reports", path, root=fixture_repo)
    perf = block.split("### ")[-1]
    assert "Measured on Some CPU, torch 2.13.0+cpu; commit `abababababab` with uncommitted changes" in perf
    assert "N^0.97 / N^0.92" in perf and "1 of 2 (module, forward or train) entries" in perf
    assert "| EGA-V1 claim: X is cheap | does not follow from the formulas |" in perf


def test_generator_errors_name_the_file(fixture_repo: Path):
    (fixture_repo / "reports" / "table1.json").write_text(json.dumps({"rows": [{"system": "x", "metrics": {"auc": 0.5}}]}))
    with pytest.raises(readme.ReadmeError, match=r"table1\.json: row 0 lacks 'source'"):
        readme.render_block(fixture_repo / "reports", None, root=fixture_repo)
    (fixture_repo / "README.md").write_text("no markers here\n")
    with pytest.raises(readme.ReadmeError, match="needs exactly one"):
        readme.current_block(fixture_repo / "README.md")


# --------------------------------------------------------------------------- links and examples


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces → '-'."""
    text = re.sub(r"`|\*\*|\*", "", heading).strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {github_anchor(h) for h in HEADING.findall(text)}


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    return [a or b for a, b in MARKDOWN_LINK.findall(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_to_existing_files_and_anchors(doc: Path):
    broken = []
    for target in _links(doc):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s):, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, "\n".join(broken)


def test_github_anchor_matches_githubs_rule():
    assert github_anchor("9. EGA-V2 (`egakit.v2`): planned, not yet implemented") == "9-ega-v2-egakitv2-planned-not-yet-implemented"
    assert github_anchor("3.3 AucFormer") == "33-aucformer"


def test_docs_exist_and_design_keeps_the_cited_section_numbers():
    design = (REPO / "docs" / "design.md").read_text()
    numbers = re.findall(r"^##+ (\d+(?:\.\d+)?)[. ]", design, re.MULTILINE)
    assert numbers == ["0", "1", "2", "3", "3.1", "3.2", "3.3", *map(str, range(4, 13))]


def test_readme_python_example_runs():
    blocks = PYTHON_BLOCK.findall((REPO / "README.md").read_text())
    assert blocks, "README.md has no python example"
    for code in blocks:
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]


# --------------------------------------------------------------------------- citations


def _tracked_files() -> list[str]:
    done = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return [f for f in done.stdout.splitlines() if f not in CITATION_EXEMPT]


def test_no_tracked_file_cites_notes_outside_the_repository():
    offenders = []
    for name in _tracked_files():
        path = REPO / name
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_CITATIONS.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not offenders, f"{len(offenders)} lines cite notes outside the repository:\n" + "\n".join(offenders[:40])


def test_a_table_whose_rows_come_from_two_worlds_is_withheld(tmp_path):
    from egakit.readme import mixed_worlds_line, render_block, system_worlds

    systems = tmp_path / "systems"
    systems.mkdir()
    for name, candidates in (("A", 1838.5), ("B", 3319.4)):
        (systems / f"{name.lower()}.json").write_text(json.dumps(
            {"system": name, "world": {"dir": "w", "preset": "small", "seed": 0, "candidates_mean": candidates}}))
    rows = [{"system": s, "source": "oracle", "metrics": {"auc": 0.5}, "std": {"auc": 0.0}, "seeds": 1} for s in "AB"]
    report = {"rows": rows, "world": {"dir": "w"}, "commit": "abc"}
    worlds = system_worlds(systems)
    line = mixed_worlds_line(report, worlds)
    assert line and "2 different worlds" in line and "1,838" in line and "3,319" in line
    assert mixed_worlds_line({"rows": rows[:1]}, worlds) is None
    (tmp_path / "table1.json").write_text(json.dumps(report))
    block = render_block(tmp_path, None, [("table1.json", "Table 1")], root=tmp_path)
    assert "Not shown" in block and "| A |" not in block
