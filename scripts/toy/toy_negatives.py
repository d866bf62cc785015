"""Print the toy negative-prompt corpus: 120 captions of training scenes (ToyWorld seed 3).

The toy vocabulary has no "blurry, bad quality" words, so the toy's negative prompts describe
other scenes: distilled with them, an enhancer learns to push away from a stated scene.
"""

from dicecli.plugins.toy.world import ToyWorld

if __name__ == "__main__":
    print("\n".join(dict.fromkeys(ToyWorld(size=120, seed=3)[:120])))
