"""A kV/MV image pair registered to DRRs of a stored planning CT (as ``igrt register-pair``).

The views are received DICOM RT Images (a portal image, or a kV image with its source angle)
or frames of fluoroscopy uploads (their own geometry); the isocentre is given or taken from a
received RT Plan. The composition is the CLI's: :func:`igrt.imageio.read_rt_image` and
:meth:`registration.KvView.from_rt_image` or :meth:`registration.KvView.from_sequence`,
:func:`registration.plan_focus.plan_focus` for the plan's isocentre, and
:func:`registration.register_pair_to_drrs`; the document is the CLI's ``result.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.ingest import read_stored_sequence
from api.plan_registration import PlanSources, plan_focus_from_store
from api.storage import FileStore
from api.volumes import read_stored_volume

__all__ = ["PairIsocentre", "PairViewSource", "register_stored_pair"]


@dataclass(frozen=True)
class PairViewSource:
    """One view: a stored RT Image, or a frame of a stored fluoroscopy sequence.

    Attributes
    ----------
    rt_image_path, sequence_path : str or None
        Exactly one is set (paths relative to the store root).
    frame_index : int
        The sequence's frame (ignored for an RT Image).
    modality : str
        ``kv`` or ``mv``: the beam that made the image (not guessed from the file).
    intensity : str
        What an RT Image's pixels mean: ``raw`` panel signal or ``line_integral``.
    kv_source_deg : float or None
        The kV source angle of an RT Image, degrees IEC 61217 (RT Images state only the
        treatment gantry angle); ``None`` takes the file's.
    """

    rt_image_path: str | None
    sequence_path: str | None
    frame_index: int
    modality: str
    intensity: str
    kv_source_deg: float | None


@dataclass(frozen=True)
class PairIsocentre:
    """The isocentre given (LPS mm), or the plan to take it from."""

    given_lps_mm: tuple[float, float, float] | None
    plan: PlanSources | None


def _view(store: FileStore, source: PairViewSource) -> Any:
    from igrt.imageio import read_rt_image
    from igrt.sequence import IntensityValues
    from registration import ImagingModalityValues, KvView

    beam = ImagingModalityValues.parse(source.modality.upper())
    if source.rt_image_path is not None:
        image = read_rt_image(
            store.path(source.rt_image_path), imaging_source_gantry_deg=source.kv_source_deg
        )
        return KvView.from_rt_image(
            image, intensity=IntensityValues(source.intensity), modality=beam
        )
    assert source.sequence_path is not None
    view = KvView.from_sequence(
        read_stored_sequence(store, source.sequence_path), source.frame_index
    )
    return KvView(view.image, view.geometry, view.intensity, beam)


def register_stored_pair(
    store: FileStore,
    planning_path: str,
    views: list[PairViewSource],
    isocentre: PairIsocentre,
    *,
    patient_position: str,
) -> dict[str, Any]:
    """The pair's result document (``kind``, ``isocentre_source`` and the engine's result).

    Raises
    ------
    IgrtError
        Unreadable views, a plan that cannot give the isocentre, views the engine refuses
        (e.g. parallel beams); a registration that does not converge is a ``failed`` result.
    """
    from registration import register_pair_to_drrs

    ct = read_stored_volume(store, planning_path)
    if isocentre.plan is not None:
        focus = plan_focus_from_store(store, ct, isocentre.plan)
        point = [float(v) for v in focus.isocentre_lps_mm]
        source = focus.isocentre_source
    else:
        assert isocentre.given_lps_mm is not None
        point, source = list(isocentre.given_lps_mm), "given"
    result = register_pair_to_drrs(
        ct,
        [_view(store, view) for view in views],
        isocentre_lps_mm=point,
        patient_position=patient_position,
        threads=1,
    )
    return {"kind": "pair_2d", "isocentre_source": source, **result.to_dict()}
