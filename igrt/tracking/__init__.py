"""Diaphragm-dome tracking on kV fluoroscopy and CBCT projections."""

from igrt.tracking.detection import DomeCandidate, HemidiaphragmValues, find_domes
from igrt.tracking.results import DomeObservation, DomeTrack, TrackingStatusValues
from igrt.tracking.tracker import DomeTracker, TrackerSettings, track_dome

__all__ = [
    "DomeCandidate",
    "DomeObservation",
    "DomeTrack",
    "DomeTracker",
    "HemidiaphragmValues",
    "TrackerSettings",
    "TrackingStatusValues",
    "find_domes",
    "track_dome",
]
