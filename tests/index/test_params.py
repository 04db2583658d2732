"""Parameter rules: Flat for small corpora, IVF-PQ sizes by the documented formulas."""

from __future__ import annotations

import math

import pytest

from echoseek.errors import ConfigError
from echoseek.index.params import (
    MAX_TRAIN,
    MIN_POINTS_PER_CENTROID,
    IndexParams,
    choose_m,
    choose_nlist,
    choose_params,
    choose_train_size,
    default_nprobe,
)


def test_small_corpus_is_flat() -> None:
    p = choose_params(500, 64)
    assert p.kind == "flat"
    assert p.factory == "IDMap,Flat"
    assert p.bytes_per_vector == 4 * 64 + 8


@pytest.mark.parametrize("n", [20_000, 1_000_000, 100_000_000])
def test_nlist_is_a_power_of_two_near_4_sqrt_n(n: int) -> None:
    nlist = choose_nlist(n)
    assert nlist & (nlist - 1) == 0
    assert 4 * math.sqrt(n) / 2 <= nlist <= 4 * math.sqrt(n) * 2
    assert nlist * 39 <= n


def test_nlist_capped_by_points_per_list() -> None:
    assert choose_nlist(12_000) * 39 <= 12_000


def test_ivfpq_factory_and_sizes() -> None:
    p = choose_params(1_000_000, 128)
    assert p.kind == "ivfpq"
    assert (p.nlist, p.m, p.nbits) == (4096, 32, 8)
    assert p.factory == "IVF4096,PQ32x8"
    assert p.bytes_per_vector == 32 + 8
    assert p.train_size == 64 * 4096
    assert p.nprobe == 64
    assert not p.hnsw_coarse


def test_huge_corpus_uses_hnsw_coarse_quantizer_and_capped_training() -> None:
    p = choose_params(100_000_000, 128)
    assert p.nlist == 1 << 15 and not p.hnsw_coarse
    big = choose_params(1_000_000_000, 128)
    assert big.hnsw_coarse and big.factory.startswith(f"IVF{big.nlist}_HNSW32,")
    assert big.nlist == 1 << 17 and big.train_size == MAX_TRAIN == 1 << 23


@pytest.mark.parametrize("exponent", [5, 6, 7, 8, 9])
@pytest.mark.parametrize("dim", [64, 128, 512])
def test_rule_is_consistent_at_every_scale(exponent: int, dim: int) -> None:
    """Lists, sample and code agree from 10^5 to 10^9 vectors: at least 39 training points per
    list (faiss's minimum) and per PQ centroid, never more samples than vectors or than the
    cap, lists no more than vectors, the code a divisor of dim, nprobe within the lists."""
    n = 10**exponent
    p = choose_params(n, dim)
    assert p.kind == "ivfpq"
    assert p.train_size >= MIN_POINTS_PER_CENTROID * p.nlist
    assert p.train_size >= min(n, MIN_POINTS_PER_CENTROID * (1 << p.nbits))
    assert p.train_size <= min(n, MAX_TRAIN) and p.nlist <= n
    assert dim % p.m == 0 and 1 <= p.nprobe <= p.nlist
    assert p.hnsw_coarse == (p.nlist >= 1 << 16)


def test_list_count_follows_sqrt_n_until_the_sample_caps_it() -> None:
    """nlist ≈ 4·√N as a power of two, never above what the capped sample can train."""
    assert [choose_params(10**e, 128).nlist for e in range(5, 10)] == [
        1 << 10, 1 << 12, 1 << 14, 1 << 15, 1 << 17,
    ]  # fmt: skip
    small_cap = choose_params(10**9, 128, max_train=1 << 21)
    assert small_cap.nlist == 1 << 15  # 2^21 / 39 = 53 773 -> 2^15
    assert small_cap.train_size >= MIN_POINTS_PER_CENTROID * small_cap.nlist


def test_opq_prefix() -> None:
    assert choose_params(50_000, 64, opq=True).factory.startswith("OPQ16,IVF")


def test_memory_budget_shrinks_m() -> None:
    n, dim = 1_000_000, 128
    free = choose_params(n, dim)
    tight = choose_params(n, dim, memory_budget_bytes=n * 20 + 4096 * dim * 4)
    assert tight.m < free.m
    assert dim % tight.m == 0
    assert tight.bytes_per_vector <= 20


def test_budget_too_small_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="memory_budget_bytes"):
        choose_params(1_000_000, 128, memory_budget_bytes=4_000_000)


def test_m_must_divide_dim() -> None:
    with pytest.raises(ConfigError, match=r"index\.m:"):
        choose_params(50_000, 64, m=7)


@pytest.mark.parametrize("dim", [30, 64, 100, 768])
def test_m_divides_dim_and_is_at_most_a_quarter(dim: int) -> None:
    m = choose_m(dim)
    assert dim % m == 0 and m <= max(1, dim // 4)


def test_train_size_bounds() -> None:
    assert choose_train_size(20_000, 256) == 16_384
    assert choose_train_size(5_000, 256) == 5_000
    assert choose_train_size(10**9, 1 << 16) == 1 << 22  # 64 per list
    assert choose_train_size(10**9, 1 << 18) == MAX_TRAIN  # capped
    assert choose_train_size(10**6, 16) == 39 * 256


def test_default_nprobe_is_about_sqrt_nlist() -> None:
    assert default_nprobe(4096) == 64
    assert default_nprobe(1) == 1


def test_overrides_and_round_trip() -> None:
    p = choose_params(50_000, 64, metric="l2", nlist=128, m=8, nprobe=4, train_size=7_000)
    assert (p.metric, p.normalize, p.nlist, p.m, p.nprobe, p.train_size) == (
        "l2",
        False,
        128,
        8,
        4,
        7_000,
    )
    assert IndexParams.from_dict(p.to_dict()) == p


def test_explicit_factory() -> None:
    p = choose_params(50_000, 64, factory="IVF64,SQ8")
    assert p.factory == "IVF64,SQ8" and p.nlist == 64


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 0, "dim": 8}, "n=0"),
        ({"n": 10, "dim": 0}, "dimension"),
        ({"n": 10, "dim": 8, "metric": "cos"}, "metric"),
    ],
)
def test_bad_basics(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        choose_params(**kwargs)  # type: ignore[arg-type]
