"""dicecli: DICE, distilling classifier-free guidance into text embeddings.

The command line is `dice`; the Python API (docs/python.md) is this package's public names, listed in
`__all__` and defined in `dicecli.api`: load an enhancer for a diffusers pipeline, attach it like a LoRA,
get enhanced embeddings as the pipeline's call arguments, read and write embedding caches.
"""

__version__ = "0.1.0"  # before the imports below: modules they reach import it

from dicecli.api import (Attachment, CachedEmbeddings, DamagedError, DiceError, IncompatibleError, LoadedEnhancer,
                         UsageError, attach, detach, enhanced_embeddings, load_enhancer, load_pipeline, read_cache,
                         set_scheduler, write_cache)

__all__ = [
    "Attachment",
    "CachedEmbeddings",
    "DamagedError",
    "DiceError",
    "IncompatibleError",
    "LoadedEnhancer",
    "UsageError",
    "__version__",
    "attach",
    "detach",
    "enhanced_embeddings",
    "load_enhancer",
    "load_pipeline",
    "read_cache",
    "set_scheduler",
    "write_cache",
]
