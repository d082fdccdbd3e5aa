"""What LocalStack community lacks for a snapshot round trip, service by service (runs inside LocalStack).

* Generic: a ``StateVisitor`` collects a service's state containers (``Service.accept_state_visitor``: the provider's
  own, or LocalStack's ``ReflectionStateLocator``); ``AccountRegionBundle`` and moto ``BackendDict`` are pickled with
  ``localstack.state.pickle`` and loaded back *into* the live objects (provider code holds module-level references).
* S3: object bytes live in the provider's ``EphemeralS3ObjectStore`` (spooled temporary files, only reachable through
  the provider's storage backend): exported per object version and written back through the same store API.
* EventBridge (v2 provider): buses, rules and targets are in ``events_stores``, but the objects that deliver events
  (rule services, target senders, the schedule jobs) live on the provider and are rebuilt here after a load.
* Lambda: the provider's own ``on_after_state_load`` re-creates the version managers; it downloads the code through
  the gateway, so it runs once the gateway serves (``finish_lambda``); until then the versions say ``Pending``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Any

from localstack.services.stores import AccountRegionBundle
from localstack.state import StateVisitor
from localstack.state import pickle as state_pickle
from moto.core.base_backend import BackendDict, backend_lock

LOG = logging.getLogger(__name__)

S3_CHUNK = 1024 * 1024


# -- pickling ---------------------------------------------------------------------------------------------------------


def _fresh_rlock(*_: Any) -> Any:
    return threading.RLock()


def _fresh_lock(*_: Any) -> Any:
    return threading.Lock()


def _save_rlock(pickler: Any, obj: Any) -> None:
    pickler.save_reduce(_fresh_rlock, (), obj=obj)


def _save_lock(pickler: Any, obj: Any) -> None:
    pickler.save_reduce(_fresh_lock, (), obj=obj)


def register_reducers() -> None:
    """Locks are saved as new, unlocked locks. dill would restore a lock held at save time as held by a thread that
    does not exist after the restart (a deadlock on the first request that takes it)."""
    state_pickle.add_dispatch_entry(type(threading.RLock()), _save_rlock)
    state_pickle.add_dispatch_entry(type(threading.Lock()), _save_lock)


def dumps(obj: Any) -> bytes:
    """Pickle with LocalStack's encoder; retried when another thread changes a dict while it is being walked."""
    for attempt in range(5):
        try:
            return bytes(state_pickle.dumps(obj))
        except RuntimeError as exc:
            if "changed size during iteration" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")


def loads(data: bytes) -> Any:
    return state_pickle.loads(data)


# -- state containers -------------------------------------------------------------------------------------------------


class ContainerCollector(StateVisitor):  # type: ignore[misc,unused-ignore]  # Any without LocalStack's types
    """A ``StateVisitor`` that only collects what a service visits."""

    def __init__(self) -> None:
        self.containers: list[Any] = []

    def visit(self, state_container: Any) -> None:
        self.containers.append(state_container)


def container_file(container: Any) -> str | None:
    """The file name a state container is saved as; None for containers this plugin does not save generically."""
    if isinstance(container, AccountRegionBundle):
        return f"localstack-{container.service_name}.pkl"
    if isinstance(container, BackendDict):
        return f"moto-{container.service_name}.pkl"
    return None


def replace_container(target: Any, loaded: Any) -> None:
    """Load ``loaded`` (an unpickled copy) into the live container ``target`` in place."""
    if isinstance(target, AccountRegionBundle):
        if not isinstance(loaded, AccountRegionBundle):
            raise TypeError(f"expected an AccountRegionBundle, the file holds {type(loaded).__name__}")
        with target.lock:
            dict.clear(target)
            target._universal.clear()
            target._universal.update(loaded._universal)
            for account_id, region_bundle in loaded.items():
                # the bundles and stores share the live bundle's lock and cross-account dict
                region_bundle.lock = target.lock
                region_bundle._universal = target._universal
                for store in region_bundle.values():
                    store._universal = target._universal
                dict.__setitem__(target, account_id, region_bundle)
        return
    if isinstance(target, BackendDict):
        if not isinstance(loaded, BackendDict):
            raise TypeError(f"expected a moto BackendDict, the file holds {type(loaded).__name__}")
        with backend_lock:
            dict.clear(target)
            for account_id, account_backend in loaded.items():
                dict.__setitem__(target, account_id, account_backend)
            instances: list[Any] = BackendDict._instances  # type: ignore[misc,unused-ignore]  # moto's registry
            if len(target) and target not in instances:
                instances.append(target)  # so that moto's reset() also clears it
        return
    raise TypeError(f"cannot load into a {type(target).__name__}")


def reset_container(target: Any) -> None:
    if isinstance(target, AccountRegionBundle):
        target.reset()
    elif isinstance(target, BackendDict):
        with backend_lock:
            dict.clear(target)


# -- S3 object bytes --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class S3ObjectRef:
    account_id: str
    bucket: str
    obj: Any  # S3Object

    @property
    def identity(self) -> str:
        from localstack_persistence.snapshot import object_identity  # noqa: PLC0415 - keeps the module order flat

        last_modified = self.obj.last_modified.isoformat() if self.obj.last_modified else ""
        return object_identity(
            self.account_id,
            self.bucket,
            key=self.obj.key,
            version_id=self.obj.version_id,
            etag=self.obj.etag,
            size=self.obj.size,
            checksum=getattr(self.obj, "checksum_value", None),
            last_modified=last_modified,
        )


