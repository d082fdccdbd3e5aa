"""Save and load the state of LocalStack's services (runs inside LocalStack; the hooks in ``hooks`` drive it)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localstack import config, constants
from localstack.services.plugins import SERVICE_PLUGINS, ServiceDisabled

from localstack_persistence import services as svc
from localstack_persistence.settings import DIR_VARIABLE, PersistenceSettings
from localstack_persistence.snapshot import (
    FileEntry,
    Manifest,
    SnapshotError,
    SnapshotWriter,
    StateDirectory,
    check_present,
    open_verified,
    read_verified,
)

LOG = logging.getLogger("localstack_persistence")

# Load order: S3 first (it holds the Lambda code), Lambda last.
PERSISTED_SERVICES = ("s3", "iam", "sts", "logs", "cloudformation", "events", "lambda")
S3_OBJECTS = "s3/objects/"
# After a request to a persisted service, keep checking for changes this many intervals (asynchronous work such as a
# CloudFormation deployment or a function becoming Active goes on after the response).
SETTLE_INTERVALS = 4


def _kv(event: str, **fields: object) -> str:
    return " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])


def default_state_dir() -> Path:
    """``state`` next to LocalStack's ``lib`` folder: ``$FILESYSTEM_ROOT/var/lib/localstack/state`` when LocalStack
    runs in host mode (the native stack, our image), ``/var/lib/localstack/state`` in LocalStack's own image."""
    return Path(config.dirs.var_libs).parent / "state"


@dataclass
class DecodedSnapshot:
    path: Path
    manifest: Manifest
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)  # service -> file name -> object


