"""Small file helpers shared by every package above ``ops``: atomic writes and YAML files.

``atomic_write(path, data)``: the bytes or text go to a temporary file in the same folder
(``.<name>.<pid>.<random>.tmp``), are flushed (and ``fsync``-ed with ``durable=True``), and
``os.replace`` moves the file over ``path``. A reader, or an interruption at any moment, sees the
old complete file or the new complete file, never a partial one; the temporary file is removed
when writing fails. ``data`` may be ``str`` (UTF-8), ``bytes``, or a callable ``write(fh)`` that
writes into the binary file handle (``torch.save``, ``np.save``).

``read_yaml(path, what)``: the parsed YAML of a file; a missing file raises
``FileNotFoundError`` and invalid YAML ``ValueError``, both naming ``what`` and the file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

Data = Union[str, bytes, Callable[[Any], None]]


def atomic_write(path: Union[str, os.PathLike], data: Data, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (module docstring); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, str):
                fh.write(data.encode("utf-8"))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                data(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_yaml(path: Union[str, os.PathLike], what: str = "file") -> Any:
    """The parsed YAML of ``path`` (``None`` for an empty file); errors name ``what`` and the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file {str(path)!r} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{what}: {str(path)!r} is not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: {str(path)!r} is not a text file: {exc}") from None
