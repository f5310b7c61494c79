"""The control API's bearer token: where it comes from, how it is stored, how it is checked."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

__all__ = ["TOKEN_FILE", "TokenError", "bearer_matches", "load_or_create_token", "read_token_file"]

TOKEN_FILE = "control.token"  # noqa: S105 - a file name, not a secret
_PRIVATE = 0o600


class TokenError(OSError):
    """The token file cannot be read or written."""


def read_token_file(data_dir: Path) -> str | None:
    """The token in ``data_dir/control.token``, or None if there is none."""
    path = data_dir / TOKEN_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenError(f"cannot read {path}: {exc.strerror or exc}") from None
    return text or None


def load_or_create_token(data_dir: Path) -> tuple[str, bool]:
    """The data directory's token, generated on first use; (token, created).

    The file is created with mode 0600 in one step (never world-readable, not even briefly),
    and an existing file readable by others is tightened back to 0600.
    """
    path = data_dir / TOKEN_FILE
    existing = read_token_file(data_dir)
    if existing is not None:
        try:
            if path.stat().st_mode & 0o077:
                path.chmod(_PRIVATE)
        except OSError as exc:
            raise TokenError(f"cannot restrict {path} to its owner: {exc.strerror}") from None
        return existing, False
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TokenError(f"cannot write {path}: {exc.strerror or exc}") from None
    return token, True


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest on bytes: its time does not depend on where the first difference is.
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))
