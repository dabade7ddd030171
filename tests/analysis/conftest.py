"""The S3 emulator of the storage tests, for the analysis commands on a bucket."""

from tests.storage.conftest import emulator_dir, s3_server  # noqa: F401 - fixtures
