"""State persistence for LocalStack community 4.9.2: save the service stores on shutdown and periodically, load them
at start-up (the snapshot mechanism LocalStack ships only in its Pro edition).

Turned on with ``STATE_PERSISTENCE=1`` (``infra/localstack/localstack.env``); the snapshots go to
``LOCALSTACK_STATE_DIR``. See ``docs/localstack-persistence.md``.

``settings`` and ``snapshot`` are plain Python (unit-tested without LocalStack); ``state``, ``services`` and
``hooks`` run inside LocalStack, which finds the hooks through the entry points in ``infra/localstack/pyproject.toml``.
"""

__version__ = "0.1.0"
