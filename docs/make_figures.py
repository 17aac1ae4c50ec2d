"""Render the simulator pictures in ``docs/images/``: ``.venv/bin/python docs/make_figures.py``.

Each picture shows a simulated modality next to the real image it imitates, where the shared
data holds one: the real PA chest radiograph for projection images, the real planning CT for
CBCT volumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pydicom

from fixtures import breathing
from fixtures.anatomy import load_chest_ct
from fixtures.cbct import simulate_cbct
from fixtures.fluoro import default_isocentre_lps_mm, simulate_fluoro
from fixtures.motion import BreathingMotionModel
from fixtures.panel import PanelPhysics, log_normalise
from fixtures.shared_data import CHEST_CR, shared_data_dir
from igrt.geometry import xvi_geometry
from igrt.sequence import IntensityValues
from igrt.volume import Volume

OUT = Path(__file__).resolve().parent / "images"
HEIGHT_PX = 420


def _display(
    image: npt.NDArray[np.floating], low_pct: float = 1.0, high_pct: float = 99.5
) -> npt.NDArray[np.uint8]:
    """Window an image to 8 bits between two percentiles of its values."""
    low, high = np.percentile(image, [low_pct, high_pct])
    scaled = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
    return (255 * scaled).astype(np.uint8)


def _radiograph_look(line_integral: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """What a console shows: log image, windowed, with mild unsharp masking (bone white)."""
    image = line_integral.astype(np.float32)
    blurred = cv2.GaussianBlur(image, (0, 0), 12.0)
    return _display(image + 0.8 * (image - blurred))


def _labelled(
    image: npt.NDArray[np.uint8], text: str, scale: float | None = None
) -> npt.NDArray[np.uint8]:
    """Resize to the figure height (or by ``scale``) and caption the top."""
    scale = scale if scale is not None else HEIGHT_PX / image.shape[0]
    resized = cv2.resize(
        image,
        (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_AREA,
    )
    panel = cv2.cvtColor(resized, cv2.COLOR_GRAY2BGR)
    cv2.rectangle(panel, (0, 0), (panel.shape[1], 26), (0, 0, 0), -1)
    cv2.putText(
        panel, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    return panel


def _row(panels: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    height = max(panel.shape[0] for panel in panels)
    panels = [
        np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in panels
    ]
    gap = np.full((height, 6, 3), 255, np.uint8)
    parts: list[npt.NDArray[np.uint8]] = []
    for panel in panels:
        parts.extend([panel, gap])
    return np.hstack(parts[:-1])


def _real_radiograph() -> npt.NDArray[np.uint8]:
    dataset = pydicom.dcmread(shared_data_dir() / CHEST_CR)
    pixels = dataset.pixel_array.astype(np.float32)
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return _display(pixels)


def projection_figure(model: BreathingMotionModel) -> None:
    """Real CR | simulated full-panel kV radiograph | simulated fluoroscopy frame with the truth."""
    physics = PanelPhysics(photons_per_pixel=20000.0)
    still = breathing.regular(1e-3, 4.0, 2.0, 50.0)
    chest_centre = model.anatomy.ct_hu.centre_lps_mm
    wide = simulate_fluoro(
        model,
        still,
        duration_s=0.2,
        fps=5.0,
        geometry=xvi_geometry(binning=1),
        physics=physics,
        isocentre_lps_mm=chest_centre,
        intensity=IntensityValues.LINE_INTEGRAL,
    )
    signal = breathing.regular(12.0, 4.0, 20.0, 50.0)
    fluoro = simulate_fluoro(model, signal, duration_s=2.0, fps=7.5, physics=physics)
    index = int(np.argmin(fluoro.truth.signal_si_mm))  # end-inhale
    raw = fluoro.sequence.frames[index].astype(np.float32)
    # Window on the patient, as a console does: unattenuated air would take the whole range.
    body = raw[raw < 0.5 * physics.open_field_adu]
    low, high = np.percentile(body, [0.5, 99.5])
    frame = cv2.cvtColor(
        (255 * np.clip((raw - low) / (high - low), 0, 1)).astype(np.uint8), cv2.COLOR_GRAY2BGR
    )
    column, row = fluoro.truth.apex_pixel[index]
    cv2.drawMarker(frame, (round(column), round(row)), (0, 0, 255), cv2.MARKER_CROSS, 18, 1)
    panels = [
        _labelled(_real_radiograph(), "real: PA chest CR (pydicom-data)"),
        _labelled(_radiograph_look(wide.sequence.frames[0]), "simulated: AP kV, 1024^2 XVI panel"),
        _labelled(frame[:, :, 0], "simulated: raw fluoro frame, 512^2"),
    ]
    marked = panels[2]
    marked[:] = cv2.resize(frame, (marked.shape[1], HEIGHT_PX))
    cv2.rectangle(marked, (0, 0), (marked.shape[1], 26), (0, 0, 0), -1)
    cv2.putText(
        marked,
        "simulated: raw fluoro, end-inhale, + = true apex",
        (6, 18),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    cv2.imwrite(str(OUT / "projection_vs_radiograph.png"), _row(panels))


def cbct_projection_figure(model: BreathingMotionModel) -> None:
    """Projections of a rotating-gantry acquisition at four angles."""
    signal = breathing.regular(12.0, 4.0, 40.0, 50.0)
    physics = PanelPhysics(photons_per_pixel=3000.0)
    panels = []
    for angle in (0.0, 45.0, 90.0, 135.0):
        simulation = simulate_fluoro(
            model,
            signal,
            duration_s=0.2,
            fps=5.0,
            geometry=xvi_geometry(gantry_deg=angle),
            gantry_speed_deg_per_s=6.0,
            physics=physics,
        )
        raw = simulation.sequence.frames[0]
        panels.append(
            _labelled(_radiograph_look(log_normalise(raw, physics)), f"gantry {angle:.0f} deg")
        )
    cv2.imwrite(str(OUT / "cbct_projections.png"), _row(panels))


def _planes(volume: Volume, centre_lps: npt.NDArray[np.float64]) -> list[npt.NDArray[np.float32]]:
    """Axial, coronal and sagittal planes through ``centre_lps`` (display orientation)."""
    i, j, k = np.rint(volume.index_from_lps(centre_lps)[0]).astype(int)
    array = volume.array.astype(np.float32)
    i, j, k = (int(np.clip(v, 0, n - 1)) for v, n in zip((i, j, k), volume.shape_ijk, strict=True))
    sx, sy, sz = volume.spacing_mm
    axial = array[k]
    coronal = np.flipud(array[:, j, :])
    sagittal = np.flipud(array[:, :, i])
    flip_rows = volume.direction[1, 1] < 0  # show anterior at the top whatever the storage order
    if flip_rows:
        axial = np.flipud(axial)
        sagittal = np.fliplr(sagittal)
    return [
        cv2.resize(axial, (round(axial.shape[1] * sx), round(axial.shape[0] * sy))),
        cv2.resize(coronal, (round(coronal.shape[1] * sx), round(coronal.shape[0] * sz))),
        cv2.resize(sagittal, (round(sagittal.shape[1] * sy), round(sagittal.shape[0] * sz))),
    ]


def _hu_window(image: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    return (255 * np.clip((image + 1000.0) / 1400.0, 0.0, 1.0)).astype(np.uint8)


def cbct_volume_figure(model: BreathingMotionModel, with_rtk: bool) -> None:
    """Planning CT vs simulated CBCT (fast, and RTK FDK when available) in three planes."""
    ct = model.anatomy.ct_hu
    isocentre = default_isocentre_lps_mm(model)
    rows = [("planning CT (real)", ct)]
    shift = (3.2, -4.7, 7.9)
    fast = simulate_cbct(
        ct, isocentre_lps_mm=isocentre, anatomy_displacement_lps_mm=shift, method="fast"
    )
    rows.append(("CBCT, fast path", fast.cbct_hu))
    if with_rtk:
        rtk = simulate_cbct(
            ct, isocentre_lps_mm=isocentre, anatomy_displacement_lps_mm=shift, method="rtk"
        )
        rows.append(("CBCT, RTK forward projection + FDK", rtk.cbct_hu))
    planes = [(title, _planes(volume, isocentre)) for title, volume in rows]
    scale = HEIGHT_PX / max(p.shape[0] for _, three in planes for p in three)
    lines = [
        _row([_labelled(_hu_window(p), title, scale) for p in three]) for title, three in planes
    ]
    width = max(line.shape[1] for line in lines)
    padded = [
        np.pad(line, ((0, 6), (0, width - line.shape[1]), (0, 0)), constant_values=255)
        for line in lines
    ]
    cv2.imwrite(str(OUT / "cbct_vs_ct.png"), np.vstack(padded))


def main() -> None:
    """Render every figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-rtk", action="store_true", help="skip the slow RTK CBCT")
    arguments = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    model = BreathingMotionModel.from_anatomy(load_chest_ct())
    projection_figure(model)
    cbct_projection_figure(model)
    cbct_volume_figure(model, with_rtk=not arguments.no_rtk)


if __name__ == "__main__":
    main()
