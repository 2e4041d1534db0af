"""A small fake Kubernetes API server on 127.0.0.1, for testing the real kubernetes client at its HTTP boundary.

It records every request, stores what is created, and plays the Job controller in the crudest way: each
time the Jobs are listed, every unfinished Job ages by one; after `finish_after` lists it is Complete, or
Failed if its name is in `fail`. Each Job gets one pod per completion, whose log names the pod.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeCluster:
    def __init__(self, finish_after: int = 1, fail: dict[str, tuple[str, str]] | None = None):
        self.finish_after = finish_after
        self.fail = fail or {}  # job name -> (reason, message)
        self.requests: list[tuple[str, str, dict | None, int]] = []  # method, path, body, status
        self.objects: dict[tuple[str, str], dict] = {}  # (plural, name) -> object
        self.age: dict[str, int] = {}
        self.complete_when_created: dict[str, set[str]] = {}  # job -> Jobs already Complete at its creation
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeCluster:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(cfg))
        return path

    # ------------------------------------------------------------ what tests look at

    def created(self, plural: str) -> list[str]:
        """Names of the objects of this kind that were created, in order (refused creations left out)."""
        return [
            b["metadata"]["name"]
            for m, p, b, st in self.requests
            if m == "POST" and p.endswith("/" + plural) and st == 201
        ]

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.requests if m in ("POST", "PUT", "PATCH", "DELETE")]

    def job_state(self, name: str) -> str:
        job = self.objects[("jobs", name)]
        conds = {c["type"] for c in job["status"].get("conditions", [])}
        return "Complete" if "Complete" in conds else "Failed" if "Failed" in conds else "Running"

    # ------------------------------------------------------------ the API

    def _tick(self) -> None:
        for (plural, name), job in self.objects.items():
            if plural == "jobsets" and not job["status"]:
                self.age[name] = self.age.get(name, 0) + 1
                if self.age[name] >= self.finish_after:
                    job["status"] = {"terminalState": "Completed"}
                continue
            if plural != "jobs" or job["status"].get("conditions"):
                continue
            self.age[name] = self.age.get(name, 0) + 1
            if self.age[name] < self.finish_after:
                continue
            n = job["spec"].get("completions", 1)
            if name in self.fail:
                reason, message = self.fail[name]
                cond = {"type": "Failed", "status": "True", "reason": reason, "message": message}
                job["status"] = {"failed": 1, "conditions": [cond]}
            else:
                job["status"] = {"succeeded": n, "conditions": [{"type": "Complete", "status": "True"}]}

    def _pods(self, job: dict) -> list[dict]:
        tmpl = job["spec"]["template"]
        out = []
        for i in range(job["spec"].get("completions", 1)):
            name = f"{job['metadata']['name']}-{i}-x{i:04d}"
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": job["metadata"]["namespace"],
                        "labels": tmpl["metadata"]["labels"],
                        "creationTimestamp": job["metadata"]["creationTimestamp"],
                    },
                    "spec": {
                        "containers": [{"name": c["name"], "image": c["image"]} for c in tmpl["spec"]["containers"]]
                    },
                }
            )
        return out

    def handle(self, method: str, url: str, body: dict | None) -> tuple[int, object]:
        with self.lock:
            status, payload = self._route(method, url, body)
            self.requests.append((method, urlparse(url).path, body, status))
            return status, payload

    def _route(self, method: str, url: str, body: dict | None) -> tuple[int, object]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        selector = query.get("labelSelector", [None])[0]
        m = re.fullmatch(r"/(?:api/v1|apis/[\w.-]+/\w+)/namespaces/([\w-]+)/(\w+)(?:/([\w.-]+))?(?:/(\w+))?", path)
        if not m:
            return 404, _status(404, "NotFound", f"no route {path}")
        ns, plural, name, sub = m.groups()
        if method == "POST" and name is None:
            meta = body.setdefault("metadata", {})
            if "generateName" in meta and "name" not in meta:
                meta["name"] = meta["generateName"] + f"{len(self.objects):05d}"
            if (plural, meta["name"]) in self.objects:
                return 409, _status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
            meta.update({"namespace": ns, "resourceVersion": "1", "creationTimestamp": _now(), "uid": meta["name"]})
            if plural in ("jobs", "jobsets"):
                body["status"] = {}
                done = {n for (p, n) in self.objects if p == "jobs" and self.job_state(n) == "Complete"}
                self.complete_when_created[meta["name"]] = done
            self.objects[(plural, meta["name"])] = body
            return 201, body
        if method == "PUT" and name:
            if (plural, name) not in self.objects:
                return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
            body["metadata"]["resourceVersion"] = str(
                int(self.objects[(plural, name)]["metadata"]["resourceVersion"]) + 1
            )
            self.objects[(plural, name)] = body
            return 200, body
        if method == "GET" and plural == "pods" and sub == "log":
            tail = query.get("tailLines", [None])[0]
            lines = [f"{name} line {i} (container {query.get('container', ['?'])[0]})" for i in range(3)]
            return 200, "\n".join(lines[-int(tail) :] if tail else lines) + "\n"
        if method == "GET" and name:
            obj = self.objects.get((plural, name))
            return (200, obj) if obj else (404, _status(404, "NotFound", f'{plural} "{name}" not found'))
        if method == "GET":
            if plural in ("jobs", "jobsets"):
                self._tick()
            if plural == "pods":
                items = [p for (k, _), j in self.objects.items() if k == "jobs" for p in self._pods(j)]
            else:
                items = [o for (k, _), o in self.objects.items() if k == plural]
            items = [o for o in items if _matches(o["metadata"].get("labels", {}), selector)]
            kind = {"jobs": "JobList", "pods": "PodList"}.get(plural, "List")
            return 200, {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items}
        return 405, _status(405, "MethodNotAllowed", f"{method} {path}")

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, payload = fake.handle(self.command, self.path, body)
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):  # quiet
                pass

        return Handler


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
