"""Where the project's own files are: the checkout (or editable install) and the shipped configs.

``resolve_config_path("configs/train/cpu.yaml")`` finds a config file from any folder: the path as
given first, then inside the project (``configs/`` beside the ``nas`` package), then in
``nas/_configs/`` (where a built wheel ships ``configs/``).
"""
from __future__ import annotations

from pathlib import Path
from typing import List


def project_root() -> Path:
    """The folder holding the ``nas`` package (a checkout or an editable install)."""
    import nas

    return Path(nas.__file__).resolve().parent.parent


def resolve_config_path(path: str) -> Path:
    """Find a config file: ``path`` as given (absolute, or relative to the current folder);
    for a relative path that does not exist there, also relative to the project folder (where
    ``configs/`` sits next to the ``nas`` package, so ``configs/train/cpu.yaml`` works from any
    folder of a checkout), then in ``nas/_configs/`` (where a built wheel ships ``configs/``),
    with or without the leading ``configs/``. Raises ``FileNotFoundError`` listing every place
    looked at."""
    given = Path(path)
    tried: List[Path] = [given]
    if not given.is_absolute():
        root = project_root()
        parts = given.parts
        inner = Path(*parts[1:]) if len(parts) > 1 and parts[0] == "configs" else given
        tried += [root / given, root / "configs" / inner, root / "nas" / "_configs" / inner]
    seen: List[Path] = []
    for candidate in tried:
        if candidate not in seen:
            seen.append(candidate)
    for candidate in seen:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config file {str(path)!r} not found; looked at: "
                            f"{', '.join(str(c) for c in seen)}")
