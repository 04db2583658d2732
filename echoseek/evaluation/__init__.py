"""Evaluation: the ranking and representation metrics (:mod:`ranking`: pure numpy, the one
home of AP/mAP, AP@k, P@K, lift, RankMe…, importable by training), the team's retrieval
protocol (:mod:`retrieval`: query AP, leave-one-out mAP, P@K, lift@K of an embedding), the
corpus embedding it runs on (:mod:`corpus`) and approximate-search quality of an index version
(:mod:`ann`: k-recall@k against exact search, QPS, the tuned nprobe; results only, the job
publishes)."""
