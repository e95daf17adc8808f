"""The CPU named beside every figure (workflow/lib/cpu.py): model name and the ISA extensions inference depends on."""

from workflow.lib import cpu

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512_bf16 avx512_vnni
processor\t: 1
model name\t: a second core, not read
"""


def test_model_name_and_extensions_from_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    described = cpu.describe(tmp_path / "cpuinfo")
    assert described["model_name"] == "AMD EPYC 9R14"
    assert [flag for flag, has in described["isa"].items() if has] == [
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
    ]
    assert cpu.one_line(described) == (
        "AMD EPYC 9R14 (has avx2, fma, avx512f, avx512_vnni, avx512_bf16; "
        "lacks avx_vnni, avx512_fp16, amx_tile, amx_int8, amx_bf16)"
    )


def test_a_cpu_without_any_of_them(tmp_path):
    (tmp_path / "cpuinfo").write_text("model name\t: Old\nflags\t\t: fpu sse2\n")
    assert cpu.one_line(cpu.describe(tmp_path / "cpuinfo")).startswith("Old (has none; lacks avx2, fma, avx512f")
    assert cpu.describe(tmp_path / "cpuinfo")["model_name"] == "Old"


def test_an_isa_cap_is_named_beside_the_cpu(tmp_path, monkeypatch):
    """DNNL_MAX_CPU_ISA makes MXNet's and OpenVINO's oneDNN compute as a CPU of that ISA does: say so."""
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert cpu.describe(tmp_path / "cpuinfo")["isa_cap"] is None
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert cpu.describe(tmp_path / "cpuinfo")["isa_cap"] == "AVX2"
    assert cpu.one_line(cpu.describe(tmp_path / "cpuinfo")).endswith("amx_bf16), oneDNN capped at AVX2")
