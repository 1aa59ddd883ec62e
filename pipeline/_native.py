"""Keep TensorFlow's native start-up and converter chatter off the user's terminal."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings


@contextlib.contextmanager
def quiet_native():
    """Silence the converter's C++/print chatter (fd 1 and 2); keep it if conversion fails."""
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if not ok and os.environ.get("TINYPIPE_DEBUG"):
                sink.seek(0)
                os.write(2, sink.read()[-4000:])


def import_tensorflow_quietly() -> None:
    """Import TensorFlow once with fd 2 silenced (absl prints banners before any log config)."""
    with quiet_native():
        import tensorflow  # noqa: F401