class StatePersistence:
    def __init__(self, settings: PersistenceSettings) -> None:
        self.settings = settings
        self.directory = StateDirectory(settings.directory(default_state_dir()))
        self.active = False  # this process owns the directory and finished loading: saves are allowed
        self._save_lock = threading.Lock()
        self._hashes: dict[str, str] = {}  # file name -> sha256 of the last saved content
        self._activity = threading.Event()
        self._settle = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lambda_loaded = False

    # -- loading ----------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """At start-up, before the gateway serves: load the newest snapshot that decodes; move bad ones aside."""
        if not self.directory.lock():
            LOG.error(
                _kv(
                    "state persistence disabled: the state directory is in use by another LocalStack",
                    directory=str(self.directory.root),
                    fix=f"stop the other LocalStack or give this one its own {DIR_VARIABLE}",
                )
            )
            return
        svc.register_reducers()
        started = time.monotonic()
        for snapshot in self.directory.candidates():
            try:
                decoded = self._decode(snapshot)
            except Exception as exc:
                path = exc.path if isinstance(exc, SnapshotError) else snapshot
                aside = self.directory.move_aside(snapshot)
                LOG.error(
                    _kv(
                        "saved LocalStack state cannot be loaded; moved aside, trying an older snapshot if any",
                        file=str(path),
                        error=f"{type(exc).__name__}: {exc}",
                        moved_to=str(aside),
                    )
                )
                continue
            self._apply(decoded)
            LOG.info(
                _kv(
                    "LocalStack state loaded",
                    snapshot=str(snapshot),
                    saved_at=decoded.manifest.saved_at,
                    services=",".join(decoded.containers),
                    seconds=round(time.monotonic() - started, 2),
                )
            )
            break
        else:
            LOG.info(_kv("no saved LocalStack state; starting empty", directory=str(self.directory.root)))
        self.active = True
        self._register_activity_handler()
        self._start_periodic()

    def _decode(self, snapshot: Path) -> DecodedSnapshot:
        manifest = Manifest.read(snapshot)
        if manifest.localstack_version != constants.VERSION:
            LOG.warning(
                _kv(
                    "state was saved by another LocalStack version",
                    saved=manifest.localstack_version,
                    running=constants.VERSION,
                )
            )
        decoded = DecodedSnapshot(snapshot, manifest)
        hashes: dict[str, str] = {}
        for name, entry in sorted(manifest.files.items()):
            if name.startswith(S3_OBJECTS):
                check_present(snapshot, name, entry)
                continue
            service, file_name = name.split("/", 1)
            data = read_verified(snapshot, name, entry)
            try:
                decoded.containers.setdefault(service, {})[file_name] = svc.loads(data)
            except Exception as exc:
                raise SnapshotError(snapshot / name, f"cannot be unpickled ({type(exc).__name__}: {exc})") from exc
            hashes[name] = entry.sha256
        self._hashes = hashes
        return decoded

    def _apply(self, decoded: DecodedSnapshot) -> None:
        failed: list[str] = []
        for name in PERSISTED_SERVICES:
            files = decoded.containers.get(name)
            if not files:
                continue
            try:
                service = SERVICE_PLUGINS.require(name)
            except ServiceDisabled:
                LOG.warning(_kv("saved state of a service that is not enabled (SERVICES) is ignored", service=name))
                continue
            if not self._apply_service(name, service, files, decoded):
                failed.append(name)
        if failed:
            aside = self.directory.copy_aside(decoded.path)
            LOG.error(_kv("a copy of the partly loaded snapshot was kept", copy=str(aside), services=",".join(failed)))

    def _apply_service(self, name: str, service: Any, files: dict[str, Any], decoded: DecodedSnapshot) -> bool:
        """Load one service's containers in place and run its state lifecycle hooks; False (and the service reset)
        when that fails."""
        containers = self._containers(service)
        deferred = name == "lambda"  # the provider's load hooks run once the gateway serves (finish_lambda)
        if not deferred:
            service.lifecycle_hook.on_before_state_load()
        try:
            for container in containers:
                file_name = svc.container_file(container)
                if file_name is not None and file_name in files:
                    svc.replace_container(container, files[file_name])
            if name == "s3":
                self._load_s3_objects(service, decoded)
            elif name == "events":
                LOG.info(_kv("EventBridge rules restored", rules=svc.rebuild_events(service.lifecycle_hook)))
            elif name == "lambda":
                LOG.info(_kv("Lambda function versions restored", versions=svc.mark_lambda_pending()))
                self._lambda_loaded = True
        except Exception as exc:
            LOG.error(
                _kv(
                    "saved state of a service could not be applied; the service starts empty",
                    service=name,
                    files=",".join(f"{decoded.path / name / f}" for f in files),
                    error=f"{type(exc).__name__}: {exc}",
                ),
                exc_info=LOG.isEnabledFor(logging.DEBUG),
            )
            for container in containers:
                svc.reset_container(container)
            return False
        if not deferred:
            service.lifecycle_hook.on_after_state_load()
        return True

    def _load_s3_objects(self, service: Any, decoded: DecodedSnapshot) -> None:
        from localstack.services.s3.models import s3_stores  # noqa: PLC0415

        storage = svc.s3_storage(service.lifecycle_hook)
        restored = dropped = 0
        for _, bucket in svc.iter_buckets(s3_stores):
            storage.create_bucket(bucket.name)  # the folder its large objects spill into
        for ref in list(svc.iter_objects(s3_stores)):
            name = f"{S3_OBJECTS}{ref.identity}"
            entry = decoded.manifest.files.get(name)
            problem = None
            if entry is None:
                problem = "no saved bytes"
            else:
                with open_verified(decoded.path, name) as reader:
                    size = svc.write_object(storage, ref.bucket, ref.obj, reader)
                    if size != entry.size or reader.hexdigest() != entry.sha256:
                        problem = "saved bytes do not match the manifest (corrupt)"
            if problem is not None:
                bucket = next(b for a, b in svc.iter_buckets(s3_stores) if a == ref.account_id and b.name == ref.bucket)
                storage.remove(ref.bucket, ref.obj)
                svc.drop_object(bucket, ref.obj.key, ref.obj.version_id)
                dropped += 1
                LOG.error(
                    _kv(
                        "S3 object not restored",
                        bucket=ref.bucket,
                        key=ref.obj.key,
                        version=ref.obj.version_id,
                        file=str(decoded.path / name),
                        reason=problem,
                    )
                )
                continue
            restored += 1
        LOG.info(_kv("S3 objects restored", objects=restored, dropped=dropped))

    def finish_lambda(self) -> None:
        """Once the gateway serves: LocalStack's Lambda provider re-creates the version managers of the loaded
        functions (``on_after_state_load``; it fetches the code from the internal S3 bucket)."""
        if not self._lambda_loaded:
            return
        started = time.monotonic()
        service = SERVICE_PLUGINS.get_service("lambda")
        service.lifecycle_hook.on_before_state_load()
        service.lifecycle_hook.on_after_state_load()
        LOG.info(_kv("Lambda version managers started", seconds=round(time.monotonic() - started, 2)))

    # -- saving -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _containers(service: Any) -> list[Any]:
        collector = svc.ContainerCollector()
        service.accept_state_visitor(collector)
        return collector.containers

    def _encode(self) -> dict[str, bytes]:
        """Pickles of every running persisted service's containers (S3's with object metadata, without bytes)."""
        files: dict[str, bytes] = {}
        for name in PERSISTED_SERVICES:
            if not SERVICE_PLUGINS.is_running(name):
                continue
            service = SERVICE_PLUGINS.get_service(name)
            service.lifecycle_hook.on_before_state_save()
            try:
                for container in self._containers(service):
                    file_name = svc.container_file(container)
                    if file_name is not None:
                        files[f"{name}/{file_name}"] = svc.dumps(container)
            finally:
                service.lifecycle_hook.on_after_state_save()
        return files

    def save(self, reason: str, force: bool = False) -> bool:
        """Write a snapshot if anything changed since the last one (always when ``force``); True when written."""
        if not self.active:
            return False
        with self._save_lock:
            started = time.monotonic()
            files = self._encode()
            hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
            if not force and hashes == self._hashes:
                LOG.debug(_kv("state unchanged", seconds=round(time.monotonic() - started, 3)))
                return False
            writer = self.directory.begin()
            try:
                objects = 0
                for name, encoded in files.items():
                    data = encoded
                    if name == "s3/localstack-s3.pkl":
                        data, objects, complete = self._save_s3_objects(encoded, writer)
                        if not complete:
                            del hashes[name]  # differs from what was saved: the next save writes S3 again
                    writer.write_bytes(name, data)
                writer.finish(constants.VERSION)
                final = self.directory.commit(writer)
            except BaseException:
                self.directory.abort(writer)
                raise
            self._hashes = hashes
            LOG.info(
                _kv(
                    "LocalStack state saved",
                    reason=reason,
                    snapshot=final.name,
                    services=",".join(sorted({n.split("/", 1)[0] for n in files})),
                    s3_objects=objects,
                    written_bytes=writer.written_bytes,
                    linked_files=writer.linked,
                    seconds=round(time.monotonic() - started, 2),
                )
            )
            return True

    def _save_s3_objects(self, data: bytes, writer: SnapshotWriter) -> tuple[bytes, int, bool]:
        """Save the bytes of every object version the pickled metadata names; an object that changed meanwhile is
        left out of this snapshot (metadata and bytes stay consistent) and the next save takes it."""
        from localstack.services.s3.models import s3_stores  # noqa: PLC0415

        copy = svc.loads(data)
        storage = svc.s3_storage(SERVICE_PLUGINS.get_service("s3").lifecycle_hook)
        left_out = 0
        count = 0
        for _, bucket in svc.iter_buckets(copy):
            bucket.multiparts.clear()  # uploads in progress are not kept (their parts are not saved)
        for ref in list(svc.iter_objects(copy)):
            name = f"{S3_OBJECTS}{ref.identity}"
            if writer.try_link(name):
                count += 1
                continue
            entry: FileEntry | None = None
            try:
                chunks = svc.read_live_object(storage, s3_stores, ref)
                if chunks is not None:
                    entry = writer.write_stream(name, chunks)
            except svc._Changed:
                entry = None
            if entry is None or entry.size != ref.obj.size:
                writer.discard(name)
                bucket = next(b for a, b in svc.iter_buckets(copy) if a == ref.account_id and b.name == ref.bucket)
                svc.drop_object(bucket, ref.obj.key, ref.obj.version_id)
                left_out += 1
                continue
            count += 1
        if left_out:
            self._activity.set()  # the next periodic save takes them
            LOG.info(_kv("S3 objects changed while saving; left for the next save", objects=left_out))
        return svc.dumps(copy), count, not left_out

    # -- background saves -------------------------------------------------------------------------------------------

    def _register_activity_handler(self) -> None:
        from localstack.aws.handlers import run_custom_response_handlers  # noqa: PLC0415

        persisted = set(PERSISTED_SERVICES)

        def note_activity(chain: Any, context: Any, response: Any) -> None:
            if context.service is not None and context.service.service_name in persisted:
                self._activity.set()

        run_custom_response_handlers.append(note_activity)

    def _start_periodic(self) -> None:
        if self.settings.save_interval <= 0:
            LOG.info("periodic state saves are off (STATE_SAVE_INTERVAL=0): state is saved at shutdown only")
            return
        self._activity.set()  # the first tick compares with what was loaded
        self._thread = threading.Thread(target=self._run_periodic, name="state-persistence", daemon=True)
        self._thread.start()

    def _run_periodic(self) -> None:
        while not self._stop.wait(self.settings.save_interval):
            if self._activity.is_set():
                self._activity.clear()
                self._settle = SETTLE_INTERVALS
            elif self._settle > 0:
                self._settle -= 1
            else:
                continue
            try:
                self.save("periodic")
            except Exception as exc:
                LOG.error(
                    _kv("periodic state save failed", error=f"{type(exc).__name__}: {exc}"),
                    exc_info=LOG.isEnabledFor(logging.DEBUG),
                )

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.save("shutdown", force=False)
        except Exception as exc:
            LOG.error(
                _kv("state save at shutdown failed", error=f"{type(exc).__name__}: {exc}"),
                exc_info=LOG.isEnabledFor(logging.DEBUG),
            )
