"""Lets MXNet 1.9.1 and 0.12 import and run on numpy >= 1.24, which removed names they use at import time.

Loaded only in stage environments whose lock pins mxnet beside such a numpy (the Python 3.12 and 3.13 locks):
envs.py copies this file into the environment's site-packages with a .pth line that imports it at start-up, before
any stage imports mxnet. It only adds names numpy lacks; every name numpy has is left alone.
"""

import numpy


def _removed_financial_function(*args, **kwargs):
    raise RuntimeError("numpy's financial functions were removed in numpy 1.20: use the numpy-financial package")


REMOVED_NAMES = {
    # the builtin aliases removed in numpy 1.24
    "bool": bool,
    "int": int,
    "float": float,
    "complex": complex,
    "object": object,
    "str": str,
    # constants and functions removed in numpy 2.0 that mxnet.numpy reads when it is imported
    "Inf": numpy.inf,
    "PINF": numpy.inf,
    "NINF": -numpy.inf,
    "NaN": numpy.nan,
    "NAN": numpy.nan,
    "PZERO": 0.0,
    "NZERO": -0.0,
    "alltrue": numpy.all,
    "sometrue": numpy.any,
    "product": numpy.prod,
    "round_": numpy.round,
    "msort": lambda a: numpy.sort(a, axis=0),
    **dict.fromkeys(("mirr", "npv", "pmt", "ppmt", "pv", "rate"), _removed_financial_function),
}

for _name, _value in REMOVED_NAMES.items():
    if _name not in numpy.__dict__:
        setattr(numpy, _name, _value)
