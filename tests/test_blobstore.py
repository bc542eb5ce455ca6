"""The blob store on both backends: the local directory and a real S3 server (SeaweedFS), with the
same tests: put/get/stream/size/list/delete, whole-or-nothing writes, signed links that expire and
cannot be altered, Range requests, and keys that try to escape."""
from __future__ import annotations

import io
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from blobstore import BlobMissing, LocalStore, S3Store, check_key, open_store


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "file":
        return LocalStore(tmp_path / "blobs", b"secret", "/blobs")
    server = request.getfixturevalue("s3_server")
    return S3Store("t" + secrets.token_hex(6), endpoint=server.endpoint, region="us-east-1",
                   access_key=server.access_key, secret_key=server.secret_key, create_bucket=True)


def test_put_get_open_size_list_delete(store) -> None:  # type: ignore[no-untyped-def]
    assert store.put("certificates/1/pdf-a.pdf", b"%PDF-1.7 x", "application/pdf") == 10
    big = secrets.token_bytes(3 * 1024 * 1024 + 17)
    assert store.put("exports/big.zip", io.BytesIO(big), "application/zip") == len(big)  # streamed
    assert store.get("certificates/1/pdf-a.pdf") == b"%PDF-1.7 x"
    with store.open("exports/big.zip") as body:
        assert body.read() == big
    assert store.size("exports/big.zip") == len(big) and store.size("exports/none.zip") is None
    assert [b.key for b in store.list("certificates/")] == ["certificates/1/pdf-a.pdf"]
    assert {b.key for b in store.list("")} == {"certificates/1/pdf-a.pdf", "exports/big.zip"}
    store.delete("exports/big.zip")
    store.delete("exports/big.zip")  # deleting twice is not an error
    assert store.size("exports/big.zip") is None
    with pytest.raises(BlobMissing):
        store.get("exports/big.zip")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/../b", "", "a/.hidden", "a b", "x" * 600])
def test_keys_that_try_to_escape_are_refused(store, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        store.put(key, b"x")
    with pytest.raises(ValueError):
        check_key(key)


def test_a_local_write_is_whole_or_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, b"secret", "/blobs")
    store.put("a/b.bin", b"first")

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            raise OSError("the upload broke off")

    with pytest.raises(OSError):
        store.put("a/b.bin", io.BufferedReader(Broken()))
    assert store.get("a/b.bin") == b"first"  # the old bytes, not half of the new
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.bin"]  # no temporary left behind


def test_s3_signed_links_expire_and_cannot_be_altered(s3_server) -> None:  # type: ignore[no-untyped-def]
    store = S3Store("t" + secrets.token_hex(6), endpoint=s3_server.endpoint, region="us-east-1",
                    access_key=s3_server.access_key, secret_key=s3_server.secret_key, create_bucket=True)
    store.put("lectures/1/seg-1.ts", b"0123456789", "video/mp2t")
    url = store.signed_url("lectures/1/seg-1.ts", 2, filename="证书.pdf", content_type="application/pdf")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"0123456789"
        assert "filename*=UTF-8''%E8%AF%81%E4%B9%A6.pdf" in response.headers["Content-Disposition"]
    ranged = urllib.request.Request(url, headers={"Range": "bytes=2-4"})
    with urllib.request.urlopen(ranged) as response:
        assert (response.status, response.read()) == (206, b"234")
    for forged in (url.replace("seg-1", "seg-2"), url.replace("Signature=", "Signature=0"),
                   f"{s3_server.endpoint}/{store.bucket}/lectures/1/seg-1.ts"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged)
        assert refused.value.code in (403, 404)
    time.sleep(3)
    with pytest.raises(urllib.error.HTTPError) as expired:
        urllib.request.urlopen(url)
    assert expired.value.code == 403


def test_local_signed_links_are_served_with_range_and_expire(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_test_app
    from web.blobs import get_blob_store

    app = make_test_app(database_url, BLOB_STORE_URL=f"file://{tmp_path}/blobs")  # whatever the run's backend
    client = app.test_client()
    store = get_blob_store(app)
    assert isinstance(store, LocalStore)
    store.put("exports/e1.zip", b"0123456789")
    url = store.signed_url("exports/e1.zip", 60, filename="导出.zip", content_type="application/zip")
    whole = client.get(url)
    assert (whole.status_code, whole.data, whole.mimetype) == (200, b"0123456789", "application/zip")
    assert "filename*=UTF-8''%E5%AF%BC%E5%87%BA.zip" in whole.headers["Content-Disposition"]
    assert whole.headers["Cache-Control"].startswith("private")
    part = client.get(url, headers={"Range": "bytes=3-5"})
    assert (part.status_code, part.data) == (206, b"345")
    path, query = url.split("?")
    assert client.get(path.replace("e1", "e2") + "?" + query).status_code == 403  # another key
    assert client.get(url.replace("&s=", "&s=A")).status_code == 403  # altered signature
    assert client.get(url.replace("zip&", "exe&")).status_code in (403, 404)  # another type
    longer = url.replace("e=", "e=9")
    assert client.get(longer).status_code == 403  # a longer life is another signature
    assert client.get(path).status_code == 403  # no signature at all
    expired = store.signed_url("exports/e1.zip", -1)
    assert client.get(expired).status_code == 403
    assert client.get(store.signed_url("exports/none.zip", 60)).status_code == 404


def test_the_config_chooses_the_backend(tmp_path: Path, s3_server) -> None:  # type: ignore[no-untyped-def]
    local = open_store({"SECRET_KEY": "k", "BLOB_STORE_URL": None}, str(tmp_path))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "blobs"
    remote = open_store({"SECRET_KEY": "k", **s3_server.config("cfg" + secrets.token_hex(4))}, str(tmp_path))
    assert isinstance(remote, S3Store)
    remote.put("a/b", b"ok")
    assert remote.get("a/b") == b"ok"
    with pytest.raises(ValueError):
        open_store({"SECRET_KEY": "k", "BLOB_STORE_URL": "ftp://x"}, str(tmp_path))


def test_the_page_policy_names_the_stores_public_origin(database_url, s3_server) -> None:  # type: ignore[no-untyped-def]
    """Certificate images and lecture segments come from S3 (or its CDN) on signed links: the pages'
    Content-Security-Policy allows that one origin, and no other."""
    from tests.conftest import make_test_app

    for config, expected in ((s3_server.config("csp" + secrets.token_hex(3)), s3_server.endpoint),
                             ({**s3_server.config("csp" + secrets.token_hex(3)),
                               "BLOB_S3_PUBLIC_ENDPOINT": "https://cdn.example.cn/path"}, "https://cdn.example.cn")):
        policy = make_test_app(database_url, **config).test_client().get("/verify").headers["Content-Security-Policy"]
        assert f"img-src 'self' data: blob: {expected};" in policy and f"connect-src 'self' {expected};" in policy
    local = make_test_app(database_url, BLOB_STORE_URL=None).test_client().get("/verify")
    assert "connect-src 'self';" in local.headers["Content-Security-Policy"]
