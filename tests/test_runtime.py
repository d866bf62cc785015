import pytest
import torch

from dicecli.errors import UsageError
from dicecli.runtime import select_device, select_dtype


def test_auto_is_cpu_fp32_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device = select_device("auto")
    assert device.type == "cpu" and select_dtype("auto", device) == torch.float32


def test_auto_is_cuda_bf16_with_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    device = select_device(None)
    assert device.type == "cuda" and select_dtype("auto", device) == torch.bfloat16


def test_overrides_and_bad_values(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_dtype("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(UsageError, match="no CUDA GPU is visible"):
        select_device("cuda")
    with pytest.raises(UsageError, match="--dtype 'fp8'"):
        select_dtype("fp8", torch.device("cpu"))
    with pytest.raises(UsageError, match="--device 'gpu0'"):
        select_device("gpu0")
