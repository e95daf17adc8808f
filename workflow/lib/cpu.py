"""The CPU a figure was measured on: its model name (lscpu's "Model name") and which of the instruction-set
extensions that change how fast, or in what precision, inference runs it has (OpenVINO's CPU plugin computes in bf16
where the CPU has it; INT8 is fast with VNNI or AMX)."""

import os
from pathlib import Path

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16")
ISA_FLAGS += ("amx_tile", "amx_int8", "amx_bf16")


def describe(cpuinfo="/proc/cpuinfo"):
    """{"model_name": str, "isa": {flag: bool for each of ISA_FLAGS}, "isa_cap": str or None} of this machine's
    (first) CPU; isa_cap is DNNL_MAX_CPU_ISA (or ONEDNN_MAX_CPU_ISA), with which MXNet's and OpenVINO's oneDNN compute
    as a CPU of that ISA does (AVX2, AVX512_CORE, ...)."""
    fields = {}
    for line in Path(cpuinfo).read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    cap = os.environ.get("DNNL_MAX_CPU_ISA") or os.environ.get("ONEDNN_MAX_CPU_ISA")
    return {
        "model_name": fields.get("model name", "unknown"),
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "isa_cap": cap or None,
    }


def one_line(description=None):
    """'AMD EPYC (has avx2, fma; lacks avx512f, ...)' for a description (this machine's by default), with ', oneDNN
    capped at AVX2' where DNNL_MAX_CPU_ISA caps it."""
    description = description or describe()
    present = [flag for flag, has in description["isa"].items() if has] or ["none"]
    absent = [flag for flag, has in description["isa"].items() if not has] or ["none"]
    cap = f", oneDNN capped at {description['isa_cap']}" if description.get("isa_cap") else ""
    return f"{description['model_name']} (has {', '.join(present)}; lacks {', '.join(absent)}){cap}"
