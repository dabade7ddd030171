"""nhance-batch: enhance every frame of every video with the DPED photo enhancer."""

__version__ = "0.1.0"
