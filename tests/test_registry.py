"""Model registry: resolution order, checksums, downloads and the errors a user sees."""

import functools
import http.server
import shutil
import threading

import pytest

from nhance_batch.model import registry
from nhance_batch.model.registry import ModelError, ModelSpec, resolve
from nhance_batch.storage import ENV_CACHE


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No NHANCE_MODELS, and an empty cache of our own."""
    monkeypatch.delenv(registry.ENV_MODELS, raising=False)
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


@pytest.fixture
def server(models_dir, tmp_path):
    """A local HTTP server over a copy of the model folder; yields (url_prefix, folder)."""
    folder = tmp_path / "served"
    shutil.copytree(models_dir, folder)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    httpd.shutdown()


def spec_at(url_prefix: str) -> ModelSpec:
    real = registry.get_spec("iphone")
    return ModelSpec("iphone", real.description, real.checkpoint, url_prefix, real.files)


def test_registry_lists_the_three_models():
    default, specs = registry.load_registry()
    assert default == "iphone"
    assert set(specs) == {"iphone", "blackberry", "sony"}
    for spec in specs.values():
        assert len(spec.files) == 2 and all(len(sha) == 64 for _, sha in spec.files)
        assert spec.url_prefix.startswith("https://")


def test_env_folder_resolves_and_verifies(models_dir):
    found = resolve("sony")
    assert found.source == "env"
    assert found.prefix.resolve() == (models_dir / "sony_orig").resolve()


def test_explicit_path_wins(models_dir, tmp_path):
    assert resolve("iphone", models_dir / "blackberry_orig").prefix == models_dir / "blackberry_orig"
    shutil.copy(models_dir / "sony_orig.index", tmp_path / "sony_orig.index")
    assert resolve(path=tmp_path).prefix == tmp_path / "sony_orig"
    with pytest.raises(ModelError, match="no checkpoint"):
        resolve(path=tmp_path / "absent_orig")


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'pixel'.*blackberry, iphone, sony"):
        resolve("pixel")


def test_bad_checksum_in_env_folder(models_dir, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    shutil.copytree(models_dir, folder)
    data = folder / "iphone_orig.data-00000-of-00001"
    data.chmod(0o644)
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    monkeypatch.setenv(registry.ENV_MODELS, str(folder))
    with pytest.raises(ModelError, match=r"has sha256 .* expected 9d289d09.*NHANCE_MODELS"):
        resolve("iphone")


def test_missing_file_in_env_folder(models_dir, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(models_dir / "iphone_orig.index", folder)
    monkeypatch.setenv(registry.ENV_MODELS, str(folder))
    with pytest.raises(ModelError, match="lacks iphone_orig.data-00000-of-00001.*NHANCE_MODELS"):
        resolve("iphone")


def test_no_network_is_a_clear_error(no_env):
    closed = spec_at("http://127.0.0.1:9/")  # discard port: nothing listens
    with pytest.raises(ModelError, match=r"downloading http://127\.0\.0\.1:9/iphone_orig.*"
                                         r"set NHANCE_MODELS"):
        resolve("iphone", spec=closed)
    assert not any(no_env.glob("*")) if no_env.exists() else True
    with pytest.raises(ModelError, match="nor in the cache"):
        resolve("iphone", download=False)


def test_download_into_cache_then_cache_hit(no_env, server):
    url, _ = server
    found = resolve("iphone", spec=spec_at(url))
    assert found.source == "download" and found.prefix == no_env / "iphone_orig"
    assert sorted(p.name for p in no_env.iterdir()) == ["iphone_orig.data-00000-of-00001",
                                                       "iphone_orig.index"]
    assert resolve("iphone", spec=spec_at("http://127.0.0.1:9/")).source == "cache"


def test_download_with_wrong_checksum_keeps_nothing(no_env, server):
    url, folder = server
    (folder / "iphone_orig.index").chmod(0o644)
    (folder / "iphone_orig.index").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="download of .*iphone_orig.index has sha256"):
        resolve("iphone", spec=spec_at(url))
    # the verified data file may stay; the bad index and any temporary file may not
    assert [p.name for p in no_env.iterdir()] == ["iphone_orig.data-00000-of-00001"]
