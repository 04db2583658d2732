"""echoseek.index: sharded faiss IVF-PQ indexes — parameter choice, build, search, updates.

Nothing heavy is imported here: faiss, Ray and torch load only when a function needs them.
"""

from echoseek.index.build import build_index, fill_shard, fill_shards, plan_shards, train_stage
from echoseek.index.manifest import read_manifest, verify_files
from echoseek.index.merge import merge_topk
from echoseek.index.params import IndexParams, choose_params
from echoseek.index.publish import list_versions, read_latest, resolve_version_dir
from echoseek.index.reader import IndexReader, open_index
from echoseek.index.update import add_vectors, delete_ids, publish_search_defaults

__all__ = [
    "IndexParams",
    "IndexReader",
    "add_vectors",
    "build_index",
    "choose_params",
    "delete_ids",
    "fill_shard",
    "fill_shards",
    "list_versions",
    "merge_topk",
    "open_index",
    "plan_shards",
    "publish_search_defaults",
    "read_latest",
    "read_manifest",
    "resolve_version_dir",
    "train_stage",
    "verify_files",
]
