"""Storage: every place a job names (INPUT, OUTPUT, ``--manifest``) is a local path or an
fsspec URL (``file://``, ``s3://``, ``gs://``, ``az://`` / ``abfs://``); this package is the only
code that talks to a store. One module per concern:

* :mod:`~nhance_batch.storage.urls`: protocols, ``--storage-options`` (flat or keyed by
  protocol), URL -> ``(fs, path)``, joining;
* :mod:`~nhance_batch.storage.retry`: transient vs permanent errors, backoff with jitter;
* :mod:`~nhance_batch.storage.listing`: inputs (file, folder, glob, bucket prefix) and their
  fingerprints;
* :mod:`~nhance_batch.storage.objects`: whole-object reads and writes, never half-written (the
  one atomic write: :func:`write_bytes`, :func:`atomic_local_file`);
* :mod:`~nhance_batch.storage.cache`: the bounded local cache of input objects;
* :mod:`~nhance_batch.storage.conditional`: conditional create / replace / delete of one small
  object where the store enforces it (the lease);
* :mod:`~nhance_batch.storage.redact`: credentials out of every text that is shown or stored.

The names below are the package's interface.
"""

from nhance_batch.storage.cache import (DEFAULT_INPUT_CACHE_BYTES, ENV_CACHE,
                                        ENV_INPUT_CACHE_BYTES, InputCache, default_cache_dir,
                                        local_input, user_cache_dir)
from nhance_batch.storage.errors import StorageError
from nhance_batch.storage.listing import (VIDEO_EXTENSIONS, StoredVideo, fingerprint,
                                          is_video_name, list_local, list_videos,
                                          video_fingerprint)
from nhance_batch.storage.objects import (atomic_local_file, commit_local, download, exists,
                                          makedirs_for, read_bytes, remove, size, temp_name,
                                          upload, write_bytes)
from nhance_batch.storage.redact import (RedactingFilter, install_log_redaction, redact,
                                         redacted_options, secret_values)
from nhance_batch.storage.retry import DEFAULT_RETRY, RetryPolicy, is_transient, with_retries
from nhance_batch.storage.urls import (EXTRAS, is_local, is_local_url, join, local_path,
                                       options_for, parent, parse_storage_options, protocol_of,
                                       resolve)

__all__ = [
    "DEFAULT_INPUT_CACHE_BYTES", "DEFAULT_RETRY", "ENV_CACHE", "ENV_INPUT_CACHE_BYTES", "EXTRAS",
    "VIDEO_EXTENSIONS", "InputCache", "RedactingFilter", "RetryPolicy", "StorageError",
    "StoredVideo", "atomic_local_file", "commit_local", "default_cache_dir", "download",
    "exists", "fingerprint", "install_log_redaction", "is_local", "is_local_url",
    "is_transient", "is_video_name", "join", "list_local", "list_videos", "local_input",
    "local_path", "makedirs_for", "options_for", "parent", "parse_storage_options",
    "protocol_of", "read_bytes", "redact", "redacted_options", "remove", "resolve",
    "secret_values", "size", "temp_name", "upload", "video_fingerprint", "with_retries",
    "user_cache_dir", "write_bytes",
]
