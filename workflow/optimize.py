"""optimize: the MXNet deploy model -> OpenVINO IR (FP16 or FP32) and its contract, by the Model Optimizer.

workflow/lib/model_optimizer.py does it (verify_ir and quantize convert their own IRs with it too) and says why
the IR keeps every candidate box and leaves the NMS to its caller.
"""

from workflow.lib.cli import run_main
from workflow.lib.model_optimizer import optimize, parse_args


def main(argv=None):
    optimize(parse_args(argv))


if __name__ == "__main__":
    run_main(main)
