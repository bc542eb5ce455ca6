"""Blob storage: every large file (certificate PDFs, exports, rosters, lectures) on one small interface, local or S3.

Two backends, chosen by `BLOB_STORE_URL`:
- `file:///abs/path` (or empty: `instance/blobs`), the embedded default. Files live under one
  directory, written to a temporary name and renamed, so a reader never sees half a file.
  Signed links are served by the app itself (web/blobs.py): an HMAC of the key and the expiry
  with the app's secret, answered with Range support.
- `s3://bucket`, any S3-compatible store through boto3 (腾讯云 COS, 阿里云 OSS, MinIO,
  SeaweedFS): `BLOB_S3_ENDPOINT`, `BLOB_S3_REGION`, `BLOB_S3_ACCESS_KEY`, `BLOB_S3_SECRET_KEY`,
  and `BLOB_S3_PUBLIC_ENDPOINT` when students reach the store (or its CDN) at another address
  than the app does. Signed links are S3 presigned URLs, made for the public address.

Keys are paths of safe characters (`certificates/12/3-pdf-ab12.pdf`); a key is written once and
never rewritten in place (a new version is a new key), so caches and CDNs never serve stale bytes.
Nothing here knows about requests or the database: callers hand a store to the operations that
need one, as they hand them a session.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlsplit

KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)*$")
CHUNK = 256 * 1024
# Below this size an S3 put is one request; above it, a multipart upload in parts of this size.
MULTIPART = 16 * 1024 * 1024
# The local backend writes to a file with this prefix, then renames it: what is left with it is a dead write.
PARTIAL = ".part-"


class BlobError(RuntimeError):
    """The store could not do what was asked (unreachable, refused, or the blob is missing)."""


class BlobMissing(BlobError, KeyError):
    """No blob under this key."""


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    modified: datetime


def check_key(key: str) -> str:
    if len(key) > 512 or not KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"not a blob key: {key!r}")
    return key


class BlobStore(Protocol):
    """What every backend offers. `put` takes bytes or a readable binary file (streamed, never
    read whole); `open` returns a readable binary file; `signed_url` is a link that works for
    `expires_in` seconds and nobody can forge or extend."""

    kind: str

    def put(self, key: str, data: bytes | BinaryIO, content_type: str = "application/octet-stream") -> int: ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> Iterator[BlobInfo]: ...

    def signed_url(self, key: str, expires_in: int, *, filename: str | None = None,
                   content_type: str | None = None, inline: bool = False) -> str: ...


# -- local files ---------------------------------------------------------------------------------


def local_signature(secret: bytes, key: str, expires: int, filename: str, content_type: str, inline: bool) -> str:
    """The local backend's link signature: what a link may fetch, how it is served, until when."""
    message = "\n".join((key, str(expires), filename, content_type, "inline" if inline else "")).encode()
    return base64.urlsafe_b64encode(hmac.new(secret, message, hashlib.sha256).digest()[:24]).decode()


