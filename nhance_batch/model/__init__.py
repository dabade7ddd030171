"""The enhancer model: the DPED generator (``dped``), its TF1 checkpoint reader
(``checkpoint``), the model registry (``registry``) and the enhancement stage (``enhancer``)."""
