"""Is a model argument a folder here or a hub id we can fetch? Said in seconds, in one sentence.

Every model option (``--model``, ``--detector``, ``--depth``, ``--normal marigold:...``,
``--labels depth:...``) takes a local folder or a Hugging Face hub id. Left to the loaders, a
mistyped folder is answered with the hub's repo-id rules, and an id that cannot be reached
offline with about 50 seconds of retries and a long traceback. :func:`check_model_source` decides
first: an existing path is local; something written as a path that does not exist is a missing
folder; an id must be in the local cache or the hub must answer a connection within seconds.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

#: How long the hub gets to accept a connection before an id that is not cached is refused.
HUB_CONNECT_SECONDS = 3.0
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")


def _hub_host() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _cached(repo_id: str) -> bool:
    """Whether some revision of ``repo_id`` is in the local Hugging Face cache."""
    try:
        from huggingface_hub import scan_cache_dir

        return any(repo.repo_id == repo_id for repo in scan_cache_dir().repos)
    except Exception:  # no cache folder yet, or one we cannot read
        return False


def check_model_source(name: str, flag: str) -> str:
    """``name`` as given when it is a folder here or a reachable (or cached) hub id; else a ValueError.

    ``flag`` names the option in the message (``--depth``), so the user knows which one to fix.
    """
    text = str(name)
    if Path(text).expanduser().exists():
        return text
    if text.startswith(_PATH_PREFIXES) or text.count("/") > 1 or not text:
        raise ValueError(f"{flag} {text!r}: no such folder; give a model folder or a hub id such as 'org/model'")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        raise ValueError(f"{flag} {text!r} is neither a folder here nor a hub id ('org/model')") from None
    if _cached(text):
        return text
    fetch = f"download it where the hub is reachable (`hf download {text}`) and pass the folder"
    if _offline():
        raise ValueError(f"{flag} {text!r} is not a folder here nor in the hub cache (HF_HUB_OFFLINE is set); {fetch}")
    host, port = _hub_host()
    try:
        socket.create_connection((host, port), timeout=HUB_CONNECT_SECONDS).close()
    except OSError as error:
        raise ValueError(
            f"{flag} {text!r} is not a folder here nor in the hub cache, and the hub ({host}) cannot be reached "
            f"({error.strerror or error}); {fetch}"
        ) from None
    return text
