"""Single files from the Hugging Face hub: the local cache first, one clear sentence when offline.

"Offline" is HF_HUB_OFFLINE, or a hub whose host name does not resolve (no network, and no proxy
configured): then nothing is requested, so the hub library's retries (a dozen lines and half a
minute) never start.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from dicecli.errors import UsageError


def hub_file(repo_id: str, filename: str) -> str:
    """Fetch one file of a hub repo, from the local cache first; offline gets one clear sentence."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id, filename, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if offline():
        raise UsageError(hub_missing_message(repo_id)) from None
    try:
        return hf_hub_download(repo_id, filename)
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise UsageError(
            f"Model {repo_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and could not be "
            f"downloaded ({type(error).__name__}); check the id and your connection, or pass a local folder."
        ) from None


def hub_missing_message(repo_id: str) -> str:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        why, fix = "HF_HUB_OFFLINE is set", "or unset HF_HUB_OFFLINE"
    else:
        why, fix = f"{hub_host()} cannot be reached (no network?)", "or pass a local folder"
    return (
        f"Model {repo_id} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; "
        f"download it on a connected machine (`hf download {repo_id}`) {fix}."
    )


def hub_host() -> str:
    from huggingface_hub import constants

    return urlparse(constants.ENDPOINT).hostname or "huggingface.co"


def offline() -> bool:
    """HF_HUB_OFFLINE, or no network to the hub (its host name does not resolve)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # behind a proxy, names resolve there, not here
    try:
        socket.getaddrinfo(hub_host(), 443)
    except OSError:
        return True
    return False
