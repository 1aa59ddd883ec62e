"""tinypipe: folder of images -> measured int8 model running on a microcontroller."""

__version__ = "0.1.0"
