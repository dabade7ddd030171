"""Write a TensorFlow 1 checkpoint (tensor bundle) with numpy alone: ``PREFIX.index`` (a
LevelDB-format sorted table of ``BundleEntryProto`` per variable, with block checksums) and
``PREFIX.data-00000-of-00001`` (the raw little-endian tensors). TensorFlow's own
``tf.train.load_checkpoint`` and :func:`nhance_batch.model.checkpoint.read_checkpoint` read it.
"""

from __future__ import annotations

import struct
from typing import Mapping

import numpy as np

_MAGIC = 0xDB4775248B80FB57
_DTYPE_CODES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3,
                np.dtype(np.int64): 9}
_CRC_MASK_DELTA = 0xA282EAD8


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return google_crc32c.value(data)


def _masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(value)) + value


def _field_fixed32(number: int, value: int) -> bytes:
    return _varint((number << 3) | 5) + struct.pack("<I", value)


def _shape_proto(shape: tuple[int, ...]) -> bytes:
    return b"".join(_field_bytes(2, _field_varint(1, d) if d else b"") for d in shape)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """One table block, every entry a restart point (no key prefix sharing)."""
    body, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(body))
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    if not restarts:
        restarts = [0]
    for r in restarts:
        body += struct.pack("<I", r)
    body += struct.pack("<I", len(restarts))
    return bytes(body)


def _append_block(out: bytearray, block: bytes) -> bytes:
    """Append ``block`` with its trailer (type 0 = uncompressed, masked crc); its handle."""
    handle = _varint(len(out)) + _varint(len(block))
    out += block + b"\0" + struct.pack("<I", _masked_crc(block + b"\0"))
    return handle


def checkpoint_bytes(variables: Mapping[str, np.ndarray]) -> tuple[bytes, bytes]:
    """(index bytes, data bytes) of a single-shard checkpoint holding ``variables``."""
    data = bytearray()
    entries: list[tuple[bytes, bytes]] = []
    # BundleHeaderProto: num_shards 1, endianness LITTLE (0, the default), version {producer 1}
    entries.append((b"", _field_varint(1, 1) + _field_bytes(3, _field_varint(1, 1))))
    for name in sorted(variables, key=lambda n: n.encode()):
        array = np.ascontiguousarray(variables[name])
        if array.dtype not in _DTYPE_CODES:
            raise ValueError(f"{name}: cannot write dtype {array.dtype}")
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        proto = (_field_varint(1, _DTYPE_CODES[array.dtype])
                 + _field_bytes(2, _shape_proto(array.shape))
                 + _field_varint(4, len(data)) + _field_varint(5, len(raw))
                 + _field_fixed32(6, _masked_crc(raw)))
        entries.append((name.encode(), proto))
        data += raw
    index = bytearray()
    data_handle = _append_block(index, _block(entries))
    meta_handle = _append_block(index, _block([]))
    index_handle = _append_block(index, _block([(entries[-1][0], data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", _MAGIC)
    index += footer
    return bytes(index), bytes(data)


def data_file_name(prefix_name: str) -> str:
    return f"{prefix_name}.data-00000-of-00001"


def index_file_name(prefix_name: str) -> str:
    return f"{prefix_name}.index"
