"""LocalStack runtime hooks (plux plugins; entry points in ``infra/localstack/pyproject.toml``).

* ``on_infra_start`` (runs before the gateway serves): load the saved state, start the periodic saver.
* ``on_infra_ready`` (the gateway serves): start the Lambda version managers of the loaded functions.
* ``on_infra_shutdown`` (priority 10: before LocalStack's shutdown handlers and before the services stop): stop the
  periodic saver and save.

None of them raises: a persistence problem is logged and LocalStack runs on (empty where state was unusable).
"""

from __future__ import annotations

import logging

from localstack.runtime import hooks

from localstack_persistence.settings import SettingsError, is_enabled, load_settings
from localstack_persistence.state import StatePersistence

LOG = logging.getLogger("localstack_persistence")

_PERSISTENCE: list[StatePersistence] = []  # the one instance of this process, once started


@hooks.on_infra_start(priority=-10, should_load=is_enabled)  # type: ignore[untyped-decorator,unused-ignore]
def load_localstack_state() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        LOG.error("state persistence disabled: %s", exc)
        return
    persistence = StatePersistence(settings)
    _PERSISTENCE.append(persistence)
    try:
        persistence.load()
    except Exception:
        LOG.exception("loading the saved LocalStack state failed; LocalStack starts without it")


@hooks.on_infra_ready(should_load=is_enabled)  # type: ignore[untyped-decorator,unused-ignore]
def start_restored_lambda_functions() -> None:
    for persistence in _PERSISTENCE:
        try:
            persistence.finish_lambda()
        except Exception:
            LOG.exception("restarting the restored Lambda functions failed")


@hooks.on_infra_shutdown(priority=10, should_load=is_enabled)  # type: ignore[untyped-decorator,unused-ignore]
def save_localstack_state() -> None:
    for persistence in _PERSISTENCE:
        persistence.shutdown()
