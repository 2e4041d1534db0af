"""Re-render the committed manifests from k8s/examples/run.yaml (a test checks they are current):
k8s/base (the run's Jobs and ConfigMap: a kustomize base) and k8s/argo (its WorkflowTemplate and Workflow).

    python scripts/render_k8s_examples.py            # from the repository root
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def render_examples(base: Path, argo: Path, config: Path = REPO / "k8s/examples/run.yaml") -> list[Path]:
    from dorl import config as cfglib
    from dorl.k8s.render import render, write

    m = render(cfglib.load(file=config))
    with tempfile.TemporaryDirectory() as tmp:
        write(m, tmp)
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(tmp, base, ignore=shutil.ignore_patterns("argo"))
        argo.mkdir(parents=True, exist_ok=True)
        for f in sorted(Path(tmp, "argo").iterdir()):
            shutil.copy(f, argo / f.name)
    return sorted(p for p in base.rglob("*.yaml")) + sorted(argo.glob("*.yaml"))


if __name__ == "__main__":
    for path in render_examples(REPO / "k8s/base", REPO / "k8s/argo"):
        print(path.relative_to(REPO))
