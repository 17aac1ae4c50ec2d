"""The objects one running service shares between requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.core.config import Settings
from api.db.engine import make_engine, make_session_factory
from api.ingest import ImageLimits
from api.live_monitor import LiveMonitorHub, RedisLiveMonitorHub
from api.metrics import Metrics
from api.previews import FramePreviews
from api.registration_jobs import RegistrationWorker
from api.storage import FileStore
from api.volumes import VolumeLimits

__all__ = ["Service"]


@dataclass
class Service:
    """Settings, database, file store, metrics and registration worker of one instance."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: FileStore
    limits: ImageLimits
    metrics: Metrics
    volume_limits: VolumeLimits
    pepper: bytes = field(default=b"", repr=False)
    registrations: RegistrationWorker = field(init=False, repr=False)
    previews: FramePreviews = field(init=False, repr=False)
    live: LiveMonitorHub = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.registrations = RegistrationWorker(self)
        self.previews = FramePreviews(self.store)
        # Replicas share what streams send through Redis; one process needs no broker.
        url = self.settings.redis_url
        self.live = RedisLiveMonitorHub(url) if url else LiveMonitorHub()

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        """Build everything; nothing touches the disk or the database until start-up."""
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            store=FileStore(settings.store_dir, settings.temp_dir),
            limits=ImageLimits(
                max_frames=settings.max_frames,
                max_rows=settings.max_image_rows,
                max_columns=settings.max_image_columns,
                max_decoded_bytes=settings.max_decoded_bytes,
            ),
            metrics=Metrics(),
            volume_limits=VolumeLimits(
                max_voxels=settings.max_volume_voxels,
                max_decoded_bytes=settings.max_decoded_bytes,
            ),
        )
