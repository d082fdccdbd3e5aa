"""Pure pieces of the LocalStack persistence plugin: its settings and the snapshot files (no LocalStack)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# the plugin is installed in LocalStack's virtualenv, not in the developer's: import its pure modules from source
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "localstack" / "src"))

from localstack_persistence.settings import SettingsError, is_enabled, load_settings
from localstack_persistence.snapshot import (
    CURRENT,
    FileEntry,
    Manifest,
    SnapshotError,
    StateDirectory,
    check_present,
    object_identity,
    read_verified,
)

pytestmark = pytest.mark.unit


# -- settings ---------------------------------------------------------------------------------------------------------


def test_settings_default_to_off_with_a_30_second_interval() -> None:
    settings = load_settings({})
    assert settings.enabled is False
    assert settings.save_interval == 30.0
    assert settings.directory(Path("/var/lib/localstack/state")) == Path("/var/lib/localstack/state")


def test_settings_read_the_three_variables() -> None:
    settings = load_settings(
        {"STATE_PERSISTENCE": "1", "LOCALSTACK_STATE_DIR": "/data/state", "STATE_SAVE_INTERVAL": "5", "OTHER": "x"}
    )
    assert settings.enabled is True
    assert settings.save_interval == 5.0
    assert settings.directory(Path("/unused")) == Path("/data/state")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("STATE_SAVE_INTERVAL", "-1"), ("STATE_SAVE_INTERVAL", "often"), ("STATE_PERSISTENCE", "maybe")],
)
def test_a_wrong_setting_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({variable: value})


def test_a_wrong_enable_value_counts_as_on_so_that_the_error_is_logged() -> None:
    assert is_enabled({"STATE_PERSISTENCE": "maybe"}) is True
    assert is_enabled({"STATE_PERSISTENCE": "0"}) is False


# -- snapshots --------------------------------------------------------------------------------------------------------


def save(directory: StateDirectory, files: dict[str, bytes]) -> Path:
    writer = directory.begin()
    for name, data in files.items():
        writer.write_bytes(name, data)
    writer.finish("4.9.2")
    return directory.commit(writer)


def test_a_committed_snapshot_becomes_current_with_a_manifest(tmp_path: Path) -> None:
    directory = StateDirectory(tmp_path)
    snapshot = save(directory, {"s3/localstack-s3.pkl": b"stores", "s3/objects/abc": b"bytes"})
    assert directory.current() == snapshot
    manifest = Manifest.read(snapshot)
    assert manifest.localstack_version == "4.9.2"
    assert manifest.services() == ["s3"]
    assert read_verified(snapshot, "s3/localstack-s3.pkl", manifest.files["s3/localstack-s3.pkl"]) == b"stores"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_unchanged_files_are_hard_links_to_the_previous_snapshot(tmp_path: Path) -> None:
    directory = StateDirectory(tmp_path)
    first = save(directory, {"iam/moto-iam.pkl": b"same", "s3/localstack-s3.pkl": b"v1"})
    second = save(directory, {"iam/moto-iam.pkl": b"same", "s3/localstack-s3.pkl": b"v2"})
    assert os.path.samefile(first / "iam/moto-iam.pkl", second / "iam/moto-iam.pkl")
    assert not os.path.samefile(first / "s3/localstack-s3.pkl", second / "s3/localstack-s3.pkl")


def test_only_the_current_snapshot_and_its_predecessor_are_kept(tmp_path: Path) -> None:
    directory = StateDirectory(tmp_path)
    snapshots = [save(directory, {"sts/localstack-sts.pkl": str(n).encode()}) for n in range(4)]
    assert directory.snapshots() == [snapshots[3], snapshots[2]]
    assert directory.candidates() == [snapshots[3], snapshots[2]]


def test_an_interrupted_save_leaves_the_previous_snapshot_current(tmp_path: Path) -> None:
    directory = StateDirectory(tmp_path)
    good = save(directory, {"sts/localstack-sts.pkl": b"good"})
    writer = directory.begin()
    writer.write_bytes("sts/localstack-sts.pkl", b"half")
    # the process dies here: no finish, no commit
    assert directory.current() == good
    assert StateDirectory(tmp_path).candidates() == [good]


def test_truncated_or_corrupt_files_are_detected_with_their_path(tmp_path: Path) -> None:
    directory = StateDirectory(tmp_path)
    snapshot = save(directory, {"logs/moto-logs.pkl": b"0123456789", "s3/objects/x": b"object"})
    entry = Manifest.read(snapshot).files["logs/moto-logs.pkl"]
    (snapshot / "logs/moto-logs.pkl").write_bytes(b"01234")
    with pytest.raises(SnapshotError, match=r"moto-logs\.pkl: 5 bytes, the manifest says 10"):
        read_verified(snapshot, "logs/moto-logs.pkl", entry)
    (snapshot / "logs/moto-logs.pkl").write_bytes(b"0123456780")
    with pytest.raises(SnapshotError, match="SHA-256 differs"):
        read_verified(snapshot, "logs/moto-logs.pkl", entry)
    (snapshot / "s3/objects/x").unlink()
    with pytest.raises(SnapshotError, match="missing"):
        check_present(snapshot, "s3/objects/x", FileEntry(6, ""))


def test_an_unreadable_manifest_names_the_file(tmp_path: Path) -> None:
    directory = StateDirectory(tmp_path)
    snapshot = save(directory, {"sts/localstack-sts.pkl": b"x"})
    (snapshot / "manifest.json").write_text("{not json")
    with pytest.raises(SnapshotError, match=r"manifest\.json: unreadable manifest"):
        Manifest.read(snapshot)


def test_a_bad_snapshot_is_moved_aside_and_current_falls_back(tmp_path: Path) -> None:
    directory = StateDirectory(tmp_path)
    older = save(directory, {"sts/localstack-sts.pkl": b"old"})
    newer = save(directory, {"sts/localstack-sts.pkl": b"new"})
    aside = directory.move_aside(newer)
    assert aside == tmp_path / f"corrupt-{newer.name}"
    assert (aside / "sts/localstack-sts.pkl").read_bytes() == b"new"
    assert directory.current() == older
    directory.move_aside(older)
    assert directory.current() is None
    assert not (tmp_path / CURRENT).exists()


def test_a_second_owner_cannot_lock_the_directory(tmp_path: Path) -> None:
    owner = StateDirectory(tmp_path)
    assert owner.lock()
    other = StateDirectory(tmp_path)
    # flock is per open file description: a second open in this process conflicts like another process would
    assert other.lock() is False


def test_object_identity_is_stable_and_changes_with_the_content_version() -> None:
    base: dict[str, object] = {
        "key": "incoming/a.json",
        "version_id": None,
        "etag": "etag1",
        "size": 10,
        "checksum": None,
        "last_modified": "2026-12-04T10:00:00+00:00",
    }
    identity = object_identity("000000000000", "bucket", **base)  # type: ignore[arg-type]
    assert identity == object_identity("000000000000", "bucket", **base)  # type: ignore[arg-type]
    assert identity != object_identity("000000000001", "bucket", **base)  # type: ignore[arg-type]
    changes = {"key": "incoming/b.json", "version_id": "v2", "etag": "etag2", "size": 11, "checksum": "c"}
    for field, value in {**changes, "last_modified": "2026-12-04T10:00:01+00:00"}.items():
        assert object_identity("000000000000", "bucket", **{**base, field: value}) != identity  # type: ignore[arg-type]
