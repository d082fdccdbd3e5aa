"""A LocalStack Lambda runtime executor that runs Python functions as host processes (no Docker).

LocalStack's Lambda service (CreateFunction, versions, Invoke, EventBridge targets, CloudWatch Logs) stays as it is;
only the execution environments change: each one is a small host process (``localstack_host_executor.init``) that
serves LocalStack's ``/invoke`` endpoint and the Lambda Runtime API, and runs the function with the real AWS runtime
interface client (``python -m awslambdaric``) in the interpreter that the function's ``Runtime`` names.

Select it with ``LAMBDA_RUNTIME_EXECUTOR=host``. This package must stay importable without LocalStack: only
``plugin`` and ``executor`` import it, and the init process imports neither.
"""

__version__ = "0.1.0"
