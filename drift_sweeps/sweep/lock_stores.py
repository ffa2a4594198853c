"""Where a sweep folder's lock lives: the atomic operations of `lock.FolderLock` on a local or NFS folder, on
S3 (conditional writes), and a best-effort fallback for other pyarrow filesystems.

Each store has: create(data) -> version or None when a lock exists; read() -> (data, version) or None;
renew(data, version) and take_over(data, version) -> the new version, or None when the lock is no longer
the one of `version`; delete(version); age() -> seconds since the lock was written, or None.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
import urllib.parse
import uuid
from typing import Any, Callable, Optional

LOCK_NAME = ".driver-lock.json"  # in the sweep folder, hidden: not a table, not a record
CLAIM_STALE_S = 30.0  # a change to the lock takes milliseconds: a claim this old was left by a writer that died
MAX_CLAIMS = 8  # claims passed on one version at most (each one a writer that died mid-change)


class LocalStore:
    """A lock file in a local or NFS folder: hard links and renames, which are atomic on both."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.created_folder = False

    def _side_file(self, kind: str) -> str:
        return os.path.join(self.folder, f"{LOCK_NAME}.{uuid.uuid4().hex}.{kind}")

    def _write_side(self, data: bytes) -> str:
        tmp = self._side_file("new")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # a full disk: no partial side file left behind
            _unlink(tmp)
            raise
        return tmp

    def create(self, data: bytes) -> Optional[bytes]:
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder, exist_ok=True)
            self.created_folder = True
        return data if self._place(data, self.path)[0] else None

    def _place(self, data: bytes, path: str) -> tuple[bool, float]:
        """Put a complete file with `data` at `path` unless one is there: (whether this call placed it, the
        storage's clock as it wrote the file: ages of other files in the folder are measured against it, not
        against this machine's clock)."""
        tmp = self._write_side(data)
        try:
            now = os.stat(tmp).st_mtime
            os.link(tmp, path)  # a complete file appears at once, or not at all
        except FileExistsError:
            return False, now
        except OSError as err:  # a filesystem without hard links: an exclusive create
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False, now
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        finally:
            _unlink(tmp)
        return True, now

    def read(self) -> Optional[tuple[bytes, bytes]]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, data

    def age(self) -> Optional[float]:
        return _age(self.path)

    def renew(self, data: bytes, version: bytes) -> Optional[bytes]:
        return data if self._claimed(version, lambda: self._replace_with(data)) else None

    take_over = renew  # the same change: the lock replaced in one rename while it is still `version`

    def _replace_with(self, data: bytes) -> None:
        tmp = self._write_side(data)
        try:
            os.replace(tmp, self.path)  # never absent: a newcomer cannot create one meanwhile
        except BaseException:
            _unlink(tmp)
            raise

    def _claimed(self, version: bytes, change: Callable[[], None]) -> bool:
        """Make `change` to the lock while it is still `version`, under a claim on that version: one writer per
        version, so a renewal, a takeover and a release never act on a lock another writer has just replaced.
        Claims are numbered: a writer takes the first free one, and may pass one only when it is older than
        CLAIM_STALE_S (its writer died mid-change); two writers passing the same dead claim meet at the next
        one, and no writer removes a claim that is not its own until the lock has changed.  -> False when
        another writer holds the claim or the lock is no longer `version`."""
        passed: list[str] = []
        for k in range(MAX_CLAIMS):
            claim = self.claim_path(version, k)
            placed, now = self._place(b"", claim)
            if placed:
                break
            mtime = _mtime(claim)
            if mtime is None or now - mtime <= CLAIM_STALE_S:
                return False  # another writer is at work (or just finished: the lock has changed)
            passed.append(claim)
        else:
            return False
        try:
            found = self.read()
            if found is None or found[1] != version:  # renewed, replaced or released since it was read
                return False
            change()
            for dead in passed:  # moot now that the lock has changed
                _unlink(dead)
            return True
        finally:
            _unlink(claim)

    def claim_path(self, version: bytes, k: int = 0) -> str:
        """The k-th claim of a change to the lock whose content is `version`."""
        return os.path.join(self.folder, f"{LOCK_NAME}.{hashlib.sha256(version).hexdigest()[:20]}.claim{k}")

    def delete(self, version: bytes) -> None:
        self._claimed(version, lambda: _unlink(self.path))
        if self.created_folder:
            try:
                os.rmdir(self.folder)  # the folder this driver created, if nothing was written into it
            except OSError:
                pass


