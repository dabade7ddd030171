"""The YUV <-> RGB conversion parameters shared by decoding and encoding.

Decoding and encoding must use the same matrix and range, or an identity
enhancer would shift colours. Both follow the source's tags: its matrix
(BT.601 when unset, swscale's default) and its range (limited unless tagged full).
"""

from __future__ import annotations

from nhance_batch.media.probe import ColorInfo

# AVColorSpace -> swscale colourspace (SWS_CS_*). Unknown or unset: swscale's default (BT.601).
_SWS_COLORSPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
_SWS_DEFAULT = 5
_JPEG_RANGE = 2


def sws_colorspace(color: ColorInfo) -> int:
    """The swscale colourspace matching the source's matrix tag."""
    return _SWS_COLORSPACE.get(color.matrix if color.matrix is not None else -1, _SWS_DEFAULT)


def sws_range(color: ColorInfo) -> str:
    """``"JPEG"`` (full) when the source is tagged full range, else ``"MPEG"`` (limited)."""
    return "JPEG" if color.range == _JPEG_RANGE else "MPEG"


def rgb_format(high_bit_depth: bool) -> str:
    """The RGB pixel format frames are handed over in."""
    return "rgb48le" if high_bit_depth else "rgb24"


class Converter:
    """Pixel-format conversion of one stream's frames through a single swscale context.

    ``VideoFrame.reformat`` and ``to_ndarray(format=...)`` build a new swscale context for every
    frame, with automatic slice threads (it starts threads per call): at 64x48 that costs about
    0.9 ms of CPU and 4 ms of wall time a frame, against 0.03 ms here. One
    :class:`av.video.reformatter.VideoReformatter`, kept for the whole stream, caches its
    context; one thread (PyAV 17 and later thread it by default), because the pipeline runs
    decode and encode tasks side by side on every core already.
    """

    def __init__(self, **params) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()
        if int(av.__version__.split(".")[0]) >= 17:  # before 17: no threads argument, no threads
            params["threads"] = 1
        self._params = params

    def __call__(self, frame):
        """``frame`` converted (the same frame when nothing needs doing)."""
        return self._reformatter.reformat(frame, **self._params)
