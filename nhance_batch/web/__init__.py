"""The web interface of ``nhance-batch serve``: an ASGI app (FastAPI) over the same library the
CLI uses.

* :mod:`.settings`: the server's and a job's typed settings (pydantic), built once at the edge.
* :mod:`.store`: jobs on disk (``DATA/jobs/<id>/``: job.json, input/, output/) and their
  documents (``status`` is the ``status --json`` document of the job's OUTPUT).
* :mod:`.runner`: the queue: one job at a time in a background thread, through ``run_job``;
  cancel, resume, and recovery of queued/running jobs after a restart.
* :mod:`.uploads`: multipart uploads streamed to disk, with a byte limit and safe names.
* :mod:`.auth`: the token (bearer header or HttpOnly SameSite=Strict cookie), 401 elsewhere.
* :mod:`.media`: which file answers a media route (inside the data folder only), comparisons,
  previews and stills rendered on first request, and the flicker plot's gains, through
  :mod:`nhance_batch.analysis`.
* :mod:`.inputs`: the ``--allow-input`` check of server-side inputs; an upload job's input.
* :mod:`.services`: the services above, built once per app and given to routes as FastAPI
  dependencies.
* :mod:`.routes`: one router per concern: jobs, events, media, pages.
* :mod:`.app`: ``create_app``, the factory: services, routers, error statuses and the token;
  templates and static assets ship in this package.
"""
