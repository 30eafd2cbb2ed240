import os
import sys

from stflib.cli import main

TRACEBACK_ENV = "STFLIB_TRACEBACK"  # 1: bad input raises with its whole traceback (for debugging stflib itself)


def _main() -> int:
    """``main``, with bad input (a missing, truncated or unreadable file, a value out of range) reported in
    one line naming it, as every command's own checks do, instead of a traceback."""
    try:
        return main()
    except (ValueError, OSError) as e:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"error: {type(e).__name__}: {e}\n(set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(_main())
