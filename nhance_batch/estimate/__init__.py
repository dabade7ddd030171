"""Plans a job before it runs: probe the inputs, count the work, estimate output size (from the
job's encoder on samples of its own frames) and time, start-up included (here, from a cached
calibration; on GPUs, from the package's table of measured rates).

* :mod:`nhance_batch.estimate.estimate`: :func:`plan_job` -> :class:`JobPlan` (what ``nhance-batch
  plan`` and ``run --dry-run`` print);
* :mod:`nhance_batch.estimate.calibration`: this machine's stage rates, measured once per machine,
  model and encoder setting, cached in the user cache;
* :mod:`nhance_batch.estimate.timing`: the time model (start-up, chunks over workers);
* :mod:`nhance_batch.estimate.sizing`: output bytes from a sample of a video's frames.

The measured GPU rates (``gpu_rates.toml``) and the enhancer rate known before a run live in
:mod:`nhance_batch.rates`, below the pipeline, which sizes chunks with them.

Importing this package is cheap: the heavy imports happen inside the functions.
"""

from nhance_batch.estimate.estimate import JobPlan, VideoPlan, plan_job

__all__ = ["JobPlan", "VideoPlan", "plan_job"]
