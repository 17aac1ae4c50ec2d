"""The coarse-to-fine dome search against the exact full-resolution search it replaces.

:func:`find_domes` scores large frames at half resolution and refines the apices at full
resolution; :func:`_find_domes_exact` scores every pixel. On simulated clips (512 x 512 XVI
panel, several doses, amplitudes, gantry angles, isocentres and noise seeds, and a seed region)
the two must find the same domes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from fixtures import breathing
from fixtures.fluoro import simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics
from igrt.geometry import xvi_geometry
from igrt.tracking.detection import (
    _CURVATURES_PER_PX,
    HemidiaphragmValues,
    _edge_strength,
    _find_domes_exact,
    _local_parabola_scores,
    _PaddedStrength,
    _parabola_scores,
    _vertical_gradient,
    _window_parabola_scores,
    attenuation_image,
    choose_dome,
    find_domes,
)

APEX_TOLERANCE_PX = 0.5


@dataclass(frozen=True)
class _Clip:
    name: str
    images: list[npt.NDArray[np.float32]]
    pixel_at_isocentre_mm: float


def _clip(
    model: BreathingMotionModel,
    name: str,
    *,
    amplitude_mm: float,
    photons_per_pixel: float,
    gantry_deg: float,
    seed: int,
    isocentre_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> _Clip:
    geometry = xvi_geometry(binning=2).with_gantry(gantry_deg)  # 512 x 512
    isocentre = model.apex_lps_mm - np.array([0.0, 0.0, 20.0]) + np.array(isocentre_shift_mm)
    simulation = simulate_fluoro(
        model,
        breathing.regular(amplitude_mm, 4.0, 4.0, 50.0),
        duration_s=4.0,
        fps=3.0,
        geometry=geometry,
        physics=PanelPhysics(photons_per_pixel=photons_per_pixel),
        isocentre_lps_mm=isocentre,
        grid_spacing_mm=(2.0, 1.5),
        seed=seed,
    )
    sequence = simulation.sequence
    images = [attenuation_image(frame, sequence.intensity) for frame in sequence.frames]
    return _Clip(name, images, geometry.pixel_at_isocentre_mm[0])


@pytest.fixture(scope="module")
def clips(phantom_model: BreathingMotionModel) -> list[_Clip]:
    return [
        _clip(
            phantom_model,
            "12 mm",
            amplitude_mm=12.0,
            photons_per_pixel=5000.0,
            gantry_deg=0.0,
            seed=0,
        ),
        _clip(
            phantom_model,
            "20 mm low dose",
            amplitude_mm=20.0,
            photons_per_pixel=1000.0,
            gantry_deg=0.0,
            seed=1,
        ),
        _clip(
            phantom_model,
            "gantry 40",
            amplitude_mm=10.0,
            photons_per_pixel=5000.0,
            gantry_deg=40.0,
            seed=2,
        ),
        _clip(
            phantom_model,
            "midline, gantry 90",
            amplitude_mm=8.0,
            photons_per_pixel=3000.0,
            gantry_deg=90.0,
            seed=3,
            isocentre_shift_mm=(60.0, 0.0, 0.0),
        ),
    ]


def test_clips_are_large_enough_for_the_coarse_search(clips: list[_Clip]) -> None:
    assert all(min(image.shape) >= 256 for clip in clips for image in clip.images)


def test_local_scores_are_bit_identical_to_the_full_image_scores(clips: list[_Clip]) -> None:
    image = clips[1].images[0]
    strength = _edge_strength(_vertical_gradient(image), 1)
    padded = _PaddedStrength.of(strength, 48)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, image.shape[0], 500).astype(np.intp)
    cols = rng.integers(0, image.shape[1], 500).astype(np.intp)
    local = _local_parabola_scores(padded, rows, cols)
    # A window touching the left, bottom and right borders, where samples leave the image.
    window = _window_parabola_scores(padded, slice(480, image.shape[0]), slice(0, image.shape[1]))
    for k, curvature in enumerate(_CURVATURES_PER_PX):
        full = _parabola_scores(strength, curvature, 48)
        np.testing.assert_array_equal(local[k], full[rows, cols])
        np.testing.assert_array_equal(window[k], full[480:])


@pytest.mark.parametrize("with_region", [False, True])
def test_coarse_to_fine_finds_the_domes_of_the_exact_search(
    clips: list[_Clip], with_region: bool
) -> None:
    frames = 0
    identical_lists = 0
    worst_apex_px = 0.0
    for clip in clips:
        for index, image in enumerate(clip.images):
            region = None
            if with_region:
                # A user's seed region (the tracker's default radius 40 px) around the top dome.
                top = _find_domes_exact(image)[0]
                r, c = round(top.apex_row) + 10, round(top.apex_column) - 15
                region = (slice(max(0, r - 40), r + 41), slice(max(0, c - 40), c + 41))
            exact = _find_domes_exact(image, region=region)
            fast = find_domes(image, region=region)
            where = f"{clip.name}, frame {index}"
            assert exact, where
            assert fast, where
            # The strongest dome, which decides the polarity and the tracker's reference score.
            assert fast[0].polarity == exact[0].polarity, where
            apex_px = float(
                np.hypot(
                    fast[0].apex_row - exact[0].apex_row,
                    fast[0].apex_column - exact[0].apex_column,
                )
            )
            worst_apex_px = max(worst_apex_px, apex_px)
            assert apex_px <= APEX_TOLERANCE_PX, where
            assert fast[0].score == pytest.approx(exact[0].score, rel=1e-6), where
            assert fast[0].curvature_per_px == exact[0].curvature_per_px, where
            assert fast[0].contrast_to_noise == pytest.approx(exact[0].contrast_to_noise, rel=1e-6)
            # The dome the tracker would start on.
            chosen = [
                choose_dome(
                    candidates,
                    patient_right_towards_column=-1.0,
                    hemidiaphragm=HemidiaphragmValues.RIGHT,
                    pixel_at_isocentre_mm=clip.pixel_at_isocentre_mm,
                )
                for candidates in (fast, exact)
            ]
            assert chosen[0] is not None, where
            assert chosen[1] is not None, where
            assert chosen[0].apex_row == pytest.approx(chosen[1].apex_row, abs=APEX_TOLERANCE_PX)
            assert chosen[0].apex_column == pytest.approx(
                chosen[1].apex_column, abs=APEX_TOLERANCE_PX
            )
            frames += 1
            identical_lists += fast == exact
    assert frames >= 40
    # The weaker candidates sit on flat, noisy ridges; nearly always they match exactly too.
    assert identical_lists >= 0.95 * frames, f"{identical_lists}/{frames} identical"
    assert worst_apex_px <= APEX_TOLERANCE_PX


def test_small_frames_keep_the_exact_search(clips: list[_Clip]) -> None:
    image = clips[0].images[0][128:320, 128:448]  # 192 x 320: below the coarse threshold
    assert find_domes(image) == _find_domes_exact(image)
