"""`dice trigger`: trigger words, a short suffix of real words whose plain encoding moves the embedding the way
the enhancer does (the paper's future work: enhanced embeddings projected back to prompts).

A suffix found here works in any tool that takes a prompt, with no enhancer at all.

The search is a greedy coordinate search over the suffix's tokens with gradient-ranked candidates, as
AutoPrompt (Shin et al., 2020) and GCG (Zou et al., 2023) do: the suffix's tokens enter the text encoder as
one-hot vectors times its token-embedding matrix, so the gradient of the objective with respect to each
one-hot vector ranks every vocabulary word for each position at once; the best-ranked single-word swaps are
then encoded for real, and the best is kept while it lowers the objective. Unlike a continuous (PEZ-style)
projection, every candidate scored is a real sequence of words, so the reported distance is the one the
words give. Candidates are whole lower-case words of the tokenizer's vocabulary that read back as one token.

The objective, over the prompt set (one suffix for all: "universal"; or per prompt):
    relative distance = |enc(prompt + suffix) - c'|^2 / |enc(prompt) - c'|^2,
over the tokens the denoiser sees (under a mask, each sequence's own). 1 is no closer than the plain prompt.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from dicecli.analysis import EnhancedPrompts, enhance_prompts, output_paths, prepare_analysis
from dicecli.errors import UsageError
from dicecli.families import Conditioning
from dicecli.files import atomic_path
from dicecli.preparation import read_input
from dicecli.runtime import Runtime
from dicecli.settings import SampleOptions

WORD = re.compile(r"^(?:▁)?([a-z]+)(?:</w>)?$")  # CLIP's "word</w>", T5's "▁word": whole lower-case words
SHORTEST = 3  # letters in a candidate word, unless the vocabulary has too few such words (tiny test tokenizers)


@dataclass
class TriggerResult:
    output: str | None
    model: str
    enhancer: str
    alpha: float
    universal: bool
    suffixes: list[str]  # one (universal) or one per prompt
    distance: float  # mean relative distance of the prompts with their suffix (1 = the plain prompt's)
    random_distance: float  # the same with as many random words of the candidates: what any suffix does
    prompts: int
    iterations: int
    per_prompt: list[dict] = field(repr=False, default_factory=list)


def candidate_words(tokenizer) -> tuple[list[int], list[str]]:
    """Token ids and words of the vocabulary a suffix is made of: whole lower-case words of at least SHORTEST
    letters that read back as one token (single letters where the vocabulary has few words: tiny test models)."""
    ids, words = [], []
    for token, index in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        match = WORD.match(token)
        if not match:
            continue
        if tokenizer(match.group(1), add_special_tokens=False).input_ids != [index]:
            continue
        ids.append(index)
        words.append(match.group(1))
    long = [(i, w) for i, w in zip(ids, words) if len(w) >= SHORTEST]
    if len(long) >= 16:
        ids, words = [i for i, _ in long], [w for _, w in long]
    if not ids:
        raise UsageError("This model's tokenizer has no whole-word tokens to build trigger words from.")
    return ids, words


def with_suffix(prompt: str, words: list[str]) -> str:
    return f"{prompt} {' '.join(words)}".strip()


def check_moved(data: EnhancedPrompts) -> None:
    """Distances are relative to the enhancer's move, c' - c: where it is nil (--alpha 0, or an enhancer that
    changes nothing) there is nothing to match, and the ratio would be noise over zero."""
    plain, enhanced = visible(data.cond), visible(data.enhanced)
    moved = ((enhanced - plain) ** 2).sum((1, 2)) > 1e-12 * (plain ** 2).sum((1, 2)).clamp_min(1e-30)
    if not moved.all():
        cause = "--alpha 0 makes c' = c" if float(data.prepared.alpha) == 0 else "the enhancer leaves them unchanged"
        raise UsageError(f"The enhanced embeddings of {int((~moved).sum())} of {len(moved)} prompts equal the plain "
                         f"ones ({cause}): trigger words have no move to match; give --alpha above 0 or a trained enhancer.")


class Searcher:
    """The objective and its gradient for one set of prompts and their enhanced target."""

    def __init__(self, data: EnhancedPrompts, rows: list[int]):
        self.data, self.adapter = data, data.adapter
        self.prompts = [data.prompts[i] for i in rows]
        self.target = visible(data.enhanced[rows])
        self.plain = ((visible(data.cond[rows]) - self.target) ** 2).sum((1, 2)).clamp_min(1e-12)
        self.encoders = [self.adapter.components[name] for name in self.adapter.text_components
                         if isinstance(self.adapter.components[name], torch.nn.Module)]

    def token_embeddings(self) -> list[torch.nn.Module]:
        """Each encoder's token-embedding modules (T5's encoder has its own module sharing the weights)."""
        found = []
        for encoder in self.encoders:
            weight = encoder.get_input_embeddings().weight
            found += [m for m in encoder.modules() if isinstance(m, torch.nn.Embedding) and m.weight is weight]
        return found

    def distances(self, words: list[str]) -> torch.Tensor:
        """Per prompt, the relative distance of the plain encoding of prompt + suffix."""
        with torch.no_grad():
            cond = self.adapter.encode([with_suffix(p, words) for p in self.prompts]).conditioning
        return ((visible(cond.to(self.target.device, torch.float32)) - self.target) ** 2).sum((1, 2)) / self.plain

    def gradient(self, ids: list[int], words: list[str], allowed: torch.Tensor) -> torch.Tensor:
        """d objective / d one-hot, [suffix length, candidates]: the first-order change of swapping in each word."""
        texts = [with_suffix(p, words) for p in self.prompts]
        ends = self.adapter.tokenize(texts).eos_index.tolist()  # the end-of-text token's position
        onehot = torch.zeros(len(ids), len(allowed), device=self.target.device)
        onehot[torch.arange(len(ids)), [allowed.tolist().index(i) for i in ids]] = 1
        onehot.requires_grad_(True)
        grad = None

        def replace(module, _inputs, output):
            rows = onehot.to(output.dtype) @ module.weight[allowed.to(module.weight.device)]
            output = output.clone()
            for b, end in enumerate(ends):
                output[b, end - len(ids) : end] = rows
            return output

        hooks = [module.register_forward_hook(replace) for module in self.token_embeddings()]
        try:
            with torch.enable_grad():
                cond = self.adapter.encode_differentiable(texts).conditioning
                embeds = visible(cond.to(self.target.device, torch.float32))
                loss = (((embeds - self.target) ** 2).sum((1, 2)) / self.plain).mean()
                (grad,) = torch.autograd.grad(loss, onehot)  # the encoders' own weights get no gradients
        finally:
            for hook in hooks:
                hook.remove()
        return grad


def visible(cond: Conditioning) -> torch.Tensor:
    """The token sequence as the denoiser sees it: zero outside the attention mask, where there is one."""
    embeds = cond.prompt_embeds.float()
    if cond.attention_mask is None:
        return embeds
    return embeds * cond.attention_mask[..., None].to(embeds)


def search(searcher: Searcher, allowed: torch.Tensor, words: list[str], length: int, iterations: int, top_k: int,
           rng: random.Random, on_step: Callable[[int, float], None] = lambda *_: None) -> tuple[list[str], float]:
    """Greedy coordinate search from a random suffix: each iteration scores the top_k gradient-ranked swaps per
    position for real and keeps the best while it lowers the mean relative distance."""
    by_id = dict(zip(allowed.tolist(), words))
    current = rng.sample(allowed.tolist(), length)
    best = searcher.distances([by_id[i] for i in current]).mean().item()
    for step in range(iterations):
        grad = searcher.gradient(current, [by_id[i] for i in current], allowed)
        swaps = []
        for position in range(length):
            order = grad[position].argsort().tolist()
            ranked = [allowed[j].item() for j in order if allowed[j].item() not in current][:top_k]
            swaps += [(position, token) for token in ranked]
        scored = []
        for position, token in swaps:
            trial = current.copy()
            trial[position] = token
            scored.append((searcher.distances([by_id[i] for i in trial]).mean().item(), trial))
        value, trial = min(scored, key=lambda item: item[0])
        on_step(step, min(value, best))
        if value >= best:
            break  # no single-word swap among the candidates lowers it: a local optimum
        best, current = value, trial
    return [by_id[i] for i in current], best


@dataclass(frozen=True)
class TriggerSearch:
    """How `dice trigger` searches: suffix length, iterations at most, candidates per position, one suffix per prompt
    or for the whole set, and the seed of the starting suffix and of the random-words baseline."""

    length: int = 4
    iterations: int = 30
    top_k: int = 32
    per_prompt: bool = False
    seed: int = 0


def find_triggers(source: str, output: Path | None, options: SampleOptions, how: TriggerSearch, runtime: Runtime,
                  progress: Callable[[str], None] = lambda _: None) -> TriggerResult:
    """Search trigger words for `options.enhancer` on the prompts of SOURCE; write OUTPUT.json and OUTPUT.txt (each
    prompt with its suffix: a prompts file for `dice sample`, with no enhancer) when OUTPUT is given."""
    length, iterations, top_k, per_prompt = how.length, how.iterations, how.top_k, how.per_prompt
    if length < 1 or iterations < 0 or top_k < 1:
        raise UsageError("--length and --top-k must be at least 1 and --iterations at least 0.")
    paths = output_paths(output, (".json", ".txt"))
    prepared = prepare_analysis(read_input(source), options, paths)
    note = runtime.note
    data = enhance_prompts(prepared, runtime)
    check_moved(data)
    tokenizer = data.adapter.tokenizer
    ids, words = candidate_words(tokenizer)
    if length > len(ids):
        raise UsageError(f"--length {length} is more than the {len(ids)} candidate words of this tokenizer.")
    limit = data.cond.prompt_embeds.shape[1]
    fits = [i for i, p in enumerate(data.prompts) if len(tokenizer(with_suffix(p, words[:length])).input_ids) <= limit]
    if len(fits) < len(data.prompts):
        note(f"{len(data.prompts) - len(fits)} prompts leave no room for {length} more tokens before the model's "
             f"{limit}-token limit; they are left out of the search.")
    if not fits:
        raise UsageError(f"No prompt of {source} leaves room for {length} more tokens; use shorter prompts or --length.")
    allowed = torch.tensor(ids)
    rng = random.Random(how.seed)
    groups = [[i] for i in fits] if per_prompt else [fits]
    suffixes, rows = [], []
    for number, group in enumerate(groups, start=1):
        searcher = Searcher(data, group)
        found, _ = search(searcher, allowed, words, length, iterations, min(top_k, len(ids) - length), rng,
                          lambda step, value: progress(f"search {number}/{len(groups)}, iteration {step + 1}: "
                                                       f"relative distance {value:.4f}"))
        distances = searcher.distances(found)
        baseline = searcher.distances(rng.sample(words, length))
        suffixes.append(" ".join(found))
        rows += [{"prompt": data.prompts[i], "suffix": " ".join(found), "distance": round(d.item(), 6),
                  "random_distance": round(r.item(), 6)} for i, d, r in zip(group, distances, baseline)]
    p = data.prepared
    result = TriggerResult(None, p.ref.given, p.enhancer.name, float(p.alpha), not per_prompt, suffixes,
                           round(sum(r["distance"] for r in rows) / len(rows), 6),
                           round(sum(r["random_distance"] for r in rows) / len(rows), 6), len(rows), iterations, rows)
    if output:
        result.output = str(paths[0])
        with atomic_path(paths[0]) as tmp:
            tmp.write_text(json.dumps(asdict(result), indent=1), encoding="utf-8")
        with atomic_path(paths[1]) as tmp:
            tmp.write_text("".join(with_suffix(r["prompt"], r["suffix"].split()) + "\n" for r in rows), encoding="utf-8")
    return result
