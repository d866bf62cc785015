"""dicecli: DICE, distilling classifier-free guidance into text embeddings."""

__version__ = "0.1.0"
