"""``/v1/feedback`` over the in-process backend (real uvicorn, real HTTP client): marks are
stored with what they were made on, survive a restart and a swap, export as the labels CSV the
relabel job reads, and bad ids, bodies and tokens are answered 4xx."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from echoseek.errors import EchoseekError, InputError
from echoseek.index.publish import read_latest
from echoseek.index.update import add_vectors
from echoseek.ingest.labels import read_labels_csv
from echoseek.jobs import feedback_export
from echoseek.service.config import ServiceConfig
from echoseek.service.feedback import CSV_COLUMNS, FeedbackLog, Mark, parse_log
from tests.service.conftest import PIXELS
from tests.service.test_http import ADMIN, SEARCH, TOKENS, assert_error, serve_local

AS_SEARCH = {"Authorization": f"Bearer {SEARCH}"}
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}


def mark(item_id: int, label: int, which: str = "positive", query: str = "item:5") -> dict:  # type: ignore[type-arg]
    return {"id": item_id, "label": label, "mark": which, "query": query}


def test_marks_persist_across_a_restart_and_a_swap(index_root_copy: Path, tmp_path: Path) -> None:
    cfg = ServiceConfig(index=str(index_root_copy), pixel_size=PIXELS)
    first = read_latest(index_root_copy)
    running = serve_local(cfg, env=TOKENS)
    try:
        with httpx.Client(base_url=running.url, headers=AS_SEARCH, timeout=30) as c:
            item = c.get("/v1/items/7").json()["item"]
            other = c.get("/v1/items/9").json()["item"]
            r = c.post("/v1/feedback", json=mark(7, 1))
            assert r.status_code == 200, r.text
            stored = r.json()["mark"]
            assert stored["item"] == item and stored["label"] == 1 and stored["id"] == 7
            assert stored["index_version"] == first and stored["model"] == "pixels"
            assert stored["query"] == "item:5" and r.json()["count"] == 1
            assert c.post("/v1/feedback", json=mark(9, 0, "negative")).json()["count"] == 2
    finally:
        running.stop()

    add_vectors(index_root_copy, np.ones((3, 64), np.float32), ids=[f"b:{i}" for i in range(3)])
    running = serve_local(cfg, env=TOKENS)  # a restart
    try:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            asked = {"item": [item, other, "no-such-item"]}
            marks = c.get("/v1/feedback/marks", params=asked, headers=AS_SEARCH)
            assert set(marks.json()["marks"]) == {item, other} and marks.json()["count"] == 2
            swapped = c.post("/v1/admin/index", json={"version": "latest"}, headers=AS_ADMIN)
            assert swapped.json()["version"] != first
            c.post("/v1/feedback", json=mark(7, 0, "negative"), headers=AS_SEARCH)
            latest = c.get("/v1/feedback/marks", params={"item": item}, headers=AS_SEARCH).json()
            assert latest["marks"][item]["label"] == 0 and latest["count"] == 3
            assert latest["marks"][item]["index_version"] == swapped.json()["version"]
            export = c.get("/v1/feedback", headers=AS_ADMIN)
            cli = feedback_export.Config(source=running.url, output=str(tmp_path / "cli.csv"))
            with pytest.raises(EchoseekError, match="401"):
                feedback_export.run(cli)
            cli.token = ADMIN
            assert feedback_export.run(cli)["marks"] == 3
    finally:
        running.stop()
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(export.text.splitlines()))
    assert tuple(rows[0]) == CSV_COLUMNS and (tmp_path / "cli.csv").read_text() == export.text
    assert [(r["id"], r["label"], r["mark"]) for r in rows] == [
        ("7", "1", "positive"),
        ("9", "0", "negative"),
        ("7", "0", "negative"),
    ]
    (tmp_path / "export.csv").write_text(export.text)  # the relabel job's reader takes it
    keyed = read_labels_csv(tmp_path / "export.csv", keys=("item",))
    assert [(key, label) for _, key, label in keyed] == [(r["item"], int(r["label"])) for r in rows]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (mark(10_000, 1), 404, "not in index version"),
        (mark(-1, 1), 404, "not in index version"),
        (mark(3, 1, "maybe"), 422, "mark"),
        ({"id": 3, "label": "1", "mark": "positive"}, 422, "label"),
        ({"id": 3, "label": 2**63, "mark": "positive"}, 422, "label"),
        ({"id": 3, "mark": "positive"}, 422, "label"),
        ({**mark(3, 1), "path": "/etc/passwd"}, 422, "path"),
        (mark(3, 1, query="q" * 300), 422, "query"),
    ],
)
def test_bad_marks_get_4xx_and_store_nothing(  # type: ignore[no-untyped-def]
    index_root_copy, body, status, needle
) -> None:
    cfg = ServiceConfig(index=str(index_root_copy), pixel_size=PIXELS)
    running = serve_local(cfg)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            assert_error(c.post("/v1/feedback", json=body), status, needle)
            assert c.get("/v1/feedback/marks").json() == {"marks": {}, "count": 0}
    finally:
        running.stop()
    assert not (index_root_copy / "feedback.jsonl").exists()


def test_scopes_and_limits(index_root_copy: Path) -> None:
    cfg = ServiceConfig(index=str(index_root_copy), pixel_size=PIXELS)
    running = serve_local(cfg, env=TOKENS)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            assert_error(c.post("/v1/feedback", json=mark(3, 1)), 401, "Bearer")
            assert_error(c.get("/v1/feedback/marks", params={"item": "a"}), 401, "Bearer")
            assert_error(c.get("/v1/feedback", headers=AS_SEARCH), 403, "admin")
            assert c.get("/v1/feedback", headers=AS_ADMIN).text == ",".join(CSV_COLUMNS) + "\n"
            items = {"item": [str(i) for i in range(1001)]}
            many = c.get("/v1/feedback/marks", params=items, headers=AS_SEARCH)
            assert_error(many, 400, "at most 1000 items")
            bad = c.get("/v1/feedback/marks", params={"item": "x" * 300}, headers=AS_SEARCH)
            assert bad.status_code == 422
    finally:
        running.stop()


def test_concurrent_appends_keep_every_line_whole(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback.jsonl")
    record = Mark("item-x" * 40, 1, "positive", 1, "q" * 200, "v1", "pixels", "ab" * 32, "t")

    def write(n: int) -> None:
        for i in range(50):
            log.append(Mark(**{**record.__dict__, "id": n * 1000 + i}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    marks = log.read()
    assert sorted(m.id for m in marks) == sorted(n * 1000 + i for n in range(4) for i in range(50))
    # a writer that died mid-line leaves a torn tail, which readers skip
    with open(log.path, "ab") as f:
        f.write(b'{"item": "torn')
    assert len(FeedbackLog(log.path).read()) == 200
    # one reader over time: a torn tail is read once it is whole, a replaced file again
    with open(log.path, "ab") as f:
        f.write(b'", "x": 1}\n')  # the torn line's rest: now a corrupt line 201
    with pytest.raises(InputError, match=r"feedback.jsonl:201: not a feedback mark"):
        log.read()
    lines = log.path.read_bytes().split(b"\n")
    log.path.write_bytes(b"\n".join(lines[:3]) + b"\n")  # a new file (new inode)
    assert [m.id for m in log.read()] == [m.id for m in marks[:3]]
    log.append(record)
    assert len(log.read()) == 4 and log.read()[-1] == record
    first = log.path.read_bytes().split(b"\n")[0]
    with pytest.raises(InputError, match=r"feedback.jsonl:2: not a feedback mark"):
        parse_log(first + b"\nnot json\n", str(log.path))


def test_a_swap_to_a_version_of_another_model_embeds_queries_with_it(
    index_root_copy: Path, service_dataset: Path, tmp_path: Path
) -> None:
    """The loop's last step: the promoted model's index version is swapped in, and query
    images are embedded by that model from then on (the service follows the index's model)."""
    from echoseek.data.dataset import iter_batches
    from tests.service.conftest import frame, publish_model_version, random_model
    from tests.service.test_http import png_b64

    model = random_model(tmp_path / "model")
    rows = [r for b in iter_batches(service_dataset) for r in b.to_pylist()]
    running = serve_local(ServiceConfig(index=str(index_root_copy), pixel_size=PIXELS))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            query = {"image": png_b64(frame(service_dataset, 9)), "k": 3}
            assert c.post("/v1/search", json=query).json()["model"] == "pixels"
            publish_model_version(service_dataset, model, index_root_copy, tmp_path / "vectors")
            doc = c.post("/v1/admin/index", json={"version": "latest"}).json()
            assert doc["model"] == str(tmp_path / "model")
            after = c.post("/v1/search", json=query).json()
            assert after["model"] == str(tmp_path / "model")
            assert after["results"][0]["item"] == rows[9]["id"]  # embedded by the new model
            assert after["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    finally:
        running.stop()
