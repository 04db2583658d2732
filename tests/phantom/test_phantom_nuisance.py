"""Label-preserving nuisances: seeded, each disabled by 0, and rendered as their formulas say."""

from __future__ import annotations

import numpy as np
import pytest

from echoseek.phantom.anatomy import random_anatomy
from echoseek.phantom.episodes import View
from echoseek.phantom.fan import make_fan
from echoseek.phantom.generate import PhantomParams
from echoseek.phantom.nuisance import (
    ARTIFACT_RUN_S,
    FLICKER_TIME_S,
    JITTER_CLIP,
    JITTER_TIME_S,
    Artifact,
    Nuisance,
    Settings,
    adjustment_frames,
    ar1,
    artifact_runs,
    frame_rho,
    gaps_between_runs,
    make_nuisance,
)
from echoseek.phantom.render import Renderer, make_renderer
from echoseek.phantom.speckle import filtered_speckle, gaussian_transfer

FRAMES, RATE = 300, 15.0
AMPLITUDES = {
    "gain_db": 3.0,
    "gain_flicker_db": 1.0,
    "tgc_db": 3.0,
    "contrast": 0.1,
    "jitter_px": 1.0,
    "jitter_rotation_rad": 0.01,
    "artifact_rate": 0.1,
}


def nuisance(seed: int = 0, hold: np.ndarray | None = None, **amplitudes: float) -> Nuisance:
    kwargs = {**AMPLITUDES, **amplitudes}
    return make_nuisance(FRAMES, RATE, rng=np.random.default_rng(seed), hold=hold, **kwargs)


def test_same_seed_same_nuisance_other_seed_differs() -> None:
    a, b, c = nuisance(0), nuisance(0), nuisance(1)
    assert a.settings == b.settings
    assert np.array_equal(a.jitter_x, b.jitter_x) and np.array_equal(a.adjustments, b.adjustments)
    assert a.settings != c.settings and not np.array_equal(a.jitter_x, c.jitter_x)


READ = {  # what each amplitude controls
    "gain_db": lambda n: n.gain_db.tolist(),
    "tgc_db": lambda n: [s.tgc_db for s in n.settings],
    "contrast": lambda n: [s.dynamic_range_scale for s in n.settings],
    "jitter_px": lambda n: n.jitter_x.tolist(),
    "jitter_rotation_rad": lambda n: n.jitter_rotation.tolist(),
    "artifact_rate": lambda n: [s.artifact for s in n.settings],
}
OFF = {
    "tgc_db": [()] * FRAMES,
    "contrast": [1.0] * FRAMES,
    "jitter_px": [0.0] * FRAMES,
    "jitter_rotation_rad": [0.0] * FRAMES,
    "artifact_rate": [None] * FRAMES,
}


@pytest.mark.parametrize("field", sorted(OFF))
def test_zero_disables_one_nuisance_and_leaves_the_others(field: str) -> None:
    full, off = nuisance(), nuisance(**{field: 0.0})
    assert READ[field](full) != OFF[field] and READ[field](off) == OFF[field]
    for other, read in READ.items():  # every other nuisance is drawn exactly as before
        if other != field:
            assert read(off) == read(full), other
    assert np.array_equal(off.adjustments, full.adjustments)


def test_gain_is_the_setting_plus_the_flicker() -> None:
    settings, flicker = nuisance(gain_flicker_db=0.0), nuisance(gain_db=0.0)
    assert np.allclose(nuisance().gain_db, settings.gain_db + flicker.gain_db)
    assert settings.gain_db.any() and flicker.gain_db.any()
    assert [s.tgc_db for s in settings.settings] == READ["tgc_db"](nuisance())


def test_all_zero_is_the_nominal_scan() -> None:
    off = nuisance(**dict.fromkeys(AMPLITUDES, 0.0))
    assert off.settings == [Settings()] * FRAMES
    assert not off.jitter_x.any() and not off.jitter_rotation.any() and not off.artifact.any()


def test_gain_is_piecewise_with_short_ramps_plus_flicker() -> None:
    steps = nuisance(gain_flicker_db=0.0)
    gain = steps.gain_db
    assert len(steps.adjustments) >= 2
    # between adjustments (after the ramp) the setting is constant
    stops = [*steps.adjustments.tolist(), FRAMES]
    for start, stop in zip([0, *stops[:-1]], stops, strict=True):
        settled = gain[start + 6 : stop]  # ADJUST_RAMP_S = 0.4 s = 6 frames
        assert np.ptp(settled) == pytest.approx(0.0, abs=1e-9) if settled.size else True
    flicker = nuisance(gain_db=0.0).gain_db  # AR(1), 1 dB, correlation time FLICKER_TIME_S
    assert flicker.std() == pytest.approx(1.0, abs=0.3)
    lag1 = np.corrcoef(flicker[1:], flicker[:-1])[0, 1]
    assert lag1 == pytest.approx(frame_rho(RATE, FLICKER_TIME_S), abs=0.1)


def test_the_settings_change_between_breath_holds() -> None:
    hold = np.zeros(FRAMES, dtype=bool)
    hold[[*range(20, 40), *range(120, 140), *range(250, 270)]] = True
    assert gaps_between_runs(hold) == [(40, 120), (140, 250)]
    assert gaps_between_runs(np.zeros(5, dtype=bool)) == []
    starts = adjustment_frames(FRAMES, RATE, hold, np.random.default_rng(3))
    for a, b in gaps_between_runs(hold):
        assert ((starts >= a) & (starts < b)).any()
    assert starts.min() > 0 and np.all(np.diff(starts) > 0)


