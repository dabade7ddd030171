"""The batch pipeline: stages (no Ray), executors that run them, and the driver."""
