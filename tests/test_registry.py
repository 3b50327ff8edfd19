"""The model store: atomic versions, a pointer that never dangles, and paths that stay inside root."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from forecasting.errors import InvalidMeterKeyError, ModelNotFoundError
from forecasting.registry import (
    ACTIVE_FILENAME,
    METADATA_FILENAME,
    MODEL_FILENAME,
    VERSION_PATTERN,
    ModelRegistry,
    ModelVersion,
    ModelVersionNotFoundError,
    new_version_id,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TYPE, METER = "electricity", "meter-1"


def write_model(directory: Path) -> None:
    (directory / MODEL_FILENAME).write_bytes(b"weights")


def save(registry: ModelRegistry, *, activate: bool = True, meter_id: str = METER, **metadata: object):
    return registry.save_version(
        TYPE, meter_id, write_artifacts=write_model, metadata={"mae": 1.0, **metadata}, activate=activate
    )


def entries(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_new_version_id__format_and_order_within_one_second():
    first = new_version_id()
    assert re.fullmatch(VERSION_PATTERN, first)
    later = new_version_id(after=first)
    assert later > first
    saturated = first[:17] + "ffffff"
    assert new_version_id(after=saturated) > saturated


def test_save_version__writes_complete_active_version(registry: ModelRegistry):
    saved = save(registry, activate=True, loss=0.5)
    assert saved.is_active
    assert saved.path == registry.meter_dir(TYPE, METER) / saved.version
    assert (saved.path / MODEL_FILENAME).read_bytes() == b"weights"
    on_disk = json.loads((saved.path / METADATA_FILENAME).read_text())
    assert on_disk["loss"] == 0.5
    assert on_disk["version"] == saved.version
    assert on_disk["meter_id"] == METER
    assert registry.active_version(TYPE, METER) == saved
    pointer = json.loads((registry.meter_dir(TYPE, METER) / ACTIVE_FILENAME).read_text())
    assert pointer["version"] == saved.version


def test_display_path__relative_inside_the_project_else_absolute(registry: ModelRegistry):
    outside = save(registry)
    inside = ModelVersion(
        TYPE, METER, outside.version, PROJECT_ROOT / "models" / TYPE / METER / "v1", {}, True
    )

    assert inside.display_path == f"models/{TYPE}/{METER}/v1"
    assert outside.display_path == str(outside.path.resolve())
    assert Path(outside.display_path).is_absolute()


def test_save_version__without_activate_keeps_the_served_version(registry: ModelRegistry):
    served = save(registry, activate=True)
    candidate = save(registry, activate=False)
    assert registry.active_version(TYPE, METER).version == served.version
    assert not candidate.is_active
    registry.activate(TYPE, METER, candidate.version)
    assert registry.active_version(TYPE, METER).version == candidate.version


def test_list_versions__newest_first_with_active_flag(registry: ModelRegistry):
    saved = [save(registry, activate=(number == 1), number=number) for number in range(4)]
    listed = registry.list_versions(TYPE, METER)
    assert [version.version for version in listed] == [version.version for version in reversed(saved)]
    assert [version.metadata["number"] for version in listed] == [3, 2, 1, 0]
    assert [version.is_active for version in listed] == [False, False, True, False]


def test_reads_of_unknown_meter_are_empty(registry: ModelRegistry):
    assert registry.active_version(TYPE, "nobody") is None
    assert registry.list_versions(TYPE, "nobody") == []
    assert registry.list_meters() == []
    with pytest.raises(ModelNotFoundError):
        registry.require_active_version(TYPE, "nobody")


def test_crash_inside_write_artifacts__leaves_nothing_behind(registry: ModelRegistry):
    served = save(registry)
    meter_dir = registry.meter_dir(TYPE, METER)
    before = entries(meter_dir)

    def crash(directory: Path) -> None:
        (directory / MODEL_FILENAME).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        registry.save_version(TYPE, METER, write_artifacts=crash, metadata={}, activate=True)
    assert entries(meter_dir) == before  # no version, no staging
    assert registry.active_version(TYPE, METER) == served
    assert [version.version for version in registry.list_versions(TYPE, METER)] == [served.version]


def test_failed_pointer_write__keeps_old_active_and_new_version_complete(registry, monkeypatch):
    served = save(registry)

    def refuse(*_: object) -> None:
        raise OSError("EIO")

    monkeypatch.setattr("forecasting.registry.os.replace", refuse)
    with pytest.raises(OSError, match="EIO"):
        save(registry, activate=True)
    monkeypatch.undo()
    assert registry.active_version(TYPE, METER) == served
    newest = registry.list_versions(TYPE, METER)[0]
    assert newest.version != served.version
    assert not newest.is_active
    assert (newest.path / MODEL_FILENAME).exists()
    assert not [name for name in entries(registry.meter_dir(TYPE, METER)) if name.startswith(".staging")]


def _run_and_die(root: Path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` in a fresh interpreter that saves a version for METER and dies with exit 9."""
    header = (
        "import os\nfrom pathlib import Path\nfrom forecasting import registry as store\n"
        f"reg = store.ModelRegistry(Path({str(root)!r}))\n"
    )
    script = header + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_process_killed_while_writing__no_version_and_staging_is_cleaned(registry: ModelRegistry):
    served = save(registry)
    body = """
    def die(directory):
        (directory / "model.keras").write_bytes(b"half")
        os._exit(9)
    reg.save_version("electricity", "meter-1", write_artifacts=die, metadata={}, activate=True)
    """
    assert _run_and_die(registry.root, body).returncode == 9
    meter_dir = registry.meter_dir(TYPE, METER)
    assert [name for name in entries(meter_dir) if name.startswith(".staging-")]  # the crash's debris
    assert [version.version for version in registry.list_versions(TYPE, METER)] == [served.version]
    assert registry.active_version(TYPE, METER) == served
    assert registry.remove_stale_staging(older_than_seconds=0) == 1
    assert not [name for name in entries(meter_dir) if name.startswith(".staging-")]


