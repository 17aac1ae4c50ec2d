"""The DICOM receiver: a C-STORE and C-ECHO SCP (pynetdicom) on the service's persistence.

Hostile-input discipline, at each layer:

* **Association**: the called AE title must be ours and the calling AE title one of the
  configured senders (else A-ASSOCIATE-RJ, "calling AE title not recognised"); at most
  ``max_associations`` at once (else rejected, transient); ACSE, DIMSE and network timeouts
  end stalled peers; only the allow-listed SOP classes and transfer syntaxes are accepted in
  presentation contexts (:mod:`api.dicom.objects`), so an unknown one is refused at
  negotiation.
* **Size**: the dataset fragments of each message are counted as the PDUs arrive; a message
  growing past ``max_instance_bytes`` aborts the association before it is assembled, and
  nothing of it is stored.
* **C-STORE**: unreadable, unidentified or inconsistent instances get a failure status with a
  comment (0xC000 cannot understand, 0xA900 dataset does not match SOP class); storage or
  database trouble 0xA700 (out of resources). Success (0x0000) is sent only after
  :func:`api.dicom.intake.take_in` has fsync'ed the file and committed its row.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydicom.dataset import Dataset

from api.core.config import Settings
from api.dicom.intake import Received, take_in
from api.dicom.objects import (
    ACCEPTED_SOP_CLASSES,
    ACCEPTED_TRANSFER_SYNTAXES,
    SourceRoleValues,
)
from api.dicom.processing import DicomProcessor, ProcessingContext
from api.service import Service
from api.storage import FileStore
from igrt.errors import InvalidInputError, ProcessingError

__all__ = [
    "DicomReceiver",
    "DicomReceiverSettings",
    "Status",
    "parse_allowed_aes",
]

_LOG = logging.getLogger("api.dicom.receiver")
_MIB = 1024 * 1024
_AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$")


class Status:
    """The C-STORE statuses this receiver answers with (PS3.4 Annex B, PS3.7 Annex C)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    SOP_CLASS_NOT_SUPPORTED = 0x0122


def _check_ae_title(value: str, what: str) -> str:
    if not _AE_TITLE.match(value):
        raise ValueError(
            f"{what} {value!r} is not an AE title (1 to 16 printable ASCII characters, no "
            "backslash, no leading or trailing space)"
        )
    return value


def parse_allowed_aes(text: str) -> dict[str, SourceRoleValues]:
    """``"CTSIM=planning,XVI1=treatment"`` -> ``{"CTSIM": PLANNING, "XVI1": TREATMENT}``.

    Raises
    ------
    ValueError
        An entry without ``=ROLE``, an unknown role, or an invalid AE title.

    Examples
    --------
    >>> parse_allowed_aes("CTSIM=planning, XVI1=treatment")["XVI1"].value
    'treatment'
    """
    allowed: dict[str, SourceRoleValues] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        title, separator, role = entry.partition("=")
        if not separator:
            raise ValueError(f"allowed AE {entry!r} needs a role: AE=planning or AE=treatment")
        try:
            allowed[_check_ae_title(title.strip(), "calling AE")] = SourceRoleValues(
                role.strip().lower()
            )
        except ValueError as exc:
            raise ValueError(f"allowed AE {entry!r}: {exc}") from exc
    return allowed


class DicomReceiverSettings(BaseSettings):
    """The receiver's own settings (``IGRT_DICOM_*``; the CLI's flags override them).

    The data directory and database are the service's (:class:`api.core.config.Settings`).
    """

    model_config = SettingsConfigDict(env_prefix="IGRT_DICOM_", extra="ignore", frozen=True)

    ae_title: str = "IGRT"
    host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=0, le=65535)
    allowed_aes: str = Field(
        default="", description="Calling AE titles with their role: 'CTSIM=planning,XVI=treatment'."
    )
    max_instance_bytes: int = Field(default=1024 * _MIB, gt=0)
    max_associations: int = Field(default=4, ge=1, le=64)
    max_pdu_bytes: int = Field(default=_MIB, ge=4096, le=64 * _MIB)
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    network_timeout_s: float = Field(default=120.0, gt=0)
    fraction_window_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    series_settle_s: float = Field(default=5.0, ge=0, le=3600)

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return _check_ae_title(value, "AE title")

    @field_validator("allowed_aes")
    @classmethod
    def _allowed(cls, value: str) -> str:
        parse_allowed_aes(value)
        return value

    @property
    def senders(self) -> dict[str, SourceRoleValues]:
        """The allowed calling AE titles and their roles."""
        return parse_allowed_aes(self.allowed_aes)


