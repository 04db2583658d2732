"""``echoseek relabel`` and ``echoseek feedback export``: corrections become a new dataset
version (last mark wins, conflicts reported, provenance recorded), the source is never
edited, bad corrections publish nothing; a feedback log exports as the CSV relabel reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from echoseek.cli import main as cli
from echoseek.data.dataset import iter_batches, read_descriptor, shard_paths
from echoseek.errors import InputError
from echoseek.jobs import relabel
from echoseek.service.feedback import FeedbackLog, Mark
from echoseek.storage import sha256_file
from tests.datasets import ingested_stack, random_stack


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return ingested_stack(tmp_path, random_stack(8, 8, 10, seed=1), 6, shard_size=4)


def rows(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [r for b in iter_batches(path) for r in b.to_pylist()]


def snapshot(path: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(path.iterdir())}


def test_overrides_conflicts_and_provenance(dataset: Path, tmp_path: Path) -> None:
    before = snapshot(dataset)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(
        "item,label,mark\n"
        "d:000001,0,negative\n"  # 1 -> 0
        "d:000002,1,positive\n"  # 0 -> 1, then back: a conflict, the last mark wins
        "d:000002,0,negative\n"
        "d:000004,0,negative\n"  # already 0: marked, not changed
        "d:000007,1,positive\n"  # unlabelled -> 1
    )
    summary = relabel.run(
        relabel.Config(input=str(dataset), corrections=str(fixes), output=str(tmp_path / "r1"))
    )
    out = rows(tmp_path / "r1")
    src = rows(dataset)
    expected = {"d:000001": 0, "d:000002": 0, "d:000004": 0, "d:000007": 1}
    for new, old in zip(out, src, strict=True):
        assert new["label"] == expected.get(new["id"], old["label"])
        assert {k: v for k, v in new.items() if k != "label"} == {
            k: v for k, v in old.items() if k != "label"
        }  # every image byte and field but the label is kept
    assert summary["changed"] == 2 and summary["marks"] == 5 and summary["items_marked"] == 4
    assert summary["conflicts"] == 1
    assert summary["conflicting"] == [{"item": "d:000002", "labels": [1, 0]}]
    desc = read_descriptor(tmp_path / "r1")
    prov = desc["relabel"]
    assert prov["source_sha256"] == read_descriptor(dataset)["sha256"]
    assert prov["corrections_sha256"] == hashlib.sha256(fixes.read_bytes()).hexdigest()
    assert desc["source"]["kind"] == "relabel" and desc["labelled"] == 7
    assert desc["label_counts"] == {"0": 4, "1": 3}
    assert desc["sha256"] != read_descriptor(dataset)["sha256"]
    assert len(shard_paths(tmp_path / "r1")) == 3  # the source's shard size, checksums verified
    assert snapshot(dataset) == before  # the source is never edited


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("item,label\nd:000001,0\nnope,1\n", "fixes.csv:3: unknown id 'nope'"),
        ("item,label\nd:000001,zero\n", "fixes.csv:2: label 'zero' is not an integer"),
        ("frame,label\n1,0\n", "header has no key column (one of item, id"),
        ("", "labels file is empty"),
    ],
)
def test_bad_corrections_publish_nothing(
    dataset: Path, tmp_path: Path, text: str, needle: str
) -> None:
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(text)
    cfg = relabel.Config(input=str(dataset), corrections=str(fixes), output=str(tmp_path / "r1"))
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        relabel.run(cfg)
    assert not (tmp_path / "r1").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_relabel_never_writes_over_its_source(dataset: Path, tmp_path: Path) -> None:
    before = snapshot(dataset)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("id,label\nd:000001,0\n")  # the page's own column name works too
    cfg = relabel.Config(input=str(dataset), corrections=str(fixes), output=str(dataset))
    with pytest.raises(InputError, match="relabel never edits its source"):
        relabel.run(cfg)
    cfg.overwrite = True
    with pytest.raises(InputError, match="relabel never edits its source"):
        relabel.run(cfg)
    assert snapshot(dataset) == before


def test_feedback_log_export_and_relabel_from_the_cli(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "index"
    log = FeedbackLog(root / "feedback.jsonl")
    for item, label, which in [("d:000003", 0, "negative"), ("d:000008", 1, "positive")]:
        log.append(Mark(item, label, which, 3, "item:0", "v1", "pixels", "ab", "t"))
    assert cli(["feedback", "export", str(root), f"output={tmp_path / 'fb.csv'}"]) == 0
    assert "wrote 2 marks" in capsys.readouterr().out
    assert (tmp_path / "fb.csv").read_text().splitlines()[1].startswith("d:000003,0,negative,3,")
    code = cli(
        ["relabel", f"input={dataset}", f"corrections={tmp_path / 'fb.csv'}",
         f"output={tmp_path / 'r2'}"]
    )  # fmt: skip
    assert code == 0
    assert "2 of 10 labels changed by 2 marks of 2 items" in capsys.readouterr().out
    labels = {r["id"]: r["label"] for r in rows(tmp_path / "r2")}
    assert labels["d:000003"] == 0 and labels["d:000008"] == 1
    missing = ["feedback", "export", str(tmp_path / "none.jsonl"), f"output={tmp_path / 'x.csv'}"]
    assert cli(missing) == 2
    assert "feedback log not found" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