def test_ar1_is_unit_variance_with_lag_one_correlation_rho() -> None:
    x = ar1(20000, 0.8, np.random.default_rng(4))
    assert x.var() == pytest.approx(1.0, abs=0.06)
    assert np.corrcoef(x[1:], x[:-1])[0, 1] == pytest.approx(0.8, abs=0.02)


def test_jitter_is_clipped_and_smooth() -> None:
    n = nuisance(jitter_px=2.0)
    assert np.abs(n.jitter_x).max() <= JITTER_CLIP * 2.0 + 1e-12
    assert np.abs(n.jitter_rotation).max() <= JITTER_CLIP * 0.01 + 1e-12
    lag1 = np.corrcoef(n.jitter_x[1:], n.jitter_x[:-1])[0, 1]  # a hand, not white noise
    assert lag1 == pytest.approx(frame_rho(RATE, JITTER_TIME_S), abs=0.1)


def test_artifacts_cover_the_rate_in_separate_runs() -> None:
    runs = artifact_runs(FRAMES, RATE, 0.1, np.random.default_rng(5))
    hit = np.array([a is not None for a in runs])
    assert hit.sum() == round(0.1 * FRAMES)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], hit.astype(np.int8), [0]])))
    lengths = edges[1::2] - edges[::2]
    assert lengths.max() <= round(ARTIFACT_RUN_S[1] * RATE)  # the last run may be cut short
    assert {a.kind for a in runs if a is not None} <= {"dropout", "reverb"}
    assert artifact_runs(FRAMES, RATE, 0.0, np.random.default_rng(5)) == [None] * FRAMES


# --- rendering ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    fan = make_fan(96, 96, 75.0)
    anatomy = random_anatomy(fan, 2, 1.0, np.random.default_rng(6))
    return make_renderer(fan, anatomy, 50.0, max_displacement=2.0)


def render(renderer: Renderer, settings: Settings) -> np.ndarray:
    transfer = gaussian_transfer(renderer.field_shape, 1.0, 1.0)
    field = filtered_speckle(transfer, np.random.default_rng(7))
    frame = renderer.render((0.0, 0.0), View(), field, np.random.default_rng(8), settings)
    return frame.astype(np.float64)


def test_gain_adds_255_g_over_dr_grey_levels(renderer: Renderer) -> None:
    # log compression g = 255 (1 + 20 log10(e / e_ref) / DR): a gain of G dB adds 255 G / DR
    nominal = render(renderer, Settings())
    brighter = render(renderer, Settings(gain_db=6.0))
    mid = (nominal > 20) & (nominal < 200)
    shift = brighter[mid] - nominal[mid]
    assert np.median(shift) == pytest.approx(255 * 6.0 / 50.0, abs=1.0)


def test_tgc_brightens_only_the_depths_its_sliders_raise(renderer: Renderer) -> None:
    nominal = render(renderer, Settings())
    deep = render(renderer, Settings(tgc_db=(0.0, 0.0, 0.0, 6.0)))
    rows = renderer.fan.height
    top, bottom = slice(0, rows // 3), slice(rows - rows // 4, rows)
    assert np.abs(deep[top] - nominal[top]).max() <= 1.0
    assert (deep[bottom] - nominal[bottom]).mean() > 3.0


def test_contrast_keeps_the_liver_grey_and_stretches_about_it(renderer: Renderer) -> None:
    nominal = render(renderer, Settings())
    wide = render(renderer, Settings(dynamic_range_scale=1.5))
    inside = nominal > 0
    assert abs(np.median(wide[inside]) - np.median(nominal[inside])) < 15
    assert wide[inside].std() < nominal[inside].std()  # a wider dynamic range is flatter


def test_dropout_darkens_one_edge_and_reverb_adds_shallow_arcs(renderer: Renderer) -> None:
    nominal = render(renderer, Settings())
    lost = render(renderer, Settings(artifact=Artifact("dropout", side=1.0, extent=0.3)))
    cols = renderer.fan.width
    right, left = slice(cols // 2 + cols // 8, cols), slice(0, cols // 2 - cols // 8)
    assert (nominal[:, right] - lost[:, right]).mean() > 3 * (
        nominal[:, left] - lost[:, left]
    ).mean()
    # reverberation: thin bright arcs at 1..4 x 0.1 r_max from the apex, nothing deeper
    reverb = render(renderer, Settings(artifact=Artifact("reverb", extent=0.1, strength=2.0)))
    diff = reverb - nominal
    assert diff.min() >= 0 and (diff > 10).sum() > 50  # echo is only added
    deep = round(0.6 * renderer.fan.r_max) + 1  # image rows below lie deeper than 0.6 r_max
    assert np.abs(diff[deep:]).max() <= 1.0


def test_default_jitter_stays_well_below_a_hard_negative_probe_shift() -> None:
    # an episode's slide starts at 60 % of probe_shift; jitter is clipped at JITTER_CLIP std
    p = PhantomParams()
    assert JITTER_CLIP * p.jitter_shift < 0.5 * 0.6 * p.probe_shift
    assert JITTER_CLIP * p.jitter_rotation_deg < 0.5 * 0.6 * p.probe_rotation_deg
