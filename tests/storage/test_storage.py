"""The storage layer against real local S3 (moto), GCS (fake-gcs-server) and Azure (Azurite)
servers, plus its store-free parts: retries, redaction, missing extras, the local cache."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from nhance_batch import storage
from nhance_batch.storage import RetryPolicy, StorageError

FAST = RetryPolicy(attempts=12, base=0.2, cap=1.0)
ONCE = RetryPolicy(attempts=1)


def _no_secrets(text: str, options: dict) -> None:
    for secret in storage.secret_values(options):
        assert secret not in text, "a credential leaked into a message"


# -- against the three stores ------------------------------------------------------------------


def test_list_prefix_recursively_with_video_rules(store):
    for key in ("in/a.mp4", "in/sub/deeper/b.MKV", "in/sub/c.webm", "in/notes.txt",
                "in/sub/thumb.jpg", "in/.hidden/d.mov", "in/out/_nhance/x.mp4", "other/e.mp4"):
        store.put(key, key.encode())
    videos = storage.list_videos(store.key("in"), store.storage_options,
                                 exclude=store.key("in", "out"))
    assert [v.relative for v in videos] == [".hidden/d.mov", "a.mp4", "sub/c.webm",
                                            "sub/deeper/b.MKV"]
    assert videos[1].source == store.key("in", "a.mp4")
    for v in videos:  # the listing's fingerprint is the one a fresh look-up gives
        assert (v.fingerprint, v.size) == storage.fingerprint(v.source, store.storage_options)
        assert v.size == len(f"in/{v.relative}")
    # a trailing slash, one object, a glob
    assert [v.relative for v in storage.list_videos(store.key("in/"), store.storage_options,
                                                    exclude=store.key("in/out"))] == \
        [v.relative for v in videos]
    single = storage.list_videos(store.key("in", "a.mp4"), store.storage_options)
    assert [(v.source, v.relative) for v in single] == [(store.key("in", "a.mp4"), "a.mp4")]
    # object keys are case-sensitive, and so are globs over them
    globbed = storage.list_videos(store.key("in", "sub", "**", "*.mkv"), store.storage_options)
    assert globbed == []
    globbed = storage.list_videos(store.key("in", "sub", "**", "*.MKV"), store.storage_options)
    assert [v.relative for v in globbed] == ["deeper/b.MKV"]
    globbed = storage.list_videos(store.key("in", "sub", "*", "*.MKV"), store.storage_options)
    assert [(v.relative, v.source) for v in globbed] == [
        ("deeper/b.MKV", store.key("in", "sub", "deeper", "b.MKV"))]
    with pytest.raises(FileNotFoundError, match="no such object, prefix"):
        storage.list_videos(store.key("nothing-here"), store.storage_options)


def test_fingerprint_follows_the_object(store):
    store.put("v.mp4", b"a" * 4096)
    first = storage.fingerprint(store.key("v.mp4"), store.storage_options)
    assert first[1] == 4096
    store.put("v.mp4", b"b" * 4096)  # same size, other content
    second = storage.fingerprint(store.key("v.mp4"), store.storage_options)
    assert second[1] == 4096 and second[0] != first[0]
    store.put("v.mp4", b"b" * 4097)
    assert storage.fingerprint(store.key("v.mp4"), store.storage_options)[1] == 4097
    with pytest.raises(FileNotFoundError):
        storage.fingerprint(store.key("missing.mp4"), store.storage_options)


def test_upload_download_and_local_copy(store, tmp_path):
    data = os.urandom(300_000)
    src = tmp_path / "part.mp4"
    src.write_bytes(data)
    url = store.key("out", "deep", "part.mp4")
    assert storage.upload(str(src), url, store.storage_options) == len(data)
    assert not src.exists()  # moved
    assert storage.exists(url, store.storage_options)
    assert storage.size(url, store.storage_options) == len(data)
    assert storage.read_bytes(url, store.storage_options) == data
    src.write_bytes(b"again")  # a retried chunk uploads to the same key again
    assert storage.upload(str(src), url, store.storage_options) == 5
    assert storage.read_bytes(url, store.storage_options) == b"again"
    src.write_bytes(data)
    storage.upload(str(src), url, store.storage_options)
    cache = storage.InputCache(str(tmp_path / "cache"), max_bytes=10_000_000)
    with storage.local_input(url, store.storage_options, cache=cache) as path:
        assert Path(path).read_bytes() == data
        assert str(path).startswith(str(tmp_path / "cache"))
    storage.remove(url, store.storage_options)
    assert not storage.exists(url, store.storage_options)
    storage.remove(url, store.storage_options)  # missing is fine


def test_an_upload_cut_midway_leaves_no_final_key(store, tmp_path):
    src = tmp_path / "final.mp4"
    src.write_bytes(os.urandom(3 << 20))
    store.proxy.cut_after(1 << 20, status=403)  # then the store "denies" everything
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        storage.upload(str(src), store.key("videos", "final.mp4"), store.storage_options,
                       policy=FAST)
    assert time.monotonic() - started < 30
    assert src.exists()  # kept for another try
    _no_secrets(str(err.value), store.storage_options)
    store.proxy.heal()
    assert not store.exists("videos/final.mp4")


def test_transient_outage_is_retried(store, tmp_path):
    src = tmp_path / "v.mp4"
    src.write_bytes(b"x" * 50_000)
    store.put("probe.mp4", b"p")
    storage.fingerprint(store.key("probe.mp4"), store.storage_options)  # warm the client
    store.proxy.down()
    timer = threading.Timer(1.0, store.proxy.up)
    timer.start()
    started = time.monotonic()
    try:
        assert storage.upload(str(src), store.key("v.mp4"), store.storage_options,
                              policy=FAST) == 50_000
    finally:
        timer.join()
    assert time.monotonic() - started >= 0.9
    assert store.exists("v.mp4")
    # 503s (and dropped keep-alive connections) are retried too
    store.proxy.fail(503, count=2)
    assert storage.fingerprint(store.key("v.mp4"), store.storage_options, policy=FAST)[1] \
        == 50_000


def test_missing_bucket_fails_fast_with_a_clear_message(store):
    missing = f"{store.scheme}://no-such-bucket-{store.bucket[-8:]}/in"
    started = time.monotonic()
    with pytest.raises(StorageError, match="no such bucket/container") as err:
        storage.list_videos(missing, store.storage_options)
    assert not err.value.transient
    assert time.monotonic() - started < 10
    _no_secrets(str(err.value), store.storage_options)


def test_access_denied_fails_fast(store):
    store.put("v.mp4", b"v")
    store.proxy.fail(403)
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        storage.fingerprint(store.key("v.mp4"), store.storage_options, policy=FAST)
    assert time.monotonic() - started < 10
    assert not err.value.transient
    assert "access denied" in str(err.value)
    _no_secrets(str(err.value), store.storage_options)


# -- without a store ---------------------------------------------------------------------------


@pytest.mark.parametrize("url, extra, module", [
    ("s3://bucket/in", "s3", "s3fs"), ("gs://bucket/in", "gcs", "gcsfs"),
    ("gcs://bucket/in", "gcs", "gcsfs"), ("az://container/in", "azure", "adlfs"),
    ("abfs://container/in", "azure", "adlfs"),
])
def test_missing_extra_names_it(monkeypatch, url, extra, module):
    import importlib

    registry = importlib.import_module("fsspec.registry")
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    for protocol, (name, _) in storage.EXTRAS.items():
        if name == extra:
            monkeypatch.delitem(registry._registry, protocol, raising=False)
    with pytest.raises(StorageError) as err:
        storage.resolve(url, {})
    assert f"pip install 'nhance-batch[{extra}]'" in str(err.value)
    assert module in str(err.value)


def test_unknown_protocol():
    with pytest.raises(StorageError, match="unknown storage protocol 'nope'"):
        storage.resolve("nope://x/y")


def test_is_transient_classification():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    assert storage.is_transient(client_error("SlowDown", 503))
    assert storage.is_transient(client_error("InternalError", 500))
    assert storage.is_transient(client_error("Throttling", 400))
    assert not storage.is_transient(client_error("NoSuchBucket", 404))
    assert not storage.is_transient(client_error("AccessDenied", 403))
    assert storage.is_transient(EndpointConnectionError(endpoint_url="http://x"))
    wrapped = OSError(5, "translated")
    wrapped.__cause__ = client_error("SlowDown", 503)
    assert storage.is_transient(wrapped)
    assert storage.is_transient(TimeoutError()) and storage.is_transient(ConnectionResetError())
    assert not storage.is_transient(FileNotFoundError("x"))
    assert not storage.is_transient(PermissionError("x"))

    class HttpResponseError(Exception):
        def __init__(self, status_code):
            super().__init__("azure")
            self.status_code = status_code

    assert storage.is_transient(HttpResponseError(503))
    assert storage.is_transient(HttpResponseError(429))
    assert not storage.is_transient(HttpResponseError(409))


def test_with_retries_backs_off_then_succeeds_or_fails_fast():
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "ok"

    assert storage.with_retries(flaky, policy=RetryPolicy(5, 0.05, 0.2)) == "ok"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.02 and calls[2] - calls[1] >= 0.045  # backoff doubles

    def denied():
        calls.append(0)
        raise PermissionError("nope")

    calls.clear()
    with pytest.raises(StorageError, match="access denied") as err:
        storage.with_retries(denied, what="reading", url="s3://b/k")
    assert calls == [0] and not err.value.transient

    def always():
        raise TimeoutError("slow")

    with pytest.raises(StorageError, match="gave up after 3 attempts") as err:
        storage.with_retries(always, policy=RetryPolicy(3, 0.01, 0.01))
    assert err.value.transient


SECRETS = {
    "key": "AKIAEXAMPLEKEYID",
    "secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "client_kwargs": {"endpoint_url": "http://minio:9000",
                      "aws_session_token": "FQoGZXIvYXdzEXAMPLETOKEN"},
    "connection_string": "DefaultEndpointsProtocol=https;AccountName=acct;"
                         "AccountKey=c2VjcmV0LWFjY291bnQta2V5LWJhc2U2NA==;",
    "token": {"type": "service_account", "client_email": "bot@proj.iam.gserviceaccount.com",
              "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n"
                             "-----END PRIVATE KEY-----\n"},
    "sas_token": "sv=2022-11-02&ss=b&sig=abcdEFGHsignature%3D",
}


def test_redact_removes_every_secret(monkeypatch, caplog):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value-123")
    text = (f"failed with {SECRETS} at https://acct.blob.core.windows.net/c/v.mp4?"
            "sv=1&sig=UrlSignature123 and https://u:hunter22@example.com/x "
            "AccountKey=anotherKey== env-secret-value-123 "
            "X-Amz-Signature=deadbeef01&X-Amz-Credential=AKIAOTHER")
    out = storage.redact(text, SECRETS)
    for needle in ("AKIAEXAMPLEKEYID", "wJalrXUtnFEMI", "FQoGZXIvYXdzEXAMPLETOKEN",
                   "c2VjcmV0LWFjY291bnQta2V5LWJhc2U2NA==", "MIIEvQIBADANBg", "abcdEFGHsignature",
                   "UrlSignature123", "hunter22", "anotherKey", "env-secret-value-123",
                   "deadbeef01", "AKIAOTHER"):
        assert needle not in out, needle
    assert "http://minio:9000" in out and "bot@proj.iam.gserviceaccount.com" not in \
        storage.redact(str(SECRETS["token"]), SECRETS)
    safe = storage.redacted_options(SECRETS)
    assert safe["client_kwargs"]["endpoint_url"] == "http://minio:9000"
    assert safe["secret"] == safe["key"] == safe["connection_string"] == "***"
    assert safe["client_kwargs"]["aws_session_token"] == "***"
    assert safe["token"]["private_key"] == "***"

    logger = logging.getLogger("nhance.test.redact")
    flt = storage.RedactingFilter(SECRETS)
    logger.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="nhance.test.redact"):
            logger.info("connecting with %s", SECRETS["secret"])
    finally:
        logger.removeFilter(flt)
    assert "wJalrXUtnFEMI" not in caplog.text and "***" in caplog.text


def test_storage_options_json_and_protocol_keys():
    assert storage.parse_storage_options(None) == {}
    assert storage.parse_storage_options('{"anon": true}') == {"anon": True}
    with pytest.raises(StorageError) as err:
        storage.parse_storage_options('{"secret": "s3cr3t-value",}')
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(StorageError, match="JSON object"):
        storage.parse_storage_options("[1]")
    keyed = {"s3": {"anon": True}, "gs": {"token": "anon"}, "az": {"account_name": "a"}}
    assert storage.options_for("s3a://b/k", keyed) == {"anon": True}
    assert storage.options_for("gcs://b/k", keyed) == {"token": "anon"}
    assert storage.options_for("abfs://c/k", keyed) == {"account_name": "a"}
    assert storage.options_for("/local/path", keyed) == {}
    assert storage.options_for("s3://b/k", {"anon": True}) == {"anon": True}
    assert storage.options_for("/local/path", {"anon": True}) == {}


def test_local_paths_keep_todays_behaviour(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.mp4").write_bytes(b"a")
    (tmp_path / "in" / "sub" / "b.mov").write_bytes(b"bb")
    (tmp_path / "in" / "c.txt").write_bytes(b"c")
    for root in (str(tmp_path / "in"), f"file://{tmp_path / 'in'}"):
        videos = storage.list_videos(root)
        assert [v.relative for v in videos] == ["a.mp4", "sub/b.mov"]
        assert videos[0].fingerprint is None
    fp, size = storage.video_fingerprint(videos[1])
    st = os.stat(tmp_path / "in" / "sub" / "b.mov")
    assert (fp, size) == (f"size=2;mtime_ns={st.st_mtime_ns}", 2)
    assert storage.join(str(tmp_path), "o", "x.mp4") == str(tmp_path / "o" / "x.mp4")
    assert storage.join("s3://b/out/", "a/b.mp4") == "s3://b/out/a/b.mp4"
    assert storage.parent("s3://b/out/a.mp4") == "s3://b/out"
    scratch = tmp_path / "scratch.mp4"
    scratch.write_bytes(b"final")
    assert storage.upload(str(scratch), str(tmp_path / "out" / "v.mp4")) == 5
    assert (tmp_path / "out" / "v.mp4").read_bytes() == b"final" and not scratch.exists()
    with storage.local_input(str(tmp_path / "in" / "a.mp4")) as path:
        assert path == str(tmp_path / "in" / "a.mp4")
    assert storage.is_local(storage.resolve(str(tmp_path))[0])


def test_input_cache_is_bounded_and_keeps_held_copies(tmp_path):
    import fsspec

    mem = fsspec.filesystem("memory")
    for name in ("a", "b", "c"):
        mem.pipe_file(f"/cachetest/{name}.mp4", name.encode() * 100)
    cache = storage.InputCache(str(tmp_path / "cache"), max_bytes=250)

    def held() -> int:
        return len([p for p in os.listdir(tmp_path / "cache")
                    if not p.endswith(".lock")])

    with cache.local_copy("memory://cachetest/a.mp4") as a:
        assert Path(a).read_bytes() == b"a" * 100
        with cache.local_copy("memory://cachetest/b.mp4") as b, \
                cache.local_copy("memory://cachetest/c.mp4") as c:
            assert os.path.exists(a) and os.path.exists(b) and os.path.exists(c)  # all held
            assert held() == 3
        assert os.path.exists(a)
    assert held() <= 2
    # a changed object is fetched again, never served stale
    mem.pipe_file("/cachetest/a.mp4", b"A" * 120)
    with cache.local_copy("memory://cachetest/a.mp4") as a2:
        assert Path(a2).read_bytes() == b"A" * 120
    cache.clear()
    assert held() == 0


def test_one_retry_layer_per_store():
    from nhance_batch.storage.retry import policy_for

    fs, _ = storage.resolve("s3://bucket/key", {"anon": True})
    assert fs.retries == 1 and fs.config_kwargs["retries"]["max_attempts"] == 1
    mine = {"anon": True, "config_kwargs": {"retries": {"max_attempts": 4}}}
    fs, _ = storage.resolve("s3://bucket/key", mine)
    assert fs.config_kwargs["retries"]["max_attempts"] == 4  # a user's choice is kept
    assert policy_for("gs://b/x").attempts == 1 and policy_for("az://c/x").attempts == 1
    assert policy_for("s3://b/x").attempts > 1 and policy_for("/local/x").attempts > 1