def _age(path: str) -> Optional[float]:
    mtime = _mtime(path)
    return None if mtime is None else time.time() - mtime


def _mtime(path: str) -> Optional[float]:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def s3_location(sweep_root: str) -> tuple[str, str, dict[str, Any]]:
    """(bucket, key of the lock, boto3 client arguments) of an s3:// sweep folder; the endpoint and region
    from the URI's ?endpoint_override=/scheme=/region= (else boto3 reads AWS_ENDPOINT_URL and friends)."""
    base, _, query = sweep_root.partition("?")
    bucket, _, prefix = base[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    client: dict[str, Any] = {}
    endpoint = params.get("endpoint_override")
    if endpoint:
        client["endpoint_url"] = endpoint if "://" in endpoint else f"{params.get('scheme', 'https')}://{endpoint}"
    if params.get("region"):
        client["region_name"] = params["region"]
    return bucket, f"{prefix}/{LOCK_NAME}" if prefix else LOCK_NAME, client


class S3Store:
    """A lease object on S3, written with conditional requests (If-None-Match, If-Match)."""

    def __init__(self, sweep_root: str) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket, self.key, kwargs = s3_location(sweep_root)
        self.client = boto3.client("s3", **kwargs)
        self._client_error = ClientError
        self._unreachable = BotoCoreError  # no credentials, no connection (after botocore's retries)

    def _code(self, err: Exception) -> str:
        return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))

    def _put(self, data: bytes, **condition: str) -> Optional[str]:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except self._unreachable as err:
            raise OSError(f"s3://{self.bucket}/{self.key}: {err}") from None
        except self._client_error as err:
            if self._code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409",
                                   "NoSuchKey", "404"):
                return None
            raise OSError(f"s3://{self.bucket}/{self.key}: {err}") from None

    def create(self, data: bytes) -> Optional[str]:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> Optional[tuple[bytes, str]]:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self._unreachable as err:
            raise OSError(f"s3://{self.bucket}/{self.key}: {err}") from None
        except self._client_error as err:
            if self._code(err) in ("NoSuchKey", "404"):
                return None
            raise OSError(f"s3://{self.bucket}/{self.key}: {err}") from None
        return got["Body"].read(), got["ETag"]

    def age(self) -> Optional[float]:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except (self._client_error, self._unreachable):
            return None
        return time.time() - head["LastModified"].timestamp()

    def renew(self, data: bytes, version: str) -> Optional[str]:
        return self._put(data, IfMatch=version)

    take_over = renew  # one compare-and-swap: only the writer that saw this ETag succeeds

    def delete(self, version: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except self._unreachable as err:
            raise OSError(f"s3://{self.bucket}/{self.key}: {err}") from None
        except self._client_error as err:
            if self._code(err) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                return  # not ours any more, or gone
            found = self.read()  # a store without conditional deletes
            if found is not None and found[1] == version:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)


class ArrowStore:
    """Best effort through a pyarrow filesystem (no conditional writes): write, then read back."""

    def __init__(self, sweep_root: str) -> None:
        from .. import results

        self.fs, root = results.resolve(sweep_root)
        self.path = f"{root}/{LOCK_NAME}"

    def read(self) -> Optional[tuple[bytes, bytes]]:
        try:
            with self.fs.open_input_stream(self.path) as f:
                data = f.readall()
        except FileNotFoundError:
            return None
        return data, data

    def _write(self, data: bytes) -> Optional[bytes]:
        with self.fs.open_output_stream(self.path) as out:
            out.write(data)
        found = self.read()
        return data if found is not None and found[0] == data else None

    def create(self, data: bytes) -> Optional[bytes]:
        return None if self.read() is not None else self._write(data)

    def age(self) -> Optional[float]:
        mtime = self.fs.get_file_info(self.path).mtime
        return None if mtime is None else time.time() - mtime.timestamp()

    def renew(self, data: bytes, version: bytes) -> Optional[bytes]:
        found = self.read()
        return self._write(data) if found is not None and found[1] == version else None

    take_over = renew

    def delete(self, version: bytes) -> None:
        found = self.read()
        if found is not None and found[1] == version:
            self.fs.delete_file(self.path)
