"""Evaluation: the team's retrieval protocol (:mod:`retrieval`: query AP, leave-one-out mAP,
P@K, lift@K of an embedding) and approximate-search quality of an index version (:mod:`ann`:
k-recall@k against exact search, QPS, nprobe tuning)."""
