import json

import pytest
import torch
from safetensors import safe_open

from dicecli.enhancer import Enhancer, check_compatible, read_enhancer, parameter_count, read_metadata, save_enhancer
from dicecli.errors import IncompatibleError, UsageError


@pytest.mark.parametrize("dim, expected", [(768, 1_836_800), (2048, 3_148_800), (4096, 5_248_000)])
def test_parameter_counts(dim, expected):
    enhancer = Enhancer(dim)
    assert parameter_count(enhancer) == expected == 1025 * dim + 1_049_600
    assert enhancer.attn.to_q.bias is None and enhancer.attn.to_k.bias is None and enhancer.attn.to_v.bias is None
    assert enhancer.attn.to_out.bias is not None


def trained_like(dim=32):
    torch.manual_seed(0)
    enhancer = Enhancer(dim)
    with torch.no_grad():
        for p in enhancer.parameters():
            p.normal_(0, 0.2)
    return enhancer


def test_first_token_unchanged_and_alpha_scales_the_rest():
    enhancer = trained_like()
    c, c_neg = torch.randn(3, 77, 32), torch.randn(3, 77, 32)
    one = enhancer(c, c_neg, alpha=1.0)
    two = enhancer(c, c_neg, alpha=2.0)
    torch.testing.assert_close(one[:, 0], c[:, 0], rtol=0, atol=0)
    assert (one[:, 1:] - c[:, 1:]).abs().mean() > 1e-2
    torch.testing.assert_close(two - c, 2 * (one - c), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enhancer(c, c_neg, alpha=0.0), c)


def test_fresh_enhancer_is_identity_and_single_negative_broadcasts():
    c = torch.randn(4, 77, 32)
    torch.testing.assert_close(Enhancer(32)(c, torch.randn(4, 77, 32)), c)
    enhancer = trained_like()
    neg = torch.randn(1, 77, 32)
    torch.testing.assert_close(enhancer(c, neg), enhancer(c, neg.expand(4, -1, -1)))


def test_queries_from_prompt_keys_values_from_negative():
    enhancer = trained_like()
    c = torch.randn(2, 77, 32)
    a = enhancer(c, torch.randn(2, 77, 32))
    b = enhancer(c, torch.randn(2, 77, 32))
    assert not torch.allclose(a, b)  # the negative prompt matters


def test_save_load_roundtrip_with_metadata(tmp_path):
    enhancer = trained_like()
    path = tmp_path / "e.safetensors"
    save_enhancer(enhancer, path, family="sd15", tokens=77, trained_on="tiny-sd15", guidance_scale=5.0,
                  negative_prompts="builtin-v1", loss="l1", steps=10, batch_size=8)
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata()
    assert all(isinstance(v, str) for v in raw.values())
    for key in ("format", "format_version", "family", "context_dim", "tokens", "inner_dim", "heads", "keep_first_token",
                "trained_on", "guidance_scale", "negative_prompts", "loss", "steps", "batch_size", "dicecli_version", "init"):
        assert key in raw, key
    assert raw["format"] == "dice-enhancer" and json.loads(raw["context_dim"]) == 32
    loaded, meta = read_enhancer(path)
    assert meta["family"] == "sd15" and meta["steps"] == 10
    for (name, a), b in zip(enhancer.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not list(tmp_path.glob(".*tmp"))


def test_refuses_other_family_and_dimension(tmp_path):
    path = tmp_path / "e.safetensors"
    save_enhancer(Enhancer(2048), path, family="sdxl", tokens=77)
    meta = read_metadata(path)
    with pytest.raises(IncompatibleError, match="sdxl family and cannot be used with tiny-sd15"):
        check_compatible(meta, path, family="sd15", model="tiny-sd15")
    with pytest.raises(IncompatibleError, match="2048-wide embeddings but m produces 768-wide"):
        check_compatible(meta, path, family="sdxl", context_dim=768, model="m")


def test_not_an_enhancer(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(UsageError, match="is not a dice enhancer"):
        read_metadata(path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"garbage")
    with pytest.raises(UsageError, match="not a readable .safetensors"):
        read_metadata(junk)


def test_enhancer_files_are_reproducible_byte_for_byte(tmp_path):
    """The same enhancer saved by two processes gives identical bytes (the sha256 that sample folders record)."""
    import subprocess
    import sys

    code = ("import sys, torch; from dicecli.enhancer import Enhancer, save_enhancer; torch.manual_seed(0); "
            "save_enhancer(Enhancer(32), sys.argv[1], family='sd15', tokens=77, trained_on='x', guidance_scale=5.0, "
            "loss='l1', steps=1, batch_size=1)")
    paths = [tmp_path / f"{i}.safetensors" for i in range(2)]
    for path in paths:
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    enhancer, meta = read_enhancer(paths[0])
    assert meta["family"] == "sd15" and meta["steps"] == 1 and parameter_count(enhancer) == 1025 * 32 + 1_049_600
