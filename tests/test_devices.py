import pytest
import torch

import m3bert.common.devices as devices
from m3bert.common.devices import cpu_flags, native_bf16, resolve_dtype
from m3bert.training.trainer import resolve_precision

X86_BF16 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
X86_PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize("cpuinfo, native", [(X86_BF16, True), (X86_PLAIN, False), (ARM_BF16, True), ("", False)])
def test_bf16_is_native_by_the_cpus_flags(tmp_path, cpuinfo, native):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert bool(cpu_flags(str(path)) & set(devices.BF16_CPU_FLAGS)) is native
    assert cpu_flags(str(tmp_path / "absent")) == set()


def test_auto_precision_and_dtype_pick_bf16_only_where_native(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert native_bf16() and resolve_precision("auto", cpu).name == "bf16" and resolve_dtype("auto") == torch.bfloat16
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert not native_bf16() and resolve_precision("auto", cpu).name == "fp32"
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_precision("bf16", cpu).name == "bf16"  # asked for explicitly, it is honoured anywhere
    with pytest.raises(ValueError, match="dtype must be auto or one of"):
        resolve_dtype("half")


def test_cpu_capability_names_native_bf16(monkeypatch):
    from m3bert.common import devices

    monkeypatch.setattr(devices.torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert devices.cpu_capability() == "avx512+avx512_bf16"
    monkeypatch.setattr(devices.torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(devices, "_torch_reports_amx", lambda: False)
    assert devices.cpu_capability() == "avx2"
