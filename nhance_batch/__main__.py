"""``python -m nhance_batch`` is the ``nhance-batch`` command."""

from nhance_batch.cli import main

main()