class LocalStore:
    """Blobs as files under `root`; signed links point at `url_prefix` (the app's /blobs/ route)."""

    kind = "file"

    def __init__(self, root: Path, secret: bytes, url_prefix: str) -> None:
        self.root = root
        self.secret = secret
        self.url_prefix = url_prefix.rstrip("/")
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes | BinaryIO, content_type: str = "application/octet-stream") -> int:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=PARTIAL)
        try:
            with os.fdopen(handle, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    out.write(data)
                else:
                    shutil.copyfileobj(data, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)  # whole or not at all
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target.stat().st_size

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise BlobMissing(key) from None

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        folder, _, name = key.rpartition("/")
        if name.startswith(PARTIAL) and folder:
            # A half-written file (its writer died): listed for the sweep, so it may be deleted.
            (self.path(folder) / name).unlink(missing_ok=True)
            return
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file():
                stat = path.stat()
                key = path.relative_to(self.root).as_posix()
                # Half-written files (PARTIAL) are listed too: the orphan sweep removes old ones.
                yield BlobInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    def signed_url(self, key: str, expires_in: int, *, filename: str | None = None,
                   content_type: str | None = None, inline: bool = False) -> str:
        expires = int(time.time()) + expires_in
        name, ctype = filename or "", content_type or ""
        signature = local_signature(self.secret, check_key(key), expires, name, ctype, inline)
        query = f"e={expires}&s={signature}"
        if name:
            query += "&n=" + quote(name, safe="")
        if ctype:
            query += "&t=" + quote(ctype, safe="")
        if inline:
            query += "&i=1"
        return f"{self.url_prefix}/{quote(key)}?{query}"


# -- S3 ------------------------------------------------------------------------------------------


class S3Store:
    """Blobs in one S3 bucket. Two clients: one at the address the app reaches the store on, one at
    the address students reach it on (presigned URLs are signed for their host)."""

    kind = "s3"

    def __init__(self, bucket: str, *, endpoint: str | None, region: str, access_key: str | None,
                 secret_key: str | None, public_endpoint: str | None = None, create_bucket: bool = False) -> None:
        import boto3  # only a deployment on S3 pays for importing it
        from botocore.config import Config

        self.bucket = bucket
        options: dict[str, Any] = {
            "region_name": region, "aws_access_key_id": access_key, "aws_secret_access_key": secret_key,
            # Path-style addressing: MinIO and SeaweedFS need it, and COS/OSS accept it.
            "config": Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                             connect_timeout=5, read_timeout=60),
        }
        self.client = boto3.client("s3", endpoint_url=endpoint, **options)
        self.signer = boto3.client("s3", endpoint_url=public_endpoint or endpoint, **options)
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(multipart_threshold=MULTIPART, multipart_chunksize=MULTIPART)
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def _error(self, exc: Exception, key: str) -> BlobError:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return BlobMissing(key)
        return BlobError(f"S3 {code or type(exc).__name__} for {key}")

    def put(self, key: str, data: bytes | BinaryIO, content_type: str = "application/octet-stream") -> int:
        check_key(key)
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), ContentType=content_type)
                return len(data)
            self.client.upload_fileobj(data, self.bucket, key, ExtraArgs={"ContentType": content_type},
                                       Config=self.transfer)
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; the caller needs one
            raise self._error(exc, key) from exc
        return self.size(key) or 0

    def get(self, key: str) -> bytes:
        with self.open(key) as body:
            return body.read()

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"]  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, key) from exc

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=check_key(key))["ContentLength"])
        except Exception as exc:  # noqa: BLE001
            error = self._error(exc, key)
            if isinstance(error, BlobMissing):
                return None
            raise error from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, key) from exc

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield BlobInfo(item["Key"], int(item["Size"]), item["LastModified"])

    def signed_url(self, key: str, expires_in: int, *, filename: str | None = None,
                   content_type: str | None = None, inline: bool = False) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": check_key(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename, inline)
        if content_type:
            params["ResponseContentType"] = content_type
        return str(self.signer.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))


def content_disposition(filename: str, inline: bool = False) -> str:
    """attachment (or inline), with the name in UTF-8 (RFC 6266) and an ASCII fallback."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "download"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def open_store(config: Mapping[str, Any], instance_path: str) -> BlobStore:
    """The store `config` names (BLOB_STORE_URL and BLOB_S3_*), created if it is not there yet."""
    url = str(config.get("BLOB_STORE_URL") or "")
    secret = str(config["SECRET_KEY"]).encode()
    if not url or url.startswith("file:"):
        root = Path(urlsplit(url).path) if url else Path(instance_path) / "blobs"
        return LocalStore(root, secret, "/blobs")
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"BLOB_STORE_URL must be file:///path or s3://bucket, not {url!r}")
    return S3Store(parts.netloc, endpoint=config.get("BLOB_S3_ENDPOINT") or None,
                   region=str(config.get("BLOB_S3_REGION") or "us-east-1"),
                   access_key=config.get("BLOB_S3_ACCESS_KEY") or None,
                   secret_key=config.get("BLOB_S3_SECRET_KEY") or None,
                   public_endpoint=config.get("BLOB_S3_PUBLIC_ENDPOINT") or None,
                   create_bucket=bool(config.get("BLOB_S3_CREATE_BUCKET")))
