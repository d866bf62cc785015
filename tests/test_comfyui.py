"""The ComfyUI nodes without ComfyUI (docs/comfyui.md): the nodes' functions on conditioning in ComfyUI's layout
equal dicecli's enhancement of the same embeddings; every refusal is one sentence; `dice comfyui install`; the
example workflow. tests/comfyui/ runs them in a real ComfyUI when one is given."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from helpers import random_enhancer_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipes(offline_home):
    from dicecli.api import load_pipeline

    return {family: load_pipeline(f"tiny-{family}", device="cpu", dtype="fp32") for family in ("sd15", "sdxl")}


def enhancer_for(pipe, family: str, path: Path) -> Path:
    from dicecli.families import adapter_for_pipeline

    path.parent.mkdir(parents=True, exist_ok=True)
    return random_enhancer_file(path, width=adapter_for_pipeline(pipe).text.width, family=family, trained_on=f"tiny-{family}")


def comfy_layout(pipe, prompt: str) -> tuple[list, torch.Tensor]:
    """CONDITIONING as CLIP Text Encode makes it: one entry, [1, 77, D] and the pooled embedding, from the
    pipeline's own encode_prompt; and the empty prompt's [1, 77, D] (what the node's clip input encodes)."""
    from dicecli.families import adapter_for_pipeline

    adapter = adapter_for_pipeline(pipe)
    cond, null = adapter.encode_all([prompt]), adapter.encode_all([""])
    pooled = cond.pooled_prompt_embeds if cond.pooled_prompt_embeds is not None else cond.prompt_embeds[:, -1]
    return [[cond.prompt_embeds, {"pooled_output": pooled}]], null.prompt_embeds


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_the_node_equals_dicecli_on_the_same_prompt(pipes, family, tmp_path):
    from dicecli.api import enhanced_embeddings
    from dicecli.comfyui.conditioning import enhance, load

    pipe = pipes[family]
    path = enhancer_for(pipe, family, tmp_path / "e.safetensors")
    positive, null = comfy_layout(pipe, "a red cat on a blue chair")
    (entry,) = enhance(load(path), positive, null)
    expected = enhanced_embeddings(pipe, path, "a red cat on a blue chair")["prompt_embeds"]
    assert torch.allclose(entry[0], expected, atol=1e-6)
    assert (entry[0] - positive[0][0]).abs().max() > 1e-3  # the enhancer did something
    assert entry[1]["pooled_output"] is positive[0][1]["pooled_output"]  # the prompt's own pooled embedding
    # strength and a negative prompt, as `--alpha` and `--negative`
    negative, _ = comfy_layout(pipe, "blurry, watermark")
    (entry,) = enhance(load(path), positive, negative[0][0], strength=0.5)
    expected = enhanced_embeddings(pipe, path, "a red cat on a blue chair", negative_prompt="blurry, watermark",
                                   alpha=0.5)["prompt_embeds"]
    assert torch.allclose(entry[0], expected, atol=1e-6)


def test_several_entries_and_long_prompts_are_enhanced_chunk_by_chunk_with_their_options(pipes, tmp_path):
    from dicecli.comfyui.conditioning import MARK, enhance, load
    from dicecli.families import Conditioning
    from dicecli.method import apply_enhancer

    pipe = pipes["sd15"]
    loaded = load(enhancer_for(pipe, "sd15", tmp_path / "e.safetensors"))
    one, null = comfy_layout(pipe, "a red cat")
    two, _ = comfy_layout(pipe, "a green house")
    long = torch.cat([one[0][0], two[0][0], one[0][0]], dim=1).to(torch.float16)  # three chunks of 77, in fp16
    options = {"pooled_output": one[0][1]["pooled_output"], "area": (8, 8, 0, 0), "strength": 0.7,
               "start_percent": 0.1, "end_percent": 0.9}
    out = enhance(loaded, [[long, options], two[0]], null)
    assert len(out) == 2 and out[0][0].shape == (1, 231, loaded.width) and out[0][0].dtype == torch.float16
    assert {k: v for k, v in out[0][1].items() if k != MARK} == options and out[0][1][MARK] == "e.safetensors"
    for chunk, source in zip(out[0][0].split(77, dim=1), (one, two, one)):
        with torch.no_grad():
            alone = apply_enhancer(loaded.module, Conditioning(source[0][0], torch.zeros(1, dtype=torch.long)),
                                   Conditioning(null, torch.zeros(1, dtype=torch.long))).prompt_embeds
        assert torch.allclose(chunk.float(), alone.half().float(), atol=1e-3)
        assert torch.equal(chunk[:, 0], source[0][0][:, 0].half())  # each chunk's start token kept
    assert torch.allclose(out[1][0], out[0][0][:, 77:154].float(), atol=1e-2)


def test_parts_use_each_chunks_end_of_text(pipes, tmp_path):
    from dicecli.comfyui.conditioning import end_positions, enhance, load

    pipe = pipes["sd15"]
    loaded = load(enhancer_for(pipe, "sd15", tmp_path / "e.safetensors"))
    positive, null = comfy_layout(pipe, "a red cat")
    eos = int((pipe.tokenizer("a red cat").input_ids).__len__()) - 1
    # ComfyUI's tokenization of one chunk: (token, weight) pairs, start, words, end, padding with the end token
    ids = pipe.tokenizer("a red cat", padding="max_length", max_length=77).input_ids
    chunks = [[(token, 1.0) for token in ids]]
    assert end_positions(chunks, pipe.tokenizer.eos_token_id) == [eos]
    full = enhance(loaded, positive, null)[0][0]
    semantic = enhance(loaded, positive, null, part="semantic", ends=[eos])[0][0]
    padding = enhance(loaded, positive, null, part="padding", ends=[eos])[0][0]
    original = positive[0][0]
    assert torch.equal(semantic[:, : eos + 1], full[:, : eos + 1]) and torch.equal(semantic[:, eos + 1 :], original[:, eos + 1 :])
    assert torch.equal(padding[:, eos + 1 :], full[:, eos + 1 :]) and torch.equal(padding[:, : eos + 1], original[:, : eos + 1])


def one_sentence(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text and text.endswith(".") and "Error" not in text.split(" ")[0], text
    return text


def test_refusals_are_one_sentence(pipes, tmp_path):
    from dicecli.comfyui.conditioning import NodeError, enhance, first_chunk, load

    pipe = pipes["sd15"]
    path = enhancer_for(pipe, "sd15", tmp_path / "e.safetensors")
    loaded = load(path)
    positive, null = comfy_layout(pipe, "a red cat")
    sdxl_positive, sdxl_null = comfy_layout(pipes["sdxl"], "a red cat")
    cases = {
        "wide": lambda: enhance(loaded, [[torch.zeros(1, 77, 2048), {}]], null),
        "family": lambda: enhance(loaded, sdxl_positive, sdxl_null),
        "chunks": lambda: enhance(loaded, [[positive[0][0][:, :70], {}]], null),
        "twice": lambda: enhance(loaded, enhance(loaded, positive, null), null),
        "part": lambda: enhance(loaded, positive, null, part="semantic"),
        "ends": lambda: enhance(loaded, positive, null, part="padding", ends=[3, 5]),
        "strength": lambda: enhance(loaded, positive, null, strength=1e39),
        "empty negative": lambda: first_chunk([], "negative"),
        "not conditioning": lambda: enhance(loaded, [[torch.zeros(77, 32), {}]], null),
    }
    sentences = {}
    for name, case in cases.items():
        with pytest.raises(NodeError) as refused:
            case()
        sentences[name] = one_sentence(refused.value)
    assert "2048 wide (an SDXL checkpoint's)" in sentences["wide"] and "sd15" in sentences["wide"]
    assert "not whole chunks of 77" in sentences["chunks"] and "already enhanced" in sentences["twice"]
    assert "prompt_text" in sentences["part"] and "strength 1e+39" in sentences["strength"]

    # the file checks dice applies: damaged, NaN weights, another family, not an enhancer
    nan = random_enhancer_file(tmp_path / "nan.safetensors", width=32)
    data = bytearray(nan.read_bytes())
    data[-4:] = b"\x00\x00\xc0\x7f"
    nan.write_bytes(bytes(data))
    random_enhancer_file(tmp_path / "pixart.safetensors", width=32, family="pixart")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    for name, needle in (("nan", "NaN or infinite weights"), ("pixart", "pixart family"),
                         ("junk", "not a readable .safetensors")):
        with pytest.raises(NodeError) as refused:
            load(tmp_path / f"{name}.safetensors")
        assert needle in one_sentence(refused.value)


class FakeClip:
    """What the node asks of ComfyUI's CLIP: tokenize, encode_from_tokens, and its tokenizer's end token; backed by
    the tiny pipeline's own tokenizer and encoder."""

    def __init__(self, pipe):
        from dicecli.families import adapter_for_pipeline

        self.adapter = adapter_for_pipeline(pipe)
        self.tokenizer = types.SimpleNamespace(clip_l=types.SimpleNamespace(end_token=pipe.tokenizer.eos_token_id))
        self.pipe = pipe

    def tokenize(self, text):
        ids = self.pipe.tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
        return {"l": [[(token, 1.0) for token in ids]], "text": text}

    def encode_from_tokens(self, tokens):
        return self.adapter.encode_all([tokens["text"]]).prompt_embeds


@pytest.fixture
def fake_comfyui(tmp_path, monkeypatch):
    """`folder_paths` and `comfy.model_management` as far as the nodes use them, with ComfyUI's semantics."""
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(tmp_path / "models")
    folder_paths.folder_names_and_paths = {"dice": ([str(tmp_path / "extra")], set())}  # from extra_model_paths.yaml

    def add_model_folder_path(name, path, is_default=False):
        paths, _ = folder_paths.folder_names_and_paths.setdefault(name, ([], set()))
        if path not in paths:
            paths.insert(0, path) if is_default else paths.append(path)

    def get_filename_list(name):
        paths, extensions = folder_paths.folder_names_and_paths[name]
        return sorted(p.name for folder in paths if Path(folder).is_dir() for p in Path(folder).iterdir()
                      if not extensions or p.suffix in extensions)

    def get_full_path(name, filename):
        for folder in folder_paths.folder_names_and_paths[name][0]:
            if (Path(folder) / filename).is_file():
                return str(Path(folder) / filename)
        return None

    folder_paths.add_model_folder_path = add_model_folder_path
    folder_paths.get_filename_list = get_filename_list
    folder_paths.get_full_path = get_full_path
    folder_paths.get_folder_paths = lambda name: folder_paths.folder_names_and_paths[name][0][:]
    comfy = types.ModuleType("comfy")
    comfy.model_management = types.ModuleType("comfy.model_management")
    comfy.model_management.get_torch_device = lambda: torch.device("cpu")
    for name, module in (("folder_paths", folder_paths), ("comfy", comfy), ("comfy.model_management", comfy.model_management)):
        monkeypatch.setitem(sys.modules, name, module)
    return folder_paths


def test_the_nodes_through_their_node_api(pipes, tmp_path, fake_comfyui):
    from dicecli.api import enhanced_embeddings
    from dicecli.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from dicecli.comfyui.conditioning import NodeError

    assert set(NODE_CLASS_MAPPINGS) == set(NODE_DISPLAY_NAME_MAPPINGS) == {"DICELoadEnhancer", "DICEEnhanceConditioning"}
    loader, enhancer_node = NODE_CLASS_MAPPINGS["DICELoadEnhancer"](), NODE_CLASS_MAPPINGS["DICEEnhanceConditioning"]()
    for node in (loader, enhancer_node):
        assert {"RETURN_TYPES", "FUNCTION", "CATEGORY"} <= set(dir(node)) and callable(getattr(node, node.FUNCTION))
    pipe = pipes["sd15"]
    enhancer_for(pipe, "sd15", tmp_path / "models" / "dice" / "mine.safetensors")
    enhancer_for(pipe, "sd15", tmp_path / "extra" / "shared.safetensors")
    (tmp_path / "models" / "dice" / "notes.txt").write_text("not an enhancer")
    (names,) = loader.INPUT_TYPES()["required"]["enhancer_name"][:1]
    assert names == ["mine.safetensors", "shared.safetensors"]  # models/dice/ and the extra path, .safetensors only
    (loaded,) = loader.load_enhancer("shared.safetensors")
    with pytest.raises(NodeError, match="not in"):
        loader.load_enhancer("gone.safetensors")

    inputs = enhancer_node.INPUT_TYPES()
    assert set(inputs["required"]) == {"enhancer", "clip", "positive", "strength", "part"}
    assert set(inputs["optional"]) == {"negative", "prompt_text"}
    clip = FakeClip(pipe)
    positive, _ = comfy_layout(pipe, "a red cat")
    (out,) = enhancer_node.enhance(loaded, clip, positive, 1.0, "all")
    path = tmp_path / "extra" / "shared.safetensors"
    assert torch.allclose(out[0][0], enhanced_embeddings(pipe, path, "a red cat")["prompt_embeds"], atol=1e-6)
    (out,) = enhancer_node.enhance(loaded, clip, positive, 1.0, "padding", prompt_text="a red cat")
    expected = enhanced_embeddings(pipe, path, "a red cat", part="padding")["prompt_embeds"]
    assert torch.allclose(out[0][0], expected, atol=1e-6)
    negative, _ = comfy_layout(pipe, "blurry")
    (out,) = enhancer_node.enhance(loaded, clip, positive, 2.0, "all", negative=negative)
    expected = enhanced_embeddings(pipe, path, "a red cat", negative_prompt="blurry", alpha=2.0)["prompt_embeds"]
    assert torch.allclose(out[0][0], expected, atol=1e-6)


def test_dicecli_imports_no_comfyui():
    code = ("import sys, dicecli, dicecli.comfyui, dicecli.cli; "
            "print(sorted(m for m in sys.modules if m == 'folder_paths' or m.split('.')[0] == 'comfy'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_install_writes_the_loader_and_the_enhancer_folder(dice, tmp_path):
    (tmp_path / "ComfyUI" / "custom_nodes").mkdir(parents=True)
    for _ in range(2):  # again: the same file
        result = dice("comfyui", "install", tmp_path / "ComfyUI", "--json")
        assert result.code == 0, result.stderr
    paths = json.loads(result.stdout)
    loader = Path(paths["custom_node"])
    assert loader == tmp_path / "ComfyUI" / "custom_nodes" / "dicecli-nodes" / "__init__.py"
    assert "from dicecli.comfyui import NODE_CLASS_MAPPINGS" in loader.read_text()
    assert Path(paths["enhancers"]).is_dir() and [p.name for p in loader.parent.iterdir()] == ["__init__.py"]
    compile(loader.read_text(), str(loader), "exec")

    result = dice("comfyui", "install", tmp_path / "nowhere")
    assert result.code == 2 and result.stderr.count("\n") == 1 and "is not a ComfyUI folder" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_the_example_workflow_is_the_documented_graph():
    from dicecli.comfyui import NODE_CLASS_MAPPINGS

    workflow = json.loads((ROOT / "examples" / "comfyui" / "dice-sd15-workflow.json").read_text())
    kinds = {node_id: node["class_type"] for node_id, node in workflow.items()}
    by_kind = {kind: node_id for node_id, kind in kinds.items()}

    def source(kind, name):
        return kinds[workflow[by_kind[kind]]["inputs"][name][0]]

    assert source("DICEEnhanceConditioning", "positive") == "CLIPTextEncode"
    assert source("DICEEnhanceConditioning", "enhancer") == "DICELoadEnhancer"
    assert source("KSampler", "positive") == "DICEEnhanceConditioning"
    assert workflow[by_kind["KSampler"]]["inputs"]["cfg"] == 1.0
    assert source("VAEDecode", "samples") == "KSampler" and source("SaveImage", "images") == "VAEDecode"
    for link in (v for node in workflow.values() for v in node["inputs"].values() if isinstance(v, list)):
        assert link[0] in workflow
    dice_inputs = workflow[by_kind["DICEEnhanceConditioning"]]["inputs"]
    declared = NODE_CLASS_MAPPINGS["DICEEnhanceConditioning"].INPUT_TYPES()
    assert set(dice_inputs) <= set(declared["required"]) | set(declared["optional"])
