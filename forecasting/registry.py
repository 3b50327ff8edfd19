"""Read and write trained per-meter models under ``models/``.

The registry is the only contract between the training worker and the API, and the only code that
builds paths under ``models/``::

    models/<meter_type>/<meter_id>/<version>/{model.keras, metadata.json}
    models/<meter_type>/<meter_id>/ACTIVE          # {"version": "<version>", ...}

A version is written into a hidden staging directory and renamed into place, and ``ACTIVE`` is
replaced atomically only after that, so a crash at any moment leaves either no new version or a
complete one, and ``ACTIVE`` always names a complete version. Removal renames a version out of the
listing before deleting it, for the same reason. Versions (``YYYYMMDDTHHMMSSZ-<6 hex>``) sort by
creation time, so "newest" is a string comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import PROJECT_ROOT
from forecasting.errors import InvalidMeterKeyError, ModelNotFoundError
from forecasting.meter_key import METER_TYPE_PATTERN, check_meter_id

try:  # POSIX; on Windows mutations of one meter are serialised per process only.
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

MODEL_FILENAME = "model.keras"
METADATA_FILENAME = "metadata.json"
ACTIVE_FILENAME = "ACTIVE"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
LOCK_FILENAME = ".lock"
METER_TYPE_MAX_LENGTH = 64
VERSION_PATTERN = r"^\d{8}T\d{6}Z-[0-9a-f]{6}$"

_METER_TYPE = re.compile(METER_TYPE_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
_VERSION_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_SUFFIX_SPACE = 0x1000000
_RENAME_ATTEMPTS = 5
_ACTIVE_READ_ATTEMPTS = 5

ArtifactWriter = Callable[[Path], None]


class ModelVersionNotFoundError(ModelNotFoundError):
    """A specific version was asked for and does not exist (or is incomplete)."""

    def __init__(self, meter_type: str, meter_id: str, version: str) -> None:
        super().__init__(meter_type, meter_id)
        self.args = (f"Meter '{meter_id}' of type '{meter_type}' has no model version '{version}'.",)
        self.version = version


@dataclass(frozen=True)
class ModelVersion:
    """One complete, saved model of one meter."""

    meter_type: str
    meter_id: str
    version: str
    path: Path
    metadata: dict[str, Any]
    is_active: bool

    @property
    def model_path(self) -> Path:
        """The Keras model file written by the training job."""
        return self.path / MODEL_FILENAME

    @property
    def display_path(self) -> str:
        """The version's folder as job results report it.

        Relative to the project folder when the models folder is inside it (the default:
        ``models/electricity/pjm_ekpc/<version>``), so results do not depend on where the checkout
        lives; absolute otherwise (``MODELS_DIR=/srv/models``), where a relative path would mislead.
        """
        path = self.path.resolve()
        return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def check_version(version: str) -> str:
    """Return ``version`` unchanged, or raise if it is not a registry version id."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise InvalidMeterKeyError("Invalid model version: expected YYYYMMDDTHHMMSSZ-<6 hex digits>.")
    return version


def new_version_id(after: str | None = None) -> str:
    """A fresh version id; when ``after`` is given, one that sorts strictly after it.

    The random suffix keeps ids of concurrent writers apart; ``after`` keeps versions saved within
    the same second (or after the clock stepped back) in save order.
    """
    now = datetime.now(UTC).strftime(_VERSION_TIME_FORMAT)
    if after is not None:
        check_version(after)
    if after is None or now > after[:16]:
        return f"{now}-{secrets.randbelow(_SUFFIX_SPACE):06x}"
    stamp, suffix = after[:16], int(after[17:], 16) + 1 + secrets.randbelow(0x1000)
    if suffix >= _SUFFIX_SPACE:
        moment = datetime.strptime(stamp, _VERSION_TIME_FORMAT).replace(tzinfo=UTC).timestamp() + 1
        stamp = datetime.fromtimestamp(moment, UTC).strftime(_VERSION_TIME_FORMAT)
        suffix = secrets.randbelow(0x1000)
    return f"{stamp}-{suffix:06x}"