def test_process_killed_between_rename_and_pointer__old_active_still_valid(registry: ModelRegistry):
    served = save(registry)
    body = """
    store.ModelRegistry._write_active = lambda *args: os._exit(9)
    def write(directory):
        (directory / "model.keras").write_bytes(b"w")
    reg.save_version("electricity", "meter-1", write_artifacts=write, metadata={}, activate=True)
    """
    result = _run_and_die(registry.root, body)
    assert result.returncode == 9, result.stderr
    assert registry.active_version(TYPE, METER) == served
    versions = registry.list_versions(TYPE, METER)
    assert len(versions) == 2
    assert not versions[0].is_active
    assert (versions[0].path / METADATA_FILENAME).exists()


def test_remove_stale_staging__spares_recent_writes(registry: ModelRegistry):
    save(registry)
    staging = registry.meter_dir(TYPE, METER) / ".staging-20240101T000000Z-abcdef-1"
    staging.mkdir()
    assert registry.remove_stale_staging() == 0
    old = staging.stat().st_mtime - 7200
    os.utime(staging, (old, old))
    assert registry.remove_stale_staging() == 1
    assert not staging.exists()


def test_activate__unknown_or_malformed_version(registry: ModelRegistry):
    save(registry)
    with pytest.raises(ModelVersionNotFoundError):
        registry.activate(TYPE, METER, "20990101T000000Z-000000")
    with pytest.raises(ModelVersionNotFoundError, match="no model version"):
        registry.activate(TYPE, "never-trained", "20990101T000000Z-000000")
    with pytest.raises(InvalidMeterKeyError):
        registry.activate(TYPE, METER, "../../etc")


def test_active_pointer_to_missing_version_reads_as_none(registry: ModelRegistry):
    meter_dir = registry.meter_dir(TYPE, METER)
    meter_dir.mkdir(parents=True)
    (meter_dir / ACTIVE_FILENAME).write_text(json.dumps({"version": "20240101T000000Z-abcdef"}))
    assert registry.active_version(TYPE, METER) is None
    (meter_dir / ACTIVE_FILENAME).write_text("not json")
    assert registry.active_version(TYPE, METER) is None


def test_prune__keeps_newest_and_the_active_one(registry: ModelRegistry):
    saved = [save(registry, activate=False) for _ in range(5)]
    registry.activate(TYPE, METER, saved[0].version)  # the oldest is served
    assert registry.prune(TYPE, METER, keep=2) == 3
    remaining = [version.version for version in registry.list_versions(TYPE, METER)]
    assert remaining == [saved[4].version, saved[0].version]
    assert registry.active_version(TYPE, METER).version == saved[0].version
    assert registry.prune(TYPE, METER, keep=0) == 1
    assert [version.version for version in registry.list_versions(TYPE, METER)] == [saved[0].version]


def test_list_meters__only_meters_with_a_version(registry: ModelRegistry):
    save(registry, meter_id="b-meter")
    save(registry, meter_id="a-meter")
    registry.save_version("gas", "g1", write_artifacts=write_model, metadata={}, activate=False)
    (registry.root / "water" / "empty").mkdir(parents=True)
    (registry.root / "water" / "Bad Name").mkdir(parents=True)
    assert registry.list_meters() == [("electricity", "a-meter"), ("electricity", "b-meter"), ("gas", "g1")]


