"""tinypipe: folder of images -> measured int8 model running on a microcontroller."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter is noise for CLI users; real errors still surface as exceptions.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
