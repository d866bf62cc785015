"""dicecli: DICE, distilling classifier-free guidance into text embeddings.

The command line is `dice`; the Python API (docs/python.md) is this package's public names, listed once in
`dicecli.api.__all__`: load an enhancer for a diffusers pipeline, attach it like a LoRA, get enhanced
embeddings as the pipeline's call arguments, read and write embedding caches.
"""

__version__ = "0.1.0"  # before the import below: modules it reaches import it

from dicecli import api
from dicecli.api import *  # noqa: F403 - the public names, listed in api.__all__

__all__ = [*api.__all__, "__version__"]
