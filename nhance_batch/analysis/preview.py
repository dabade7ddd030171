"""Browser-playable previews of enhanced videos.

Outputs written with ``--lossless`` (FFV1), from 10-bit sources or at odd sizes (4:4:4) do
not play in browsers. A preview is the same video as H.264 yuv420p in MP4 with faststart:
every frame with its own timestamp (variable frame rates kept), upright (the display matrix
applied to the pixels), with square pixels (a sample aspect ratio resampled), odd sizes padded by one row or column, and the audio packets copied.
"""

from __future__ import annotations

import os

from nhance_batch.analysis.browser import BrowserEncoding


def render_preview(video: str, out: str, *, audio_from: str | None = None,
                   encoding: BrowserEncoding | None = None) -> None:
    """Write the preview of the local file ``video`` to ``out``.

    Args:
        video: the video to preview (any format the media layer opens).
        out: the MP4 to write (appears only complete).
        audio_from: the file whose audio is copied (default: ``video`` itself).
        encoding: x264 settings.

    Raises:
        MediaError: a file cannot be read or written.
    """
    from nhance_batch.analysis.browser import nominal_rate, open_browser_video
    from nhance_batch.analysis.frames import display_size, iter_frames
    from nhance_batch.media.probe import probe

    info = probe(video)
    width, height = display_size(info, info.sample_aspect_ratio)
    with open_browser_video(out, width=width, height=height, time_base=info.time_base,
                            rate=nominal_rate(info.average_rate, info.pts, info.time_base),
                            audio_from=os.fspath(audio_from or video), color=info.color,
                            encoding=encoding) as writer:
        for _, pts, frame in iter_frames(video, info, pixel_shape=info.sample_aspect_ratio):
            writer.write(frame, pts)
