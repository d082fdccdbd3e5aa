"""A handler module whose import fails: the function must report Runtime.ImportModuleError."""

import module_that_does_not_exist  # noqa: F401


def handler(event: object, context: object) -> None:
    return None
