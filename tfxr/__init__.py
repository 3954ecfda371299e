"""tfxr: distributed chest X-ray training."""
import os as _os

# TensorFlow's C++ info lines (oneDNN, CPU features) drown the progress output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
__version__ = "0.1.0"