@dataclass
class _Inflight:
    """Dataset bytes of the message an association is receiving."""

    dataset_bytes: int = 0
    aborted: bool = False


def _dataset_fragments(pdu: bytes) -> list[tuple[int, bool]]:
    """(size, last) of each dataset fragment in a P-DATA-TF PDU (PS3.8 9.3.5 and Annex E)."""
    fragments: list[tuple[int, bool]] = []
    if pdu[:1] != b"\x04":
        return fragments
    offset = 6
    while offset + 6 <= len(pdu):
        item_length = int.from_bytes(pdu[offset : offset + 4], "big")
        control = pdu[offset + 5]
        if not control & 0x01:  # bit 0 clear: a dataset (not a command) fragment
            fragments.append((max(0, item_length - 2), bool(control & 0x02)))
        offset += 4 + item_length
    return fragments


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


@dataclass
class DicomReceiver:
    """A running receiver: the AE, its server thread, and the processing worker."""

    service: Service
    settings: DicomReceiverSettings
    processor: DicomProcessor = field(init=False)
    store: FileStore = field(init=False)
    _server: Any = field(default=None, init=False, repr=False)
    _inflight: weakref.WeakKeyDictionary[Any, _Inflight] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        service_settings = self.service.settings
        # Its own staging folder (same file system as the store): the HTTP service clears its
        # own staging folder at start-up, which must not remove an instance being received.
        self.store = FileStore(service_settings.store_dir, service_settings.temp_dir / "dicom")
        self.processor = DicomProcessor(
            ProcessingContext(
                store=self.store,
                sessions=self.service.sessions,
                limits=self.service.limits,
                volume_limits=self.service.volume_limits,
                registrations=self.service.registrations,
                auto_register=service_settings.dicom_auto_register,
            ),
            settle_s=self.settings.series_settle_s,
        )

    @classmethod
    def from_settings(
        cls, service_settings: Settings, settings: DicomReceiverSettings
    ) -> DicomReceiver:
        """Build on the service's database and store (nothing runs until :meth:`start`)."""
        return cls(Service.from_settings(service_settings), settings)

    @property
    def port(self) -> int:
        """The TCP port listened on (the real one when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Migrate the database, queue leftover work, and listen (returns at once).

        Raises
        ------
        InvalidInputError
            No calling AE is configured: a receiver that accepts anyone is not offered.
        ProcessingError
            The address cannot be listened on.
        """
        from api.db.migrate import upgrade

        senders = self.settings.senders
        if not senders:
            raise InvalidInputError(
                "configure at least one calling AE (AE=planning or AE=treatment)",
                field="allowed_aes",
            )
        self.service.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.store.prepare()
        upgrade(self.service.engine)
        self.processor.start()
        try:
            self._server = self._make_ae(list(senders)).start_server(
                (self.settings.host, self.settings.port),
                block=False,
                evt_handlers=self._handlers(),
            )
        except OSError as exc:  # the port is taken, or the address is not ours
            self.processor.stop()
            raise ProcessingError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}"
            ) from exc
        _LOG.info(
            "dicom receiver listening",
            extra={"ae_title": self.settings.ae_title, "port": self.port},
        )

    def stop(self) -> None:
        """Stop listening, end associations, finish the task at hand."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.processor.stop()
        # Registrations it queued and started run to their end; queued ones stay queued
        # (the service's restart policy runs them).
        self.service.registrations.shutdown()
        self.service.engine.dispose()

    def _make_ae(self, calling_aes: list[str]) -> Any:
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        settings = self.settings
        ae = AE(ae_title=settings.ae_title)
        ae.require_called_aet = True
        ae.require_calling_aet = calling_aes
        ae.maximum_associations = settings.max_associations
        ae.maximum_pdu_size = settings.max_pdu_bytes
        ae.acse_timeout = settings.acse_timeout_s
        ae.dimse_timeout = settings.dimse_timeout_s
        ae.network_timeout = settings.network_timeout_s
        for sop_class in ACCEPTED_SOP_CLASSES:
            ae.add_supported_context(sop_class, list(ACCEPTED_TRANSFER_SYNTAXES))
        ae.add_supported_context(Verification)
        return ae

    def _handlers(self) -> list[tuple[Any, Any]]:
        from pynetdicom import evt

        return [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]

    # --- handlers (pynetdicom threads) --------------------------------------------------

    def _on_data(self, event: Any) -> None:
        """Abort an association whose message grows beyond the instance size limit."""
        fragments = _dataset_fragments(event.data)
        if not fragments:
            return
        with self._lock:
            state = self._inflight.setdefault(event.assoc, _Inflight())
            for size, last in fragments:
                state.dataset_bytes += size
                over = state.dataset_bytes > self.settings.max_instance_bytes
                if over and not state.aborted:
                    state.aborted = True
                    _LOG.warning(
                        "dicom association aborted: instance larger than the limit",
                        extra={"limit_bytes": self.settings.max_instance_bytes},
                    )
                    event.assoc.abort()
                if last:
                    state.dataset_bytes = 0

    def _on_close(self, event: Any) -> None:
        self.processor.association_ended(id(event.assoc))

    def _on_echo(self, event: Any) -> int:
        return Status.SUCCESS

    def _on_store(self, event: Any) -> Dataset | int:
        transfer_syntax = str(event.context.transfer_syntax)
        sop_class = str(event.request.AffectedSOPClassUID)
        if sop_class not in ACCEPTED_SOP_CLASSES:
            return _status(Status.SOP_CLASS_NOT_SUPPORTED, "SOP class not accepted")
        if transfer_syntax not in ACCEPTED_TRANSFER_SYNTAXES:
            return _status(Status.CANNOT_UNDERSTAND, "transfer syntax not accepted")
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        role = self.settings.senders.get(calling_ae)
        if role is None:  # pragma: no cover - refused at association already
            return _status(Status.CANNOT_UNDERSTAND, "calling AE not allowed")
        received = Received(
            encoded=event.encoded_dataset(),
            transfer_syntax_uid=transfer_syntax,
            affected_sop_class_uid=sop_class,
            affected_sop_instance_uid=str(event.request.AffectedSOPInstanceUID),
            calling_ae=calling_ae,
            role=role,
        )
        if len(received.encoded) > self.settings.max_instance_bytes:
            return _status(Status.OUT_OF_RESOURCES, "instance larger than the limit")
        try:
            result = take_in(
                self.store,
                self.service.sessions,
                received,
                fraction_window=timedelta(hours=self.settings.fraction_window_hours),
            )
        except InvalidInputError as exc:
            code = (
                Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
                if exc.field == "SOPClassUID"
                else Status.CANNOT_UNDERSTAND
            )
            _LOG.info("dicom instance refused", extra={"field": exc.field})
            return _status(code, str(exc))
        except Exception:
            _LOG.exception("dicom instance not stored")
            return _status(Status.OUT_OF_RESOURCES, "not stored: storage or database failure")
        if result.pending:
            self._submit(result.row_id, id(event.assoc))
        return Status.SUCCESS

    def _submit(self, instance_id: str, association: int) -> None:
        from api.db.models import DicomInstance
        from api.dicom.objects import ObjectKindValues

        with self.service.sessions() as db:
            row = db.get(DicomInstance, instance_id)
            if row is None:  # pragma: no cover - committed just before
                return
            kind, session_id, series = row.kind, row.session_id, row.series_instance_uid
        self.processor.submit(
            instance_id, ObjectKindValues(kind), session_id, series, association=association
        )
