"""Job state: the Parquet manifest (``manifest``), the one-driver lease (``lease``), the layout
of ``OUTPUT/_nhance`` (``layout``) and the status summary."""