def iter_buckets(bundle: Any) -> Iterator[tuple[str, Any]]:
    """(account id, S3Bucket) of an ``s3_stores`` bundle, each bucket once (buckets are shared across regions)."""
    seen: set[tuple[str, str]] = set()
    for account_id, region_bundle in list(bundle.items()):
        for store in list(region_bundle.values()):
            for name, bucket in list(store.buckets.items()):
                if (account_id, name) not in seen:
                    seen.add((account_id, name))
                    yield account_id, bucket


def iter_objects(bundle: Any) -> Iterator[S3ObjectRef]:
    from localstack.services.s3.models import S3Object  # noqa: PLC0415 - LocalStack loads S3 lazily

    for account_id, bucket in iter_buckets(bundle):
        for obj in bucket.objects.values(with_versions=True):
            if isinstance(obj, S3Object):
                yield S3ObjectRef(account_id, bucket.name, obj)


def find_object(bucket: Any, key: str, version_id: str | None) -> Any:
    from localstack.services.s3.models import VersionedKeyStore  # noqa: PLC0415

    if isinstance(bucket.objects, VersionedKeyStore):
        return bucket.objects.get(key, version_id or "null")
    return bucket.objects.get(key)


def drop_object(bucket: Any, key: str, version_id: str | None) -> None:
    from localstack.services.s3.models import VersionedKeyStore  # noqa: PLC0415

    if isinstance(bucket.objects, VersionedKeyStore):
        bucket.objects.pop(key, version_id or "null")
    else:
        bucket.objects.pop(key)


def s3_storage(provider: Any) -> Any:
    """The S3 provider's object store. Only the provider holds it (``_storage_backend``); the community edition has no
    public accessor, and its ``AssetDirectory`` names a folder of anonymous temporary files, not the objects."""
    from localstack.services.s3.storage.ephemeral import EphemeralS3ObjectStore  # noqa: PLC0415

    storage = getattr(provider, "_storage_backend", None)
    if not isinstance(storage, EphemeralS3ObjectStore):
        raise TypeError(f"unexpected S3 storage backend {type(storage).__name__}: object bytes cannot be saved")
    return storage


def read_live_object(storage: Any, live_bundle: Any, ref: S3ObjectRef) -> Iterator[bytes] | None:
    """The bytes of ``ref`` from the running S3, or None when the object changed since the metadata was copied."""
    live_bucket = None
    for account_id, bucket in iter_buckets(live_bundle):
        if account_id == ref.account_id and bucket.name == ref.bucket:
            live_bucket = bucket
            break
    if live_bucket is None:
        return None
    live = find_object(live_bucket, ref.obj.key, ref.obj.version_id)
    if live is None or S3ObjectRef(ref.account_id, ref.bucket, live).identity != ref.identity:
        return None
    return _stream(storage, ref.bucket, live)


def _stream(storage: Any, bucket: str, live: Any) -> Iterator[bytes]:
    stored = storage.open(bucket, live, mode="r")
    try:
        if stored.last_modified != live.internal_last_modified:
            raise _Changed
        stored.seek(0)
        while chunk := stored.read(S3_CHUNK):
            yield chunk
    finally:
        stored.close()


class _Changed(Exception):
    """The object was overwritten while it was being saved."""


def write_object(storage: Any, bucket: str, obj: Any, source: Any) -> int:
    """Put saved bytes back into the S3 store for the (loaded) object ``obj``; keeps its ETag (a multipart upload's
    ETag is not the MD5 that ``write`` computes)."""
    etag = obj.etag
    with storage.open(bucket, obj, mode="w") as stored:
        size = int(stored.write(source))
    obj.etag = etag
    return size


# -- EventBridge ------------------------------------------------------------------------------------------------------


def rebuild_events(provider: Any) -> int:
    """Re-create the EventBridge provider's delivery objects for the loaded buses and rules (what PutRule, PutTargets
    and CreateEventBus create next to the store): event bus services, rule services, target senders, schedule jobs.
    Archives, replays, connections and API destinations keep their definitions but get no runtime service."""
    from localstack.services.events.event_bus import EventBusService  # noqa: PLC0415
    from localstack.services.events.models import events_stores  # noqa: PLC0415
    from localstack.services.events.rule import RuleService  # noqa: PLC0415

    rules = 0
    for account_id, region, store in events_stores.iter_stores():
        for event_bus in store.event_buses.values():
            provider._event_bus_services_store[event_bus.arn] = EventBusService(event_bus)
            for rule in event_bus.rules.values():
                rule_service = RuleService(rule)
                provider._rule_services_store[rule.arn] = rule_service
                for target in rule.targets.values():
                    provider.create_target_sender(target, rule.arn, rule.name, region, account_id)
                if rule_service.schedule_cron:
                    job = provider._get_scheduled_rule_job_function(account_id, region, rule)
                    rule_service.create_schedule_job(job)
                rules += 1
    return rules


# -- Lambda -----------------------------------------------------------------------------------------------------------


def mark_lambda_pending() -> int:
    """Every loaded function version says ``Pending`` until its version manager runs (Invoke answers
    ResourceConflictException meanwhile, as after CreateFunction)."""
    from localstack.aws.api.lambda_ import State, StateReasonCode  # noqa: PLC0415
    from localstack.services.lambda_.invocation.lambda_models import VersionState  # noqa: PLC0415
    from localstack.services.lambda_.invocation.models import lambda_stores  # noqa: PLC0415

    count = 0
    pending = VersionState(state=State.Pending, code=StateReasonCode.Creating, reason="The function is being created.")
    for _, _, store in lambda_stores.iter_stores():
        for function in store.functions.values():
            for qualifier, version in list(function.versions.items()):
                config = dataclasses.replace(version.config, state=pending)
                function.versions[qualifier] = dataclasses.replace(version, config=config)
                count += 1
    return count
