"""Checkpoint -> verified ONNX (and TensorRT) bundle, the runtime's only input."""
EXIT_TRT_UNAVAILABLE = 3
EXIT_BAD_CHECKPOINT = 4
EXIT_UNWRITABLE = 5
EXIT_PARITY = 6
EXIT_BAD_CALIBRATION = 7
