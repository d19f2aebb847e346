"""Service configuration files, rendered from the templates in ``etc/``."""

from __future__ import annotations

import string
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "etc"


def render(template: str, target: Path, **values: object) -> Path:
    """Write ``etc/<template>`` to ``target`` with every ``${name}`` replaced.

    A placeholder without a value is an error rather than a silently broken setting.
    """
    text = string.Template((TEMPLATES / template).read_text())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.substitute({key: str(value) for key, value in values.items()}))
    return target
