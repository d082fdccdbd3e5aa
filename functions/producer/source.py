"""S3 access of the producer: listing, claiming, streaming and moving objects. The only boto3 importer."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True, slots=True)
class S3Object:
    key: str
    size: int
    etag: str
    last_modified: datetime


class _StreamingReader(io.RawIOBase):
    """Adapts a botocore StreamingBody to io.RawIOBase so that io/gzip can buffer it (bounded memory)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class S3Source:
    """The events bucket. Claims are small marker objects written with S3 conditional writes, so two
    invocations never work on the same upload even if the reserved concurrency were raised."""

    def __init__(self, client: S3Client, bucket: str, claims_prefix: str, claim_ttl_seconds: int) -> None:
        self._s3 = client
        self.bucket = bucket
        self._claims_prefix = claims_prefix
        self._claim_ttl = timedelta(seconds=claim_ttl_seconds)

    @classmethod
    def create(
        cls, bucket: str, claims_prefix: str, claim_ttl_seconds: int, endpoint_url: str | None = None
    ) -> S3Source:
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        return cls(client, bucket, claims_prefix, claim_ttl_seconds)

    def list_new(self, prefix: str) -> list[S3Object]:
        """Every object under `prefix`, oldest first (then by key). Folder markers are left out."""
        found = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    found.append(S3Object(item["Key"], item["Size"], item["ETag"], item["LastModified"]))
        return sorted(found, key=lambda obj: (obj.last_modified, obj.key))

    def head(self, key: str) -> S3Object | None:
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return S3Object(key, head["ContentLength"], head["ETag"], head["LastModified"])

    def open(self, obj: S3Object) -> BinaryIO:
        """A buffered binary stream of exactly the version that was listed (If-Match on its ETag)."""
        body = self._s3.get_object(Bucket=self.bucket, Key=obj.key, IfMatch=obj.etag)["Body"]
        return io.BufferedReader(_StreamingReader(body), buffer_size=1 << 20)

    # -- claims -------------------------------------------------------------------------------------------

    def _claim_key(self, key: str) -> str:
        return self._claims_prefix + key

    def claim(self, obj: S3Object, owner: str) -> bool:
        """Take `obj` for this invocation; False when another live claim holds it. A claim older than the TTL
        (its invocation died) is taken over with a compare-and-swap."""
        body = json.dumps({"owner": owner, "etag": obj.etag, "claimed_at": datetime.now(UTC).isoformat()})
        if self._put_claim(obj.key, body):
            return True
        existing = self.head(self._claim_key(obj.key))
        if existing is None or datetime.now(UTC) - existing.last_modified < self._claim_ttl:
            return False
        try:
            # Compare-and-swap on the stale claim's ETag: of two invocations taking it over, one wins.
            return self._put_claim(obj.key, body, replacing=existing.etag)
        except ClientError as exc:
            if _error_code(exc) != "NotImplemented":
                raise
        # An S3 without If-Match on PutObject: delete the stale claim, then create it if absent.
        self._s3.delete_object(Bucket=self.bucket, Key=self._claim_key(obj.key))
        return self._put_claim(obj.key, body)

    def _put_claim(self, key: str, body: str, *, replacing: str | None = None) -> bool:
        """Write the claim of `key` only if there is none (or, with `replacing`, only over the claim of that
        ETag). False when that condition does not hold."""
        claim_key, data = self._claim_key(key), body.encode()
        try:
            if replacing is None:
                self._s3.put_object(Bucket=self.bucket, Key=claim_key, Body=data, IfNoneMatch="*")
            else:
                self._s3.put_object(Bucket=self.bucket, Key=claim_key, Body=data, IfMatch=replacing)
        except ClientError as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def release(self, key: str) -> None:
        """Give the claim back. It is still ours: CLAIM_TTL_SECONDS is longer than any invocation can run,
        so nobody can have taken it over as stale while we held it."""
        self._s3.delete_object(Bucket=self.bucket, Key=self._claim_key(key))

    # -- moving -------------------------------------------------------------------------------------------

    def move(self, obj: S3Object, destination: str) -> None:
        """Copy the listed version to `destination`, then delete the source."""
        self._s3.copy(
            {"Bucket": self.bucket, "Key": obj.key},
            self.bucket,
            destination,
            ExtraArgs={"CopySourceIfMatch": obj.etag},
        )
        try:
            # Only the version we published: a new upload under the same key stays for the next run.
            self._s3.delete_object(Bucket=self.bucket, Key=obj.key, IfMatch=obj.etag)
        except ClientError as exc:
            if _precondition_failed(exc):
                return
            if _error_code(exc) != "NotImplemented":
                raise
            self._s3.delete_object(Bucket=self.bucket, Key=obj.key)  # S3 without conditional deletes (LocalStack 4.9)

    def put_json(self, key: str, document: dict[str, Any]) -> None:
        body = json.dumps(document, indent=2, ensure_ascii=False).encode()
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def read_head(self, obj: S3Object, size: int) -> bytes:
        """The first `size` bytes of the object (for a report on a file that cannot be parsed)."""
        if obj.size == 0:
            return b""
        response = self._s3.get_object(Bucket=self.bucket, Key=obj.key, Range=f"bytes=0-{size - 1}")
        return response["Body"].read()

    def upload(self, key: str, fileobj: BinaryIO) -> None:
        self._s3.upload_fileobj(fileobj, self.bucket, key)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _precondition_failed(exc: ClientError) -> bool:
    return _error_code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
