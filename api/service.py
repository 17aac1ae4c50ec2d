"""The objects one running service shares between requests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.audit import ReadAudit
from api.core.config import Settings
from api.db.engine import make_engine, make_session_factory, make_write_session_factory
from api.first_run import FirstRunFile
from api.frame_lanes import FrameLanes
from api.ingest import ImageLimits
from api.live_monitor import LiveMonitorHub, RedisLiveMonitorHub
from api.metrics import Metrics
from api.previews import FramePreviews
from api.registration_jobs import RegistrationWorker
from api.storage import FileStore
from api.stream_slots import StreamSlots
from api.token_reader import TokenReader
from api.volumes import VolumeLimits
from api.work_budget import WorkBudget
from igrt.protocol_file import LoadedProtocol, builtin_protocol, load_protocol_file

if TYPE_CHECKING:
    from api.dicom.processing import DicomProcessor

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
    write_sessions: sessionmaker[Session] = field(init=False, repr=False)
    tokens: TokenReader = field(init=False, repr=False)
    registrations: RegistrationWorker = field(init=False, repr=False)
    stream_slots: StreamSlots = field(init=False, repr=False)
    frame_lanes: FrameLanes = field(init=False, repr=False)
    read_audit: ReadAudit = field(init=False, repr=False)
    first_run: FirstRunFile = field(init=False, repr=False)
    monitor_slots: StreamSlots = field(init=False, repr=False)
    previews: FramePreviews = field(init=False, repr=False)
    live: LiveMonitorHub = field(init=False, repr=False)
    heavy_work: WorkBudget = field(init=False, repr=False)
    protocol: LoadedProtocol = field(init=False, repr=False)
    _dicom_processor: DicomProcessor | None = field(default=None, init=False, repr=False)
    _dicom_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def dicom_processor(self) -> DicomProcessor:
        """The processing of DICOM instances filed by this process (quarantine releases).

        Started on first use and without recovering other work: what the receiver left
        pending is the receiver's to process (it queues it again at its next start).
        """
        from api.dicom.processing import DicomProcessor, ProcessingContext

        with self._dicom_lock:
            if self._dicom_processor is None:
                processor = DicomProcessor(
                    ProcessingContext(
                        store=self.store,
                        sessions=self.sessions,
                        limits=self.limits,
                        volume_limits=self.volume_limits,
                        registrations=self.registrations,
                        auto_register=self.settings.dicom_auto_register,
                    ),
                    settle_s=0.0,
                )
                processor.start(recover=False)
                self._dicom_processor = processor
            return self._dicom_processor

    def stop_dicom_processor(self) -> None:
        """Finish the DICOM task at hand, if processing was ever started (idempotent)."""
        with self._dicom_lock:
            processor, self._dicom_processor = self._dicom_processor, None
        if processor is not None:
            processor.stop()

    def __post_init__(self) -> None:
        # The active protocol is read once, at start: a broken file stops the service rather
        # than letting it decide under defaults nobody chose.
        self.protocol = (
            builtin_protocol()
            if self.settings.protocol_file is None
            else load_protocol_file(self.settings.protocol_file)
        )
        self.write_sessions = make_write_session_factory(self.engine)
        self.tokens = TokenReader(self.engine, self.sessions)
        # Each audit row is read (its session's patient) then written: IMMEDIATE, or parallel
        # reads of one page would refuse each other's audit writes on SQLite.
        self.read_audit = ReadAudit(self.write_sessions)
        self.first_run = FirstRunFile(
            self.settings.first_run_token_path, self.settings.first_run_token_ttl_s
        )
        settings = self.settings
        self.stream_slots = StreamSlots(
            max_total=settings.stream_max_open, max_per_token=settings.stream_max_per_token
        )
        self.frame_lanes = FrameLanes(settings.stream_search_threads)
        self.monitor_slots = StreamSlots(
            max_total=settings.monitor_max_open, max_per_token=settings.monitor_max_per_token
        )
        self.heavy_work = WorkBudget(
            max_concurrent=settings.heavy_work_max_concurrent, wait_s=settings.heavy_work_wait_s
        )
        self.registrations = RegistrationWorker(self)
        self.previews = FramePreviews(self.store)
        # Replicas share what streams send through Redis; one process needs no broker.
        url = self.settings.redis_url
        self.live = RedisLiveMonitorHub(url) if url else LiveMonitorHub()

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        """Build everything; nothing touches the disk or the database until start-up."""
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            pool_timeout_s=settings.db_pool_timeout_s,
        )
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
