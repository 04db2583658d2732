"""The phantom breath-hold cine: determinism, labels, realism checks and the written files."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from echoseek.baseline import pixel_embed
from echoseek.errors import ConfigError, EchoseekError
from echoseek.evaluation.ranking import average_precision
from echoseek.evaluation.retrieval import leave_one_out_metrics, query_metrics
from echoseek.phantom.generate import (
    Phantom,
    PhantomParams,
    calibrate_tolerance,
    generate_phantom,
)
from echoseek.phantom.motion import free_breathing
from echoseek.phantom.speckle import filtered_speckle, gaussian_transfer, speckle_fields
from echoseek.phantom.write import write_phantom

# 8 s of cine, two breaths and a 2.4 s hold; one hard-negative episode on the hold, one at a
# free-breathing pass through the reference depth. An explicit tolerance keeps a few tenths of
# a pixel between positives and negatives even with this few frames.
SMALL = PhantomParams(
    frames=40,
    height=64,
    width=64,
    frame_rate=5.0,
    breath_holds=1,
    breath_hold_s=2.4,
    tolerance=0.5,
    hard_negative_rate=0.15,
    hard_negative_frames=3,
)


# every label-preserving nuisance (phantom_nuisance) switched off
NO_NUISANCE = {
    "gain_db": 0.0,
    "gain_flicker_db": 0.0,
    "tgc_db": 0.0,
    "contrast": 0.0,
    "jitter_shift": 0.0,
    "jitter_rotation_deg": 0.0,
    "artifact_rate": 0.0,
}


@pytest.fixture(scope="module")
def small() -> Phantom:
    return generate_phantom(SMALL)


@pytest.fixture(scope="module")
def default() -> Phantom:
    return generate_phantom(PhantomParams())


def mse_to(frames: np.ndarray, image: np.ndarray) -> np.ndarray:
    diff = frames.astype(np.float64) - image.astype(np.float64)
    return (diff**2).mean(axis=(1, 2))


# --- generator ------------------------------------------------------------------------------


def test_shapes_and_dtypes(small: Phantom) -> None:
    assert small.frames.shape == (40, 64, 64) and small.frames.dtype == np.uint8
    assert small.query.shape == (64, 64) and small.query.dtype == np.uint8
    assert small.labels.shape == small.phase.shape == small.hard_negative.shape == (40,)
    assert set(np.unique(small.labels)) <= {0, 1}


def test_same_seed_same_bytes_other_seed_differs(small: Phantom) -> None:
    again = generate_phantom(SMALL)
    assert again.frames.tobytes() == small.frames.tobytes()
    assert again.query.tobytes() == small.query.tobytes()
    assert np.array_equal(again.labels, small.labels)
    other = generate_phantom(dataclasses.replace(SMALL, seed=1))
    assert other.frames.tobytes() != small.frames.tobytes()
    assert other.query.tobytes() != small.query.tobytes()


def test_default_size_positive_ratio_within_3_percent(default: Phantom) -> None:
    phantom = default
    assert phantom.frames.shape == (445, 128, 128)
    assert abs(phantom.positive_ratio - 0.2) <= 0.03
    assert phantom.tolerance_calibrated
    # every breath-hold plateau frame is within the tolerance of the reference
    assert phantom.breath_hold.sum() > 0
    on_hold = np.abs(phantom.phase[phantom.breath_hold] - phantom.reference_phase)
    assert on_hold.max() <= phantom.tolerance


def test_default_difficulty_band(default: Phantom) -> None:
    # the raw-pixel baseline is well above random (0.2) and well below perfect: room for a
    # trained model to show a gain; an oracle that knows the phase and the view is perfect
    vectors = pixel_embed(list(default.frames))
    query = pixel_embed([default.query])[0]
    loo = leave_one_out_metrics(vectors, default.labels, ks=[10])
    assert 0.4 <= loo["map"] <= 0.8
    assert 0.3 <= query_metrics(query, vectors, default.labels == 1, ks=[10])["ap"] <= 0.85
    oracle = -np.abs(default.phase - default.reference_phase) - 1e3 * default.hard_negative
    assert average_precision(oracle[None, :], (default.labels == 1)[None, :])[0] == 1.0
    # every nuisance is present at the defaults
    assert np.ptp(default.gain_db) > 1.0 and np.abs(default.jitter).max(axis=0).min() > 0
    assert 0.04 <= default.artifact.mean() <= 0.12 and not default.artifact[default.reference_frame]


def test_nuisances_change_pixels_never_labels(small: Phantom) -> None:
    plain = generate_phantom(dataclasses.replace(SMALL, **NO_NUISANCE))
    assert np.array_equal(plain.labels, small.labels)
    assert np.array_equal(plain.phase, small.phase)
    assert np.array_equal(plain.hard_negative, small.hard_negative)
    assert plain.episodes == small.episodes and plain.reference_frame == small.reference_frame
    assert not plain.gain_db.any() and not plain.jitter.any() and not plain.artifact.any()
    assert (plain.frames != small.frames).any(axis=(1, 2)).mean() > 0.9


def test_label_rule_with_an_explicit_tolerance(small: Phantom) -> None:
    near = np.abs(small.phase - small.reference_phase) <= 0.5
    assert not small.tolerance_calibrated and small.tolerance == 0.5
    assert np.array_equal(small.labels, (near & ~small.hard_negative).astype(np.int64))
    assert 0 < small.positives < 40


def test_calibrated_tolerance_gives_the_ratio_on_a_small_cine() -> None:
    phantom = generate_phantom(dataclasses.replace(SMALL, tolerance=None, positive_ratio=0.25))
    assert phantom.tolerance_calibrated and phantom.positives == 10
    near = np.abs(phantom.phase - phantom.reference_phase) <= phantom.tolerance
    assert np.array_equal(phantom.labels, (near & ~phantom.hard_negative).astype(np.int64))


def test_query_is_new_but_its_nearest_frame_is_positive(small: Phantom) -> None:
    assert not any(np.array_equal(frame, small.query) for frame in small.frames)
    distances = mse_to(small.frames, small.query)
    assert distances.min() > 0
    assert small.labels[np.argmin(distances)] == 1
    assert small.labels[small.reference_frame] == 1


def test_outside_the_fan_is_black(small: Phantom) -> None:
    mask = small.fan_mask
    assert 0.3 < mask.mean() < 0.9
    assert not small.frames[:, ~mask].any()
    assert not small.query[~mask].any()
    assert small.frames[:, mask].mean() > 30  # there is an image inside
    # apex at the top centre: the sector starts at the top and is left-right symmetric
    assert np.flatnonzero(mask.any(axis=1))[0] <= 4
    assert np.array_equal(mask, mask[:, ::-1])
    # the opening angle: the widest row spans about 2 r sin(75 deg / 2) of the 64 columns
    assert 55 <= mask.sum(axis=1).max() <= 64


def test_adjacent_frames_are_more_alike_than_distant_ones(small: Phantom) -> None:
    f = small.frames.astype(np.float64)
    lag1 = ((f[1:] - f[:-1]) ** 2).mean()
    lag10 = ((f[10:] - f[:-10]) ** 2).mean()
    assert lag1 < 0.8 * lag10


def test_hard_negatives_are_near_the_reference_depth_and_negative(small: Phantom) -> None:
    hard = small.hard_negative
    assert hard.any()
    assert not small.labels[hard].any()
    assert {e.kind for e in small.episodes} == {"probe", "rib"}
    distance = np.abs(small.phase - small.reference_phase)
    assert distance[hard].min() <= small.tolerance  # same depth, shifted view
    assert (hard & small.breath_hold).any()  # the hardest: on the breath hold itself
    assert (hard & ~small.breath_hold).any()  # and where free breathing passes the reference
    # the view change is visible: a hard negative differs more from the query than positives do
    d = mse_to(small.frames, small.query)
    assert d[hard].min() > np.median(d[small.labels == 1])


def test_without_hard_negatives_the_label_is_the_depth_rule() -> None:
    phantom = generate_phantom(dataclasses.replace(SMALL, hard_negative_rate=0.0))
    assert not phantom.hard_negative.any() and phantom.episodes == ()
    near = np.abs(phantom.phase - phantom.reference_phase) <= phantom.tolerance
    assert np.array_equal(phantom.labels, near.astype(np.int64))


def test_the_smallest_cine_is_valid_and_mostly_not_hard_negatives() -> None:
    phantom = generate_phantom(PhantomParams(frames=10, height=32, width=32))
    assert phantom.frames.shape == (10, 32, 32)
    assert phantom.positives == 2 and phantom.labels[phantom.reference_frame] == 1
    assert phantom.hard_negative.sum() == 1  # episodes are at most a tenth of the cine


def test_calibrate_tolerance_hits_the_count_and_refuses_the_impossible() -> None:
    distance = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.0, 0.8, 0.6, 0.4])
    eligible = np.ones(10, dtype=bool)
    tol = calibrate_tolerance(distance, eligible, 0.3)
    assert tol == pytest.approx(0.25) and (distance <= tol).sum() == 3
    eligible[[6, 1]] = False  # the two nearest frames have a changed view
    tol = calibrate_tolerance(distance, eligible, 0.3)
    assert ((distance <= tol) & eligible).sum() == 3
    with pytest.raises(ConfigError, match="positive_ratio"):
        calibrate_tolerance(distance, eligible, 0.9)
    with pytest.raises(ConfigError, match="positive_ratio"):
        calibrate_tolerance(distance, eligible, 0.01)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frames", 0),
        ("positive_ratio", 1.5),
        ("speckle_corr", 1.0),
        ("tolerance", -1.0),
        ("gain_db", -1.0),
        ("gain_flicker_db", 7.0),
        ("tgc_db", 13.0),
        ("contrast", 0.6),
        ("jitter_shift", 0.1),
        ("jitter_rotation_deg", -0.5),
        ("artifact_rate", 0.6),
    ],
)
def test_invalid_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        PhantomParams(**{field: value})  # type: ignore[arg-type]


def test_holds_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^breath_hold_s: .*do not fit"):
        PhantomParams(frames=40, breath_hold_s=10.0)


# --- physics references ---------------------------------------------------------------------


def test_speckle_envelope_is_rayleigh_with_unit_power() -> None:
    rng = np.random.default_rng(0)
    transfer = gaussian_transfer((256, 256), axial_sigma=1.2, lateral_sigma=1.0)
    field = filtered_speckle(transfer, rng)
    envelope = np.abs(field).astype(np.float64)
    assert np.mean(envelope**2) == pytest.approx(1.0, rel=0.05)
    # Rayleigh: mean = sqrt(pi)/2 sigma_c, point SNR mean/std = 1.91 (Wagner et al. 1983)
    assert envelope.mean() == pytest.approx(math.sqrt(math.pi) / 2, rel=0.05)
    assert envelope.mean() / envelope.std() == pytest.approx(1.913, rel=0.05)


def test_speckle_fields_decorrelate_as_rho_to_the_lag() -> None:
    rng = np.random.default_rng(1)
    transfer = gaussian_transfer((128, 128), axial_sigma=1.2, lateral_sigma=1.0)
    fields = speckle_fields(transfer, 0.8, rng)
    seq = [next(fields).astype(np.complex128) for _ in range(4)]
    for lag in (1, 3):
        a, b = seq[0], seq[lag]
        corr = abs(np.vdot(a, b)) / math.sqrt(np.vdot(a, a).real * np.vdot(b, b).real)
        assert corr == pytest.approx(0.8**lag, abs=0.06)


def test_free_breathing_has_the_set_period_and_excursion() -> None:
    times = np.arange(3000) / 15.0
    d, _, _ = free_breathing(times, 4.0, 10.0, 0.15, np.random.default_rng(2))
    spectrum = np.abs(np.fft.rfft(d - d.mean()))
    freq = np.fft.rfftfreq(len(d), 1 / 15.0)
    dominant = freq[np.argmax(spectrum)]
    assert 1 / dominant == pytest.approx(4.0, rel=0.15)
    assert np.percentile(d, 99) == pytest.approx(10.0, rel=0.35)
    assert abs(np.percentile(d, 1)) < 1.0  # end-expiration baseline near 0


# --- files ----------------------------------------------------------------------------------


def test_write_v5_reads_back(small: Phantom, tmp_path) -> None:
    import scipy.io
    from PIL import Image

    out = write_phantom(small, tmp_path / "p", mat_format="v5")
    names = {"dataset.mat", "dataset_labels.csv", "dataset_phase_labels.csv", "invivo.png"}
    names.add("dataset_anomaly_labels.csv")
    assert {p.name for p in out.iterdir()} == {*names, "phantom.json"}
    frames = scipy.io.loadmat(out / "dataset.mat")["frames"]
    assert frames.shape == (64, 64, 40) and frames.dtype == np.uint8
    assert np.array_equal(frames, np.transpose(small.frames, (1, 2, 0)))
    lines = (out / "dataset_labels.csv").read_text().splitlines()
    assert lines[0] == "frame_index,label" and len(lines) == 41
    assert [int(line.split(",")[1]) for line in lines[1:]] == small.labels.tolist()
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(40))
    phase_lines = (out / "dataset_phase_labels.csv").read_text().splitlines()
    assert [int(line.split(",")[1]) for line in phase_lines[1:]] == small.phase_labels.tolist()
    flagged = (out / "dataset_anomaly_labels.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[1]) for line in flagged] == (
        small.artifact | small.hard_negative
    ).astype(int).tolist()
    with Image.open(out / "invivo.png") as img:
        assert img.mode == "L"
        assert np.array_equal(np.asarray(img), small.query)
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["positives"] == small.positives and meta["seed"] == SMALL.seed
    assert meta["tolerance_px"] == pytest.approx(small.tolerance)
    assert meta["hard_negative_indices"] == np.flatnonzero(small.hard_negative).tolist()
    assert meta["params"] == dataclasses.asdict(SMALL)


def test_write_v73_is_matlab_hdf5(small: Phantom, tmp_path) -> None:
    import h5py
    import scipy.io.matlab

    out = write_phantom(small, tmp_path / "p", mat_format="v7.3")
    path = out / "dataset.mat"
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    assert scipy.io.matlab.matfile_version(str(path)) == (2, 0)
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512
        ds = f["frames"]
        assert ds.shape == (40, 64, 64)  # MATLAB H x W x N, stored column-major
        assert ds.attrs["MATLAB_class"] == b"uint8"
        assert ds.chunks is not None and ds.chunks[0] < 40
        assert np.array_equal(ds[()], np.transpose(small.frames, (0, 2, 1)))


@pytest.mark.parametrize("mat_format", ["v5", "v7.3"])
def test_ingest_reader_sees_frames_in_order(small: Phantom, tmp_path, mat_format: str) -> None:
    from echoseek.ingest.mat import open_mat_stack

    out = write_phantom(small, tmp_path / "p", mat_format=mat_format)
    stack = open_mat_stack(out / "dataset.mat")
    assert stack.matlab_shape == (64, 64, 40) and stack.frame_axis == 2
    assert np.array_equal(np.concatenate(list(stack.iter_chunks(16))), small.frames)


def test_write_refuses_a_non_empty_dir_unless_overwrite(small: Phantom, tmp_path) -> None:
    out = tmp_path / "p"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(EchoseekError, match="overwrite"):
        write_phantom(small, out)
    assert (out / "keep.txt").exists()
    write_phantom(small, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "dataset.mat").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no staging left over


def test_failed_write_leaves_nothing(small: Phantom, tmp_path) -> None:
    broken = dataclasses.replace(small, query=np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(TypeError):
        write_phantom(broken, tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


def test_unknown_mat_format_is_a_config_error(small: Phantom, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^mat_format: "):
        write_phantom(small, tmp_path / "p", mat_format="v6")
