"""Shared plumbing for stage entry points: user-facing errors, progress lines, a figure with its interval."""

import os
import sys
import time


class UserError(Exception):
    """A problem with the user's data or settings: reported as one clear message, never a traceback."""


def log(message):
    print(message, file=sys.stderr, flush=True)


def run_main(main, argv=None):
    """Run a stage's main(argv); a UserError becomes 'ERROR: ...' on stderr and exit status 1."""
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # else MXNet announces its oneDNN backend at every bind
    try:
        main(argv)
    except UserError as error:
        log(f"ERROR: {error}")
        sys.exit(1)


class Progress:
    """Prints 'label: done/total (rate/s, ETA s)' at most every `every` seconds."""

    def __init__(self, label, total, every=5.0):
        self.label, self.total, self.every = label, total, every
        self.start = self.last = time.monotonic()

    def update(self, done, extra=""):
        now = time.monotonic()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        log(f"{self.label}: {done}/{self.total} ({rate:.1f}/s, ETA {eta:.0f} s) {extra}".rstrip())


def with_interval(value, interval=None, images=None):
    """A metric as every output shows it: '0.880 (0.79-0.94, 23 images)'; 'n/a' without a value."""
    if value is None:
        return "n/a"
    low, high = interval or (None, None)
    inside = [f"{low:.2f}-{high:.2f}"] if low is not None else []
    inside += [f"{images} images"] if images is not None else []
    return f"{value:.3f} ({', '.join(inside)})" if inside else f"{value:.3f}"
