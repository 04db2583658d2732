"""The board's rules, on the plain class (the Ray actor is exercised in test_serve.py and the
simulated-cluster test): sequence numbers, stale reports, the cluster document."""

from __future__ import annotations

import time

from echoseek.service.board import Board, cluster_document


def test_every_post_gets_a_higher_number_and_a_reset_forgets_replicas() -> None:
    board = Board()
    assert board.target() == (0, "")
    board.reset("v1")
    first = board.post("v2")
    assert board.target() == (first, "v2") and board.post("v3") > first
    board.report("ingress#a", {"role": "ingress", "group": None, "versions": ["v3"]})
    board.reset("v4")
    assert board.target()[1] == "v4" and board.target()[0] > first + 1
    assert board.snapshot()["replicas"] == []


def test_the_cluster_document_groups_live_replicas_and_their_state() -> None:
    board = Board()
    board.post("v2")
    row = {"node_id": "n1", "pid": 1, "resident_bytes": 10}
    board.report("ingress#a", {**row, "role": "ingress", "group": None, "versions": ["v2"]})
    board.report("s0#a", {**row, "role": "searcher", "group": 0, "versions": ["v1", "v2"]})
    board.report("s1#a", {**row, "role": "searcher", "group": 1, "versions": ["v1"]})
    board.report("s1#b", {**row, "role": "searcher", "group": 1, "versions": ["v2"]})
    board._reports["s1#b"]["seen"] = time.time() - 60  # a replica gone quiet (its node lost)
    doc = cluster_document(board.snapshot(stale_s=10), groups=2)
    assert doc["version"] == "v2" and [r["replica"] for r in doc["ingress"]] == ["ingress#a"]
    states = [[(r["replica"], r["state"]) for r in g["replicas"]] for g in doc["groups"]]
    assert states == [[("s0#a", "serving")], [("s1#a", "loading")]]
