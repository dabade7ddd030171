"""See the difference: comparison videos, browser previews, stills, quality metrics, plots and
the job report.

One module per concern; PyAV, Pillow and matplotlib are imported inside the functions, so
importing this package is cheap:

* :mod:`.frames`: upright RGB frames of a video, streamed (display matrix applied to pixels).
* :mod:`.browser`: an H.264 yuv420p MP4 writer with faststart that copies another file's audio.
* :mod:`.overlay`: labels and the divider drawn on comparison frames.
* :mod:`.compare`: split, swipe and side-by-side comparison videos, for a pair or a whole job.
* :mod:`.preview`: browser-playable previews of outputs (FFV1, 10-bit, 4:4:4 do not play).
* :mod:`.stills`: the frame shown at a time, as an array, PNG or JPEG.
* :mod:`.gains`: per-frame colour gains before and after stabilisation, as plot series.
* :mod:`.metrics`: luminance, contrast, colourfulness, noise, sharpness, clipping, on sampled
  frames before and after.
* :mod:`.plots`: the report's matplotlib figures as PNG bytes.
* :mod:`.report`: the job report, a self-contained HTML page with its pictures beside it.
* :mod:`.jobfiles`: a finished job's manifest and files, read and published through storage.
"""
