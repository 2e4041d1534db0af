"""Coverage-guided fuzzing of dorl's input readers with atheris (libFuzzer), beyond the bounded hypothesis runs.

    pip install atheris==3.0.0    # not a dev dependency (binary wheels only; CI runs the hypothesis harness)
    python -m tests.fuzz_atheris config|sets|manifest|raw [libFuzzer flags: -atheris_runs=200000 -max_len=4096]

Each target is the function the hypothesis tests call (tests/config/test_fuzz.py, tests/store/test_fuzz.py,
tests/data/test_fuzz.py): a traceback, or a broken contract (an error of several lines, the memory bound), is a
crash, which libFuzzer saves as crash-<sha1> in the working folder; `python -m tests.fuzz_atheris TARGET
crash-<sha1>` runs that input again.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["dorl"]):
    from tests.config import test_fuzz as config_fuzz
    from tests.data import test_fuzz as data_fuzz
    from tests.store import test_fuzz as store_fuzz

TARGETS = {
    "config": config_fuzz.target_file,  # a YAML config file
    "sets": config_fuzz.target_sets,  # --set items (separated by \\x1f)
    "manifest": store_fuzz.target,  # an artifact's manifest.json
    "raw": data_fuzz.target,  # a raw file of each dataset format
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz_atheris {'|'.join(TARGETS)} [libFuzzer flags or inputs]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
