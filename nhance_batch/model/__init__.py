"""The enhancer model: the DPED generator in Keras ops (``dped``), its TF1 checkpoint reader
(``checkpoint``), the model registry (``registry``), the Keras backend choice (``backend``), the
enhancement stage (``enhancer``), its measured fastest path (``autotune``) and its speed against
the machine's matmul rate (``speed``)."""