HOSTILE_IDS = [
    "../x",
    "..",
    ".",
    "a/b",
    "a\\b",
    "/etc",
    "/etc/passwd",
    "a\x00",
    "meter\n",
    "line\nbreak",
    "x" * 10_000,
    "zähler",
    "meter\u0661",  # Arabic-Indic digit one: str.isdigit() is True
    "",
    " meter",
    ".hidden",
    "-rf",
]
HOSTILE_TYPES = ["../electricity", "Electricity", "gas/../..", "", "a" * 65, "é", "gas\n"]


@pytest.mark.parametrize("meter_id", HOSTILE_IDS, ids=repr)
def test_hostile_meter_id__rejected_everywhere_and_creates_nothing(tmp_path: Path, meter_id: str):
    registry = ModelRegistry(tmp_path / "store" / "models")
    calls = [
        lambda: registry.meter_dir(TYPE, meter_id),
        lambda: registry.save_version(
            TYPE, meter_id, write_artifacts=write_model, metadata={}, activate=True
        ),
        lambda: registry.active_version(TYPE, meter_id),
        lambda: registry.list_versions(TYPE, meter_id),
        lambda: registry.activate(TYPE, meter_id, "20240101T000000Z-abcdef"),
        lambda: registry.prune(TYPE, meter_id, keep=0),
    ]
    for call in calls:
        with pytest.raises(InvalidMeterKeyError):
            call()
    assert entries(tmp_path) == set()


@pytest.mark.parametrize("meter_type", HOSTILE_TYPES, ids=repr)
def test_hostile_meter_type__rejected(tmp_path: Path, meter_type: str):
    registry = ModelRegistry(tmp_path / "models")
    with pytest.raises(InvalidMeterKeyError):
        registry.save_version(meter_type, METER, write_artifacts=write_model, metadata={}, activate=True)
    assert entries(tmp_path) == set()


def test_non_string_keys__rejected(registry: ModelRegistry):
    with pytest.raises(InvalidMeterKeyError):
        registry.meter_dir(TYPE, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidMeterKeyError):
        registry.meter_dir(42, METER)  # type: ignore[arg-type]


def test_symlinked_meter_dir_outside_root__rejected(tmp_path: Path, registry: ModelRegistry):
    outside = tmp_path / "outside"
    outside.mkdir()
    (registry.root / TYPE).mkdir(parents=True)
    (registry.root / TYPE / METER).symlink_to(outside)
    with pytest.raises(InvalidMeterKeyError, match="leaves the model store"):
        save(registry)
    assert entries(outside) == set()


def test_concurrent_reader_never_sees_an_incomplete_version(registry: ModelRegistry):
    """A reader polling the active version while 20 versions are saved only sees complete ones."""
    first = save(registry)
    problems: list[str] = []
    seen: set[str] = set()
    reads = 0
    progress = threading.Condition()
    stop = threading.Event()

    def read_forever() -> None:
        nonlocal reads
        while not stop.is_set():
            version = registry.active_version(TYPE, METER)
            if version is None:
                problems.append("no active version")
            elif version.metadata.get("version") != version.version:
                problems.append(f"{version.version}: metadata {version.metadata}")
            elif (version.path / MODEL_FILENAME).read_bytes() != b"w" * 50_000:
                problems.append(f"{version.version}: partial model file")
            else:
                seen.add(version.version)
            with progress:
                reads += 1
                progress.notify_all()

    def write_big_model(directory: Path) -> None:
        with open(directory / MODEL_FILENAME, "wb") as handle:
            for _ in range(50):
                handle.write(b"w" * 1000)
                handle.flush()

    # The first version's model must satisfy the reader too.
    (first.path / MODEL_FILENAME).write_bytes(b"w" * 50_000)
    reader = threading.Thread(target=read_forever, daemon=True)
    reader.start()
    saved = []
    try:
        for number in range(20):
            version = registry.save_version(
                TYPE, METER, write_artifacts=write_big_model, metadata={"n": number}, activate=True
            )
            saved.append(version.version)
            with progress:  # let the reader observe this version before replacing it
                target = reads + 2
                assert progress.wait_for(lambda target=target: reads >= target, timeout=30)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert problems == []
    assert set(saved) <= seen
    assert len(registry.list_versions(TYPE, METER)) == 21


def test_concurrent_reader_survives_pruning(registry: ModelRegistry):
    """Pruning right after activation must not make the reader miss the served version."""
    save(registry)
    stop = threading.Event()
    outcomes: list[bool] = []

    def read_forever() -> None:
        while not stop.is_set():
            version = registry.active_version(TYPE, METER)
            outcomes.append(version is not None and version.metadata.get("version") == version.version)

    reader = threading.Thread(target=read_forever, daemon=True)
    reader.start()
    try:
        for _ in range(20):
            save(registry, activate=True)
            registry.prune(TYPE, METER, keep=1)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert outcomes
    assert all(outcomes)
    assert len(registry.list_versions(TYPE, METER)) == 1
