"""Fluoroscopy frames as display PNGs (``GET /uploads/{id}/frames/{index}``).

Raw panel counts are shown attenuation-bright (``-ln(counts)``) in one grey window for the
whole clip: the 0.5th to 99.5th percentile of the first frame. The expected images are computed
here from the frames that were uploaded.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from api.enums import RoleValues
from igrt.sequence import FluoroSequence
from tests.api.conftest import InProcessApi

ROWS, COLUMNS = 48, 64
GEOMETRY: dict[str, Any] = {
    "sad_mm": 1000,
    "sdd_mm": 1536,
    "pixel_pitch_u_mm": 0.8,
    "pixel_pitch_v_mm": 0.8,
}


def expected_grey(
    frames: npt.NDArray[Any], index: int, *, raw: bool = True
) -> npt.NDArray[np.uint8]:
    """The display of ``frames[index]`` by the documented rule."""

    def values(frame: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        as_float = frame.astype(np.float64)
        return -np.log(np.maximum(as_float, 1.0)) if raw else as_float

    low, high = np.percentile(values(frames[0]), (0.5, 99.5))
    scaled = np.clip((values(frames[index]) - low) / (high - low), 0.0, 1.0)
    return np.asarray((scaled * 255.0).round(), dtype=np.uint8)


def decode(png: bytes) -> npt.NDArray[np.uint8]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    assert image.dtype == np.uint8
    assert image.ndim == 2  # grey
    return np.asarray(image)


def assert_display_equal(actual: npt.NDArray[np.uint8], expected: npt.NDArray[np.uint8]) -> None:
    """Equal up to float32 rounding: at most one grey level, on very few pixels."""
    assert actual.shape == expected.shape
    difference = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 0.01 * difference.size


def frame_url(upload_id: str, index: int | str) -> str:
    return f"/api/v1/uploads/{upload_id}/frames/{index}"


@pytest.fixture
def session_id(api: InProcessApi) -> str:
    return str(api.create_session(api.create_patient()["id"])["id"])


def upload_raw(
    api: InProcessApi, session_id: str, frames: npt.NDArray[np.uint16], **form: Any
) -> dict[str, Any]:
    response = api.upload(
        session_id,
        frames.astype("<u2").tobytes(),
        fmt="raw",
        content_type="application/octet-stream",
        filename="clip.raw",
        n_frames=frames.shape[0],
        rows=frames.shape[1],
        columns=frames.shape[2],
        fps=5,
        **GEOMETRY,
        **form,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
def counts() -> npt.NDArray[np.uint16]:
    """Three raw frames: counts, the same with half the signal, and the first again."""
    rng = np.random.default_rng(7)
    first = rng.integers(50, 60_000, size=(ROWS, COLUMNS)).astype(np.uint16)
    return np.stack([first, first // 2, first]).astype(np.uint16)


def test_raw_counts_are_shown_attenuation_bright_in_the_first_frames_window(
    api: InProcessApi, session_id: str, counts: npt.NDArray[np.uint16]
) -> None:
    upload = upload_raw(api, session_id, counts)
    assert upload["intensity"] == "raw"
    images = []
    for index in range(3):
        response = api.client.get(frame_url(upload["id"], index), headers=api.headers())
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == "private, no-cache"
        images.append(decode(response.content))
        # Revalidation: the same frame costs a 304, still only with a valid credential.
        etag = response.headers["etag"]
        again = api.client.get(
            frame_url(upload["id"], index), headers={**api.headers(), "If-None-Match": etag}
        )
        assert again.status_code == 304
        assert again.content == b""
        refused = api.client.get(frame_url(upload["id"], index), headers={"If-None-Match": etag})
        assert refused.status_code == 401
        assert_display_equal(images[-1], expected_grey(counts, index))

    first, halved, again = images
    # Attenuation bright: the most counts (least attenuation) is black, the fewest is white,
    # and the grey never rises with the counts.
    assert first.flat[np.argmax(counts[0])] == 0
    assert first.flat[np.argmin(counts[0])] == 255
    order = np.argsort(counts[0], axis=None, kind="stable")
    assert np.all(np.diff(first.ravel()[order].astype(np.int16)) <= 1)
    # The window is the first frame's percentiles, not its extremes: 0.5 % is clipped at each
    # end (plus the pixels that round to 0 or 255).
    assert 0.004 < np.mean(first == 0) < 0.03
    assert 0.004 < np.mean(first == 255) < 0.03
    # One window for the clip: half the counts is brighter (a per-frame window would show the
    # same picture again), and the same counts give the same picture.
    assert halved.mean() > first.mean() + 5
    assert np.all(halved >= first)
    np.testing.assert_array_equal(again, first)


def test_line_integrals_are_shown_as_they_are(
    api: InProcessApi, session_id: str, counts: npt.NDArray[np.uint16]
) -> None:
    upload = upload_raw(api, session_id, counts, intensity="line_integral")
    assert upload["intensity"] == "line_integral"
    for index in (0, 1):
        response = api.client.get(frame_url(upload["id"], index), headers=api.headers())
        assert response.status_code == 200, response.text
        image = decode(response.content)
        assert_display_equal(image, expected_grey(counts, index, raw=False))
    first = decode(api.client.get(frame_url(upload["id"], 0), headers=api.headers()).content)
    assert first.flat[np.argmax(counts[0])] == 255  # here the largest value is the brightest


def test_a_constant_first_frame_does_not_divide_by_zero(api: InProcessApi, session_id: str) -> None:
    frames = np.full((2, ROWS, COLUMNS), 1000, dtype=np.uint16)
    frames[1, : ROWS // 2] = 10  # fewer counts: more attenuation than the first frame
    upload = upload_raw(api, session_id, frames)
    first = decode(api.client.get(frame_url(upload["id"], 0), headers=api.headers()).content)
    second = decode(api.client.get(frame_url(upload["id"], 1), headers=api.headers()).content)
    assert np.all(first == 0)
    assert np.all(second[: ROWS // 2] == 255)
    assert np.all(second[ROWS // 2 :] == 0)


def test_a_simulated_clip_matches_its_frames(
    api: InProcessApi, session_id: str, mha_bytes: bytes, fluoro_sequence: FluoroSequence
) -> None:
    response = api.upload(
        session_id,
        mha_bytes,
        fmt="mha",
        content_type="application/octet-stream",
        filename="fluoro.mha",
    )
    assert response.status_code == 201, response.text
    upload_id = response.json()["id"]
    last = len(fluoro_sequence.frames) - 1
    for index in (0, last):
        png = api.client.get(frame_url(upload_id, index), headers=api.headers(RoleValues.CONSOLE))
        assert png.status_code == 200, png.text
        assert_display_equal(decode(png.content), expected_grey(fluoro_sequence.frames, index))


def test_frames_that_do_not_exist(
    api: InProcessApi, session_id: str, counts: npt.NDArray[np.uint16]
) -> None:
    upload_id = upload_raw(api, session_id, counts)["id"]
    headers = api.headers()

    past_the_end = api.client.get(frame_url(upload_id, 3), headers=headers)
    assert past_the_end.status_code == 404, past_the_end.text
    assert past_the_end.json()["field"] == "frame_index"
    assert "3 frames" in past_the_end.json()["detail"]

    for index in ("-1", "1000001", "one", "1.5"):
        invalid = api.client.get(frame_url(upload_id, index), headers=headers)
        assert invalid.status_code == 422, (index, invalid.text)
        assert invalid.json()["field"] == "frame_index", index

    unknown = api.client.get(frame_url("no-such-upload", 0), headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "upload_id"


def test_frames_need_a_token_of_any_role(
    api: InProcessApi, session_id: str, counts: npt.NDArray[np.uint16]
) -> None:
    upload_id = upload_raw(api, session_id, counts)["id"]
    assert api.client.get(frame_url(upload_id, 0)).status_code == 401
    bad = {"Authorization": "Bearer igrt_not-a-real-token"}
    assert api.client.get(frame_url(upload_id, 0), headers=bad).status_code == 401
    pngs = {
        role: api.client.get(frame_url(upload_id, 0), headers=api.headers(role))
        for role in RoleValues
    }
    assert all(response.status_code == 200 for response in pngs.values())
    assert len({response.content for response in pngs.values()}) == 1
