"""One-line rendering of exceptions for user-facing messages (some carry multi-line text)."""

from __future__ import annotations


def brief(exc: BaseException, limit: int = 200) -> str:
    """``"TypeName: message"`` on one line, whitespace collapsed and cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
