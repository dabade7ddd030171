"""The routes of ``nhance-batch serve``, one router per concern; each route takes the services
it uses as dependencies (:mod:`nhance_batch.web.services`).

* :mod:`.jobs`: the JSON API of jobs: create (upload or server-side input), list, read,
  cancel, resume, delete.
* :mod:`.events`: a job's documents as server-sent events.
* :mod:`.media`: a video's files, comparisons, previews and stills.
* :mod:`.pages`: the three HTML pages.
"""
