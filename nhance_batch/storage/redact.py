"""Credential redaction: secrets of the storage options and the environment, and well-known
URL / connection-string fields, removed from any text before it is logged, stored or printed."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

_SECRET_KEY = re.compile(
    r"(^|_)(key|secret|token|password|passwd|pwd|credential|credentials|sas|sig|signature|"
    r"connection_string|account_key|private_key|session_token|client_secret|refresh_token|"
    r"access_token|auth|authorization)($|_)", re.I)
_NOT_SECRET_KEY = re.compile(r"^(key_id|private_key_id|token_uri|auth_uri|auth_provider_"
                             r"x509_cert_url|client_x509_cert_url)$", re.I)
_SECRET_FIELDS = frozenset({"accountkey", "sharedaccesssignature", "sharedaccesskey", "sig",
                            "signature", "password", "pwd", "secret", "token"})
_SECRET_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)
_PATTERNS = (
    (re.compile(r"(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;\s'\"]+", re.I),
     r"\1=***"),
    (re.compile(r"((?:[?&]|\b)(?:sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|"
                r"X-Goog-Signature|X-Goog-Credential|access_token)=)[^&\s'\"]+", re.I), r"\1***"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.I), r"\1***@"),
    (re.compile(r"(Authorization:\s*\w+\s+)\S+", re.I), r"\1***"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                re.S), "***"),
)


def _collect(value: Any, secret: bool, out: set[str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = str(k)
            is_secret = secret or (bool(_SECRET_KEY.search(key))
                                   and not _NOT_SECRET_KEY.match(key))
            _collect(v, is_secret, out)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            _collect(v, secret, out)
    elif isinstance(value, (str, bytes)) and secret:
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if len(text) >= 4 and text.lower() not in ("anon", "none", "true", "false",
                                                   "google_default", "cloud", "cache"):
            out.add(text)
            for part in re.split(r"[;&\s]", text):  # connection strings: secret fields too
                name, eq, val = part.partition("=")
                if eq and len(val) >= 4 and name.strip().lower() in _SECRET_FIELDS:
                    out.add(val)


def secret_values(storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Every credential string in ``storage_options`` (by key name, recursively; a secret
    dict such as a service-account ``token`` counts whole) and in the usual environment
    variables, longest first."""
    found: set[str] = set()
    _collect(storage_options or {}, False, found)
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            _collect({name: value}, True, found)
    return sorted(found, key=len, reverse=True)


def redact(text: Any, storage_options: Mapping[str, Any] | None = None) -> str:
    """``text`` with every credential replaced by ``***``: the secret values of
    ``storage_options`` and the environment, plus account keys, SAS/presigned-URL
    signatures, URL passwords and private keys wherever they appear."""
    out = str(text)
    for secret in secret_values(storage_options):
        out = out.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def redacted_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``storage_options`` safe to print or record: secret values are ``***``."""
    def walk(value: Any, secret: bool) -> Any:
        if isinstance(value, Mapping):
            return {k: walk(v, secret or (bool(_SECRET_KEY.search(str(k)))
                                          and not _NOT_SECRET_KEY.match(str(k))))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, secret) for v in value]
        if secret and isinstance(value, (str, bytes)):
            return "***"
        if isinstance(value, str):
            return redact(value, storage_options)
        return value
    return walk(dict(storage_options or {}), False)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts credentials from each record's message (and drops
    its args, already merged into the message). Attach it to handlers."""

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.storage_options = dict(storage_options or {})

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logged as it is
            return True
        record.msg, record.args = redact(message, self.storage_options), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.storage_options)
        return True


def install_log_redaction(storage_options: Mapping[str, Any] | None = None,
                          logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to every handler of ``logger`` (default: root) and
    to the logger itself; returns the filter (remove it with ``removeFilter``)."""
    target = logger or logging.getLogger()
    flt = RedactingFilter(storage_options)
    target.addFilter(flt)
    for handler in target.handlers:
        handler.addFilter(flt)
    return flt