def _fsync_dir(path: Path) -> None:
    """Make a rename or new entry in ``path`` durable; directories cannot be opened on Windows."""
    if os.name != "posix":  # pragma: no cover
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_file_durably(path: Path, content: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _read_metadata(version_dir: Path) -> dict[str, Any] | None:
    """The version's metadata, or ``None`` if the directory is not a complete version."""
    try:
        content = json.loads((version_dir / METADATA_FILENAME).read_text(encoding="utf-8"))
    except (
        FileNotFoundError,
        NotADirectoryError,
        json.JSONDecodeError,
        UnicodeDecodeError,
    ):
        return None
    return content if isinstance(content, dict) else None


class ModelRegistry:
    """Versioned per-meter model store rooted at ``root`` (``Settings.models_dir``)."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._resolved_root = self._root.resolve()
        self._thread_locks: dict[Path, threading.Lock] = {}
        self._thread_locks_guard = threading.Lock()

    @property
    def root(self) -> Path:
        return self._root

    def meter_dir(self, meter_type: str, meter_id: str) -> Path:
        """The directory of one meter's versions (not created).

        Raises:
            InvalidMeterKeyError: a type or id that could steer the path, or a path that resolves
                outside the root (e.g. through a symlink).
        """
        if (
            not isinstance(meter_type, str)
            or len(meter_type) > METER_TYPE_MAX_LENGTH
            or not _METER_TYPE.fullmatch(meter_type)
        ):
            raise InvalidMeterKeyError("Invalid meter_type: use lowercase letters, digits and '_'.")
        if not isinstance(meter_id, str):
            raise InvalidMeterKeyError("Invalid meter_id: not a string.")
        check_meter_id(meter_id)
        path = self._root / meter_type / meter_id
        if not path.resolve().is_relative_to(self._resolved_root):
            raise InvalidMeterKeyError(f"Invalid meter_id: '{meter_id}' leaves the model store.")
        return path

    # -- writing ---------------------------------------------------------------------------------

    def save_version(
        self,
        meter_type: str,
        meter_id: str,
        *,
        write_artifacts: ArtifactWriter,
        metadata: dict[str, Any],
        activate: bool,
    ) -> ModelVersion:
        """Store a new version; ``write_artifacts(directory)`` writes the model files into it.

        ``metadata.json`` holds ``metadata`` plus the registry's ``version``, ``meter_type``,
        ``meter_id`` and ``saved_at``. With ``activate`` the new version becomes the one served.
        On any exception the staging directory is removed and the exception re-raised; ``ACTIVE``
        then still names the previous version.
        """
        meter_dir = self.meter_dir(meter_type, meter_id)
        meter_dir.mkdir(parents=True, exist_ok=True)
        version = new_version_id(self._newest_version_name(meter_dir))
        staging = meter_dir / f"{STAGING_PREFIX}{version}-{os.getpid()}-{secrets.token_hex(2)}"
        staging.mkdir()
        try:
            write_artifacts(staging)
            version_dir = self._publish(
                staging=staging,
                meter_dir=meter_dir,
                version=version,
                meter_type=meter_type,
                meter_id=meter_id,
                metadata=metadata,
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if activate:
            with self._meter_lock(meter_dir):
                self._write_active(meter_dir, version_dir.name)
        saved_metadata = _read_metadata(version_dir) or {}
        return ModelVersion(
            meter_type,
            meter_id,
            version_dir.name,
            version_dir,
            saved_metadata,
            is_active=activate,
        )

    def _publish(
        self,
        *,
        staging: Path,
        meter_dir: Path,
        version: str,
        meter_type: str,
        meter_id: str,
        metadata: dict[str, Any],
    ) -> Path:
        """Write metadata and rename ``staging`` to a version name nobody else has taken."""
        for _ in range(_RENAME_ATTEMPTS):
            content = {
                **metadata,
                "version": version,
                "meter_type": meter_type,
                "meter_id": meter_id,
                "saved_at": datetime.now(UTC).isoformat(),
            }
            _write_file_durably(staging / METADATA_FILENAME, json.dumps(content, indent=2, default=str))
            _fsync_dir(staging)
            version_dir = meter_dir / version
            try:
                # os.rename refuses a non-empty target, and versions are never empty: no overwrite.
                os.rename(staging, version_dir)
            except OSError:
                if not version_dir.exists():
                    raise
                version = new_version_id(self._newest_version_name(meter_dir))
                continue
            _fsync_dir(meter_dir)
            return version_dir
        raise FileExistsError(f"could not find a free version name in {meter_dir}")

    def activate(self, meter_type: str, meter_id: str, version: str) -> None:
        """Serve ``version`` from now on.

        Raises:
            ModelVersionNotFoundError: no complete version of that name.
        """
        meter_dir = self.meter_dir(meter_type, meter_id)
        check_version(version)
        if not meter_dir.is_dir():
            raise ModelVersionNotFoundError(meter_type, meter_id, version)
        with self._meter_lock(meter_dir):
            if _read_metadata(meter_dir / version) is None:
                raise ModelVersionNotFoundError(meter_type, meter_id, version)
            self._write_active(meter_dir, version)

    def _write_active(self, meter_dir: Path, version: str) -> None:
        """Point ``ACTIVE`` at ``version`` via temp file + fsync + atomic replace."""
        pointer = json.dumps({"version": version, "activated_at": datetime.now(UTC).isoformat()})
        temporary = meter_dir / f"{STAGING_PREFIX}{ACTIVE_FILENAME}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            _write_file_durably(temporary, pointer)
            os.replace(temporary, meter_dir / ACTIVE_FILENAME)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        _fsync_dir(meter_dir)

    def prune(self, meter_type: str, meter_id: str, keep: int) -> int:
        """Delete the oldest versions beyond the newest ``keep``; the active one is always kept.

        Returns how many versions were deleted.
        """
        if keep < 0:
            raise ValueError("keep must be >= 0")
        meter_dir = self.meter_dir(meter_type, meter_id)
        if not meter_dir.is_dir():
            return 0
        removed = 0
        with self._meter_lock(meter_dir):
            active = self._read_active_name(meter_dir)
            inactive = [name for name in self._version_names(meter_dir) if name != active]
            surplus = inactive[max(keep - (1 if active else 0), 0) :]
            for name in surplus:
                trash = meter_dir / f"{TRASH_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(2)}"
                os.rename(meter_dir / name, trash)  # leaves the listing atomically
                shutil.rmtree(trash, ignore_errors=True)
                removed += 1
        return removed

    def remove_stale_staging(self, older_than_seconds: float = 3600) -> int:
        """Delete staging and trash left behind by crashed writes; returns how many entries went.

        Only entries untouched for ``older_than_seconds`` are removed, so a write in progress in
        another process survives.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for meter_dir in self._meter_dirs():
            for entry in meter_dir.iterdir():
                if not entry.name.startswith((STAGING_PREFIX, TRASH_PREFIX)):
                    continue
                try:
                    if entry.lstat().st_mtime > cutoff:
                        continue
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                except FileNotFoundError:
                    continue  # another cleaner got there first
                removed += 1
        return removed

    # -- reading ---------------------------------------------------------------------------------

    def active_version(self, meter_type: str, meter_id: str) -> ModelVersion | None:
        """The version being served, or ``None`` when none is active (or ``ACTIVE`` is unreadable)."""
        meter_dir = self.meter_dir(meter_type, meter_id)
        for _ in range(_ACTIVE_READ_ATTEMPTS):
            name = self._read_active_name(meter_dir)
            if name is None:
                return None
            metadata = _read_metadata(meter_dir / name)
            if metadata is not None:
                return ModelVersion(
                    meter_type,
                    meter_id,
                    name,
                    meter_dir / name,
                    metadata,
                    is_active=True,
                )
            # Pruned between reading ACTIVE and its metadata: ACTIVE has moved on, read it again.
        return None

    def require_active_version(self, meter_type: str, meter_id: str) -> ModelVersion:
        """Like :meth:`active_version`, but raises ``ModelNotFoundError`` instead of returning None."""
        version = self.active_version(meter_type, meter_id)
        if version is None:
            raise ModelNotFoundError(meter_type, meter_id)
        return version

    def list_versions(self, meter_type: str, meter_id: str) -> list[ModelVersion]:
        """Complete versions, newest first."""
        meter_dir = self.meter_dir(meter_type, meter_id)
        if not meter_dir.is_dir():
            return []
        active = self._read_active_name(meter_dir)
        versions = []
        for name in self._version_names(meter_dir):
            metadata = _read_metadata(meter_dir / name)
            if metadata is not None:
                versions.append(
                    ModelVersion(
                        meter_type,
                        meter_id,
                        name,
                        meter_dir / name,
                        metadata,
                        name == active,
                    )
                )
        return versions

    def list_meters(self) -> list[tuple[str, str]]:
        """``(meter_type, meter_id)`` of every meter with at least one complete version, sorted."""
        return sorted(
            (meter_dir.parent.name, meter_dir.name)
            for meter_dir in self._meter_dirs()
            if any(_read_metadata(meter_dir / name) is not None for name in self._version_names(meter_dir))
        )

    # -- internals -------------------------------------------------------------------------------

    def _meter_dirs(self) -> Iterator[Path]:
        """Existing meter directories with valid names, never following a path out of the root."""
        if not self._root.is_dir():
            return
        for type_dir in sorted(self._root.iterdir()):
            if not type_dir.is_dir():
                continue
            for meter_dir in sorted(type_dir.iterdir()):
                try:
                    checked = self.meter_dir(type_dir.name, meter_dir.name)
                except InvalidMeterKeyError:
                    continue
                if checked.is_dir():
                    yield checked

    @staticmethod
    def _version_names(meter_dir: Path) -> list[str]:
        """Names of version directories (complete or not yet checked), newest first."""
        names = [entry.name for entry in meter_dir.iterdir() if _VERSION.fullmatch(entry.name)]
        return sorted(names, reverse=True)

    def _newest_version_name(self, meter_dir: Path) -> str | None:
        names = self._version_names(meter_dir)
        return names[0] if names else None

    @staticmethod
    def _read_active_name(meter_dir: Path) -> str | None:
        try:
            pointer = json.loads((meter_dir / ACTIVE_FILENAME).read_text(encoding="utf-8"))
        except (
            FileNotFoundError,
            NotADirectoryError,
            json.JSONDecodeError,
            UnicodeDecodeError,
        ):
            return None
        version = pointer.get("version") if isinstance(pointer, dict) else None
        return version if isinstance(version, str) and _VERSION.fullmatch(version) else None

    @contextlib.contextmanager
    def _meter_lock(self, meter_dir: Path) -> Iterator[None]:
        """Serialise pointer changes and pruning of one meter across threads and processes.

        Without it, a prune could delete a version that a concurrent ``activate`` just chose.
        Readers never take it: every state they can observe is consistent.
        """
        with self._thread_locks_guard:
            thread_lock = self._thread_locks.setdefault(meter_dir, threading.Lock())
        with thread_lock:
            if fcntl is None:  # pragma: no cover
                yield
                return
            with open(meter_dir / LOCK_FILENAME, "a") as lock_file:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)
