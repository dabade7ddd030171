"""Media layer: probe, plan, decode, encode and assemble videos with PyAV.

PyAV is imported inside the functions only, so importing this package is cheap.
"""

from nhance_batch.media.assemble import OutputPlan, assemble, output_container, plan_output
from nhance_batch.media.decode import Frames, decode_all, decode_chunk
from nhance_batch.media.encode import encode_part, encoder_settings
from nhance_batch.media.errors import MediaError
from nhance_batch.media.chunks import Chunk, PtsWindow, chunk_info, plan_chunks
from nhance_batch.media.probe import ColorInfo, StreamInfo, VideoInfo, probe

__all__ = [
    "Chunk",
    "PtsWindow",
    "chunk_info",
    "ColorInfo",
    "Frames",
    "MediaError",
    "StreamInfo",
    "VideoInfo",
    "assemble",
    "decode_all",
    "decode_chunk",
    "encode_part",
    "encoder_settings",
    "output_container",
    "OutputPlan",
    "plan_output",
    "plan_chunks",
    "probe",
]
