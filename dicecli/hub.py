"""Single files from the Hugging Face hub: the local cache first, one clear sentence when offline."""

from __future__ import annotations

from dicecli.errors import UsageError


def hub_file(repo_id: str, filename: str) -> str:
    """Fetch one file of a hub repo, from the local cache first; offline gets one clear sentence."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(repo_id, filename, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        pass
    if constants.HF_HUB_OFFLINE:
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

    return (
        f"Model {repo_id} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
        f"is set; download it on a connected machine (`hf download {repo_id}`) or unset HF_HUB_OFFLINE."
    )


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)
