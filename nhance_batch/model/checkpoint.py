"""Read TensorFlow 1 checkpoints (tensor bundles) into numpy, without TensorFlow.

A bundle is ``PREFIX.index`` (a LevelDB-style sorted table mapping each variable name to a
``BundleEntryProto``: dtype, shape, shard, offset, size, crc32c) plus ``PREFIX.data-0000N-of-0000M``
(the raw little-endian tensor bytes). Reading it with numpy alone lets the model load on any Keras
backend (JAX on a GPU machine without TensorFlow) and keeps TensorFlow out of the driver.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
# tensorflow/core/framework/types.proto DataType -> numpy dtype (the ones a checkpoint may hold)
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 14: np.uint16, 17: np.uint16, 19: np.float16}


class CheckpointError(ValueError):
    """The checkpoint files are missing, truncated or not a TensorFlow tensor bundle."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode one protobuf message into (field number, value) pairs (varint, bytes or fixed)."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def _block_entries(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one uncompressed table block."""
    if offset + size + 5 > len(table):
        raise CheckpointError("block runs past the end of the index file")
    if table[offset + size] != 0:
        raise CheckpointError("compressed index blocks are not supported")
    block = table[offset:offset + size]
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, dim in _proto_fields(buf):
        if number == 2:
            sizes = [v for n, v in _proto_fields(dim) if n == 1]
            dims.append(int(sizes[0]) if sizes else 0)
    return tuple(dims)


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every variable of the TF1 checkpoint at ``prefix`` (``.../iphone_orig``), as numpy arrays.

    Raises:
        CheckpointError: a file is missing or does not parse as a tensor bundle.
    """
    prefix = Path(prefix)
    index_path = prefix.with_name(prefix.name + ".index")
    try:
        table = index_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint index {index_path}: {exc.strerror}") from exc
    if len(table) < _FOOTER_LEN or struct.unpack_from("<Q", table, len(table) - 8)[0] != _MAGIC:
        raise CheckpointError(f"{index_path} is not a TensorFlow checkpoint index")
    footer = table[-_FOOTER_LEN:]
    _, pos = _varint(footer, 0)
    _, pos = _varint(footer, pos)  # metaindex handle, unused
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)

    num_shards = 1
    entries: dict[str, dict[int, int | bytes]] = {}
    for _, handle in _block_entries(table, index_offset, index_size):
        block_offset, hpos = _varint(handle, 0)
        block_size, _ = _varint(handle, hpos)
        for key, value in _block_entries(table, block_offset, block_size):
            fields = dict(_proto_fields(value))
            if key == b"":  # BundleHeaderProto: num_shards = 1
                num_shards = int(fields.get(1, 1))
            else:
                entries[key.decode()] = fields

    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name, fields in sorted(entries.items()):
        shard = int(fields.get(3, 0))
        if shard not in shards:
            data_path = prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")
            try:
                shards[shard] = data_path.read_bytes()
            except OSError as exc:
                raise CheckpointError(f"cannot read checkpoint data {data_path}: {exc.strerror}") from exc
        dtype_code = int(fields.get(1, 0))
        if dtype_code not in _DTYPES:
            raise CheckpointError(f"variable {name}: unsupported dtype code {dtype_code}")
        offset, size = int(fields.get(4, 0)), int(fields.get(5, 0))
        data = shards[shard]
        if offset + size > len(data):
            raise CheckpointError(f"variable {name} runs past the end of its data file")
        shape = _shape(fields[2]) if 2 in fields else ()
        array = np.frombuffer(data, dtype=np.dtype(_DTYPES[dtype_code]).newbyteorder("<"),
                              count=size // np.dtype(_DTYPES[dtype_code]).itemsize, offset=offset)
        out[name] = array.reshape(shape).copy()
    return out
