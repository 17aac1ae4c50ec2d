"""Lung-field segmentation and the diaphragm boundary on synthetic images with known geometry.

Real radiographs are in ``test_detection_real_radiograph.py``; these isolate four behaviours
found on them: a burned-in frame band, a bright rim along the border, the staircase of a
boundary taken row by row, a segmentation that loses the medial lung, and dark regions above
the shoulders that a brighter look-up table makes the darkest class instead of the lungs,
and a diaphragm seen twice (dome top over a grey posterior recess).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from igrt.tracking.lung_field import (
    LungField,
    diaphragm_apex,
    edge_above_fraction,
    find_lung_fields,
    lung_field_readings,
    lung_over_liver_fraction,
    refined_inferior_boundary,
)

PIXEL_MM = 0.4
AIR, LUNG, BODY = 0.0, 60.0, 200.0


def _chest(size: int = 800) -> npt.NDArray[np.float32]:
    """Air at both sides, a body, two lungs whose tops reach row 30 (a view cropped high)."""
    image = np.full((size, size), BODY, np.float32)
    image[:, :40] = image[:, -40:] = AIR
    rows, cols = np.mgrid[0:size, 0:size]
    for centre in (260, 540):
        image[(np.abs(cols - centre) < 110) & (rows > 30) & (rows < 560)] = LUNG
    return image


def test_a_frame_band_along_the_top_does_not_join_the_lungs() -> None:
    image = _chest()
    image[:30, 40:-40] = LUNG  # a band as dark as lung, lungs reaching it
    fields = find_lung_fields(image, PIXEL_MM)
    centres = sorted(round(f.centroid_column_row[0]) for f in fields)
    assert len(centres) == 2, centres
    assert abs(centres[0] - 260) < 20
    assert abs(centres[1] - 540) < 20


def test_air_stopping_short_of_a_bright_rim_is_still_outside_the_body() -> None:
    # Digitised plates often brighten over their last millimetres: the air beside the body
    # then does not reach the border, and must not be taken for two more lungs.
    image = _chest()
    image[:, :80] = image[:, -80:] = AIR  # 32 mm of air each side: as large as a lung would be
    # A 4 mm rim, uneven along the border (no uniform burned-in band).
    uneven = BODY * (0.7 + 0.3 * np.sin(np.arange(image.shape[0]) / 20.0))
    image[:, :10] = image[:, -10:] = uneven[:, None]
    image[-10:, :] = uneven[None, :]
    fields = find_lung_fields(image, PIXEL_MM)
    centres = sorted(round(f.centroid_column_row[0]) for f in fields)
    assert len(centres) == 2, centres
    assert abs(centres[0] - 260) < 20
    assert abs(centres[1] - 540) < 20


def test_air_inside_a_wide_bright_collimator_band_is_still_outside_the_body() -> None:
    # A collimated exposure: 40 mm of unexposed (bright) panel on three sides, the air between
    # it and the body reaching no image border.
    chest = _chest()
    chest[:, :80] = chest[:, -80:] = AIR
    image = np.pad(chest, ((0, 100), (100, 100)), constant_values=BODY + 40.0)
    fields = find_lung_fields(image, PIXEL_MM)
    centres = sorted(round(f.centroid_column_row[0]) - 100 for f in fields)
    assert len(centres) == 2, centres
    assert abs(centres[0] - 260) < 20
    assert abs(centres[1] - 540) < 20


def _lung_centres(fields: list[LungField]) -> list[int]:
    return sorted(round(f.centroid_column_row[0]) for f in fields)


def test_a_darker_region_above_the_shoulders_does_not_hide_the_lungs() -> None:
    # Under a brighter look-up table the air above the shoulders is not dark enough to be
    # taken for air around the body, and it is darker than the lungs: split on the whole body,
    # it alone is the dark class. It ends in the image's upper part, which no lung does.
    image = _chest()
    image[image == LUNG] = BODY - 30.0  # lungs only a little darker than the body
    image[:180, 40:110] = image[:180, -110:-40] = LUNG - 20.0  # above each shoulder
    readings = list(lung_field_readings(image, PIXEL_MM))
    assert _lung_centres(readings[0]) == _lung_centres(find_lung_fields(image, PIXEL_MM))
    assert readings[0] == [], "the first reading takes the shoulders' air for the dark class"
    centres = _lung_centres(readings[1])
    assert len(centres) == 2, centres
    assert abs(centres[0] - 260) < 25
    assert abs(centres[1] - 540) < 25


def test_a_lung_joined_to_dark_abdomen_is_read_again_at_a_lower_grey_level() -> None:
    # Gas or a darker look-up table greys the abdomen under the right lung: split on the whole
    # body, lung and abdomen are one dark region reaching far below the diaphragm (row 560).
    image = _chest()
    image[560:760, 150:370] = LUNG + 0.3 * (BODY - LUNG)
    readings = list(lung_field_readings(image, PIXEL_MM))
    first_right = min(readings[0], key=lambda f: f.centroid_column_row[0])
    last_right = min(readings[-1], key=lambda f: f.centroid_column_row[0])
    assert first_right.inferior_rows.max() > 700
    assert abs(float(np.median(last_right.inferior_rows)) - 560) < 15


def test_a_frame_band_along_the_bottom_is_not_a_diaphragm() -> None:
    image = _chest()
    image[-12:, 40:-40] = LUNG
    image[550:, 150:172] = LUNG  # dark soft tissue joining a lung to the band
    fields = find_lung_fields(image, PIXEL_MM)
    assert len(fields) == 2
    assert all(f.inferior_rows.max() < image.shape[0] - 12 for f in fields)


def test_a_diaphragm_sloping_at_35_degrees_is_flat_enough() -> None:
    # Row by row, a 35 degree boundary steps 0 or 1 rows per column, and two steps in a row
    # read as 45 degrees column to column.
    columns = np.arange(100, 300)
    rows = np.round(600.0 - 0.7 * (columns - 100)).astype(np.float64)
    heart = np.arange(300, 330)
    columns = np.concatenate([columns, heart])
    rows = np.concatenate([rows, rows[-1] - 4.0 * (heart - 299)])
    apex = diaphragm_apex(columns.astype(np.intp), rows, PIXEL_MM)
    assert apex is not None
    # Within the slope's 3 mm baseline of the heart border.
    assert abs(apex[1] - rows[199]) <= 3.0 / PIXEL_MM
    assert 280 <= apex[0] <= 300


def test_the_boundary_follows_the_diaphragm_where_the_segmentation_lost_the_medial_lung() -> None:
    size = 800
    rows, cols = np.mgrid[0:size, 0:size]
    edge = 600.0 - 0.3 * (cols - 100)  # rising gently to the heart border at column 350
    image = np.where(rows > edge, BODY, LUNG).astype(np.float32)
    image[:, 350:] = BODY  # heart and mediastinum
    columns = np.arange(100, 300)
    true_rows = 600.0 - 0.3 * (columns - 100)
    segmented = np.where(columns < 200, true_rows, true_rows - 40.0)  # off the edge medially
    field = LungField(
        columns=columns.astype(np.intp),
        inferior_rows=segmented,
        superior_row=100.0,
        centroid_column_row=(200.0, 350.0),
        area_mm2=20000.0,
        touches_top=False,
    )
    boundary_columns, boundary_rows = refined_inferior_boundary(field, image, PIXEL_MM, +1)
    apex = diaphragm_apex(boundary_columns, boundary_rows, PIXEL_MM)
    assert apex is not None
    assert 330 <= apex[0] <= 350, apex
    assert abs(apex[1] - (600.0 - 0.3 * 249)) <= 3, apex


def test_lung_over_liver_reads_the_sign_of_the_diaphragm_not_its_strength() -> None:
    """The same boundary reads as lung over liver whatever the look-up table, and not inverted."""
    image = _chest()
    field = find_lung_fields(image, PIXEL_MM)[0]
    assert lung_over_liver_fraction(field, image, PIXEL_MM) >= 0.95
    assert lung_over_liver_fraction(field, np.sqrt(image) * 0.01, PIXEL_MM) >= 0.95
    assert lung_over_liver_fraction(field, BODY - image, PIXEL_MM) <= 0.05


def test_the_boundary_is_not_moved_onto_a_collimation_band_along_the_bottom() -> None:
    """A white band's inner edge is the image's strongest rise: once it became the 'diaphragm'."""
    image = _chest()
    image[-120:, :] = 4.0 * BODY  # unexposed panel under the collimator: uniform, very bright
    field = max(find_lung_fields(image, PIXEL_MM), key=lambda f: -f.centroid_column_row[0])
    assert field.last_exposed_row is not None
    _, rows = refined_inferior_boundary(field, image, PIXEL_MM, medial_step=0)
    assert float(np.median(rows)) < 570.0  # the lung's own edge at row 560, the band at 680


def _diaphragm_image(band_rows: int, band_level: float) -> npt.NDArray[np.float32]:
    """Lung over liver with a flat diaphragm at row 600; ``band_rows`` of grey just above it."""
    image = np.full((800, 800), BODY, np.float32)
    image[100:600, 100:500] = LUNG
    image[600 - band_rows : 600, 100:500] = band_level
    return image


def test_a_second_diaphragm_contour_just_above_the_boundary_is_seen() -> None:
    # The dome top at row 575 over a grey posterior recess down to row 600: the boundary found
    # on the lower contour has the upper one above it along its whole length.
    columns = np.arange(120, 480).astype(np.intp)
    lower = np.full(columns.size, 600.0)
    doubled = _diaphragm_image(25, (LUNG + BODY) / 2.0)
    assert edge_above_fraction(columns, lower, doubled, PIXEL_MM) >= 0.9
    single = _diaphragm_image(0, LUNG)
    assert edge_above_fraction(columns, lower, single, PIXEL_MM) <= 0.05


def test_a_rib_crossing_above_the_diaphragm_is_not_a_second_contour() -> None:
    image = _diaphragm_image(0, LUNG)
    rows, cols = np.mgrid[0:800, 0:800]
    rib = np.abs(rows - (560.0 + 0.8 * (cols - 300))) < 6  # an oblique band, 15 mm tall
    image[rib & (rows < 600) & (cols >= 100) & (cols < 500)] = 130.0
    columns = np.arange(120, 480).astype(np.intp)
    assert edge_above_fraction(columns, np.full(columns.size, 600.0), image, PIXEL_MM) <= 0.15
