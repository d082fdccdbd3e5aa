"""The plux plugin LocalStack finds by name: ``LAMBDA_RUNTIME_EXECUTOR=host``.

LocalStack 4.9.2 resolves the executor with ``PluginManager("localstack.lambda.runtime_executor")``
(``runtime_executor.get_runtime_executor``), which finds plugins through the entry points of installed
distributions; ``pyproject.toml`` declares this class there under the name ``host``.
"""

from __future__ import annotations

from typing import Any

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class HostRuntimeExecutorPlugin(RuntimeExecutorPlugin):  # type: ignore[misc,unused-ignore]  # Any without LocalStack
    name = "host"

    def load(self, *args: Any, **kwargs: Any) -> Any:
        """The executor class (imported only when LocalStack selects this executor)."""
        from localstack_host_executor.executor import HostRuntimeExecutor  # noqa: PLC0415 - loaded on demand

        return HostRuntimeExecutor
