"""Object stores behind one interface: the local filesystem now, S3 for prod.

Each `put` is atomic: a reader sees the whole object or nothing. `put_if_absent` is
a conditional create: of two writers of one key exactly one succeeds (a hard link
on local files, `If-None-Match: *` on S3), which is what serializes alias moves.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

CONDITIONAL_WRITE_ATTEMPTS = 5


class ObjectNotFound(KeyError):
    pass


class ObjectStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create key with data unless it exists; True when this call created it."""

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove key; a key that is not there is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under prefix, sorted."""

    @abstractmethod
    def uri(self, key: str) -> str: ...

    def size(self, key: str) -> int:
        """The object's size in bytes; ObjectNotFound when it is not there."""
        return len(self.get(key))


class LocalObjectStore(ObjectStore):
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if Path(key).is_absolute() or self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} escapes the store root")
        return path

    def _write_temporary(self, path: Path, data: bytes) -> str:
        """data in a hidden temporary file beside path, flushed to disk; returns its name."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return tmp

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._write_temporary(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._write_temporary(path, data)
        try:
            os.link(tmp, path)  # atomic, and fails when path exists: whole content or nothing
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        if prefix:
            self._path(prefix)  # refuses a prefix outside the root
        base = self.root / prefix
        directory = base if base.is_dir() else base.parent
        if not directory.is_dir():
            return []
        keys = []
        for path in directory.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc


def content_type(key: str) -> str:
    """The Content-Type S3 answers with: by the key's extension, so a browser opening a presigned
    URL renders an HTML report (model card, Data Docs page) instead of downloading it."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket under a prefix. A PUT is atomic in S3, so a reader
    sees a whole object or none. The endpoint follows boto3's own configuration
    (AWS_ENDPOINT_URL), so MinIO and other S3-compatible stores work."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type(key))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        for attempt in range(CONDITIONAL_WRITE_ATTEMPTS):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*",
                                       ContentType=content_type(key))
                return True
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code == "PreconditionFailed":  # 412: the key exists
                    return False
                if code != "ConditionalRequestConflict":  # 409: another conditional write is in flight
                    raise
            time.sleep(0.05 * (attempt + 1))
        raise RuntimeError(f"{self.uri(key)}: conditional writes kept conflicting ({CONDITIONAL_WRITE_ATTEMPTS} tries)")

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise ObjectNotFound(key) from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def size(self, key: str) -> int:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(key) from exc
            raise

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def presigned_url(self, key: str, expires_s: int) -> str:
        """A GET URL a browser can open until it expires; it carries the access key id and a
        signature, never the secret key."""
        import boto3
        from botocore.config import Config

        meta = self.client.meta  # the same endpoint and region, signed with SigV4 (boto3 may pick SigV2)
        signer = boto3.client("s3", endpoint_url=meta.endpoint_url, region_name=meta.region_name,
                              config=meta.config.merge(Config(signature_version="s3v4")))
        return signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
        )
