"""A fake Kubernetes API server on 127.0.0.1, for testing the real kubernetes client at its HTTP boundary, honest
about what dorl relies on:

- errors where the real server gives them: 404 (no such object, namespace or CRD), 409 AlreadyExists, 403 when
  the caller's Role lacks the verb (`rules`: RBAC rules as a Role holds them; None: allowed everything), and
  scripted 429/5xx/... per test (`script`), with Retry-After when asked;
- SelfSubjectAccessReviews answered from the same rules, CRDs readable under apiextensions.k8s.io;
- creates with dryRun=All (nothing stored) and fieldValidation=Strict: a custom resource is checked against its
  CRD's schema (an unknown field is a 400 "strict decoding error", a value outside an enum a 422), a core kind
  against the Kubernetes 1.32 schema (kubernetes-validate); without Strict an unknown field of a custom resource
  is dropped, as a real server prunes it;
- the Job and JobSet controllers (tests/k8s/fake_controllers.py): pods per Job and per JobSet, their exit codes
  scripted per Job (`exits`), podFailurePolicy and JobSet failurePolicy decisions, a pod waiting in
  CreateContainerConfigError while the Secret its envFrom names is missing.

Each list of Jobs or JobSets advances the controllers one step (`tick`): a pod finishes after `finish_after` steps.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml

from tests.k8s.fake_controllers import Controllers

OFFICIAL = Path(__file__).parent / "official"
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
CORE_KINDS = {"ConfigMap", "Job", "Secret", "ServiceAccount", "Pod"}
NAMESPACED = re.compile(r"/(?:api/(v1)|apis/([\w.-]+)/(\w+))/namespaces/([\w-]+)/(\w+)(?:/([\w.-]+))?(?:/(\w+))?")
CLUSTER = re.compile(r"/(?:api/(v1)|apis/([\w.-]+)/(\w+))/(\w+)(?:/([\w.-]+))?")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, msg: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "reason": reason, "code": code}


def matches(labels: dict, selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


# ---------------------------------------------------------------- CRDs


def jobset_crd() -> dict:
    """The JobSet CRD of JobSet >= v0.10 (tests/k8s/official, unmodified)."""
    return yaml.load(gzip.decompress((OFFICIAL / "jobset-crd.yaml.gz").read_bytes()), Loader=yaml.CSafeLoader)


def old_jobset_crd(blocking_recreate: bool = False) -> dict:
    """The same CRD as an older JobSet had it: no onJobFailureMessagePatterns (before v0.10), and no
    BlockingRecreate (before v0.7) unless asked."""
    crd = jobset_crd()
    policy = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    policy = policy["failurePolicy"]["properties"]
    del policy["rules"]["items"]["properties"]["onJobFailureMessagePatterns"]
    policy["restartStrategy"]["enum"] = ["Recreate", "BlockingRecreate"] if blocking_recreate else ["Recreate"]
    return crd


def open_crd(plural: str, group: str, kind: str, versions: list[str]) -> dict:
    """A CRD whose schema keeps any field (Argo's and Kueue's, as far as dorl is concerned)."""
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"plural": plural, "kind": kind},
            "scope": "Namespaced",
            "versions": [
                {"name": v, "served": True, "storage": i == 0, "schema": schema} for i, v in enumerate(versions)
            ],
        },
    }


def default_crds() -> list[dict]:
    return [
        jobset_crd(),
        open_crd("workflows", "argoproj.io", "Workflow", ["v1alpha1"]),
        open_crd("workflowtemplates", "argoproj.io", "WorkflowTemplate", ["v1alpha1"]),
        open_crd("localqueues", "kueue.x-k8s.io", "LocalQueue", ["v1beta1"]),
    ]


# ---------------------------------------------------------------- schema checks (strict validation, pruning)


def _walk(obj, schema: dict, path: str, unknown: list[str], bad: list[str], prune: bool) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(schema, dict):
        return
    if isinstance(obj, dict) and "properties" in schema:
        for key in list(obj):
            sub = schema["properties"].get(key)
            where = f"{path}.{key}" if path else key
            if sub is None:
                if path == "" and key in ("apiVersion", "kind", "metadata", "status"):
                    continue
                unknown.append(where)
                if prune:
                    del obj[key]
                continue
            _walk(obj[key], sub, where, unknown, bad, prune)
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            _walk(item, schema["items"], f"{path}[{i}]", unknown, bad, prune)
    elif "enum" in schema and obj not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        bad.append(f"{path}: Unsupported value: {json.dumps(obj)}: supported values: {allowed}")


class FakeCluster:
    def __init__(
        self,
        finish_after: int = 1,
        fail: dict[str, tuple[str, str]] | None = None,
        *,
        rules: list[dict] | None = None,
        crds: list[dict] | None = None,
        namespaces: tuple[str, ...] = ("dorl",),
    ):
        self.finish_after = finish_after
        self.fail = fail or {}  # job name -> (reason, message): the Job fails so, whatever its pods do
        self.exits: dict[str, list] = {}  # job name -> exit code of each pod attempt (then 0); "disrupted"
        self.bad_images: dict[str, str] = {}  # image -> waiting reason (ErrImagePull, ImagePullBackOff...)
        self.rules = rules  # the caller's RBAC rules; None: everything allowed
        self.namespaces = set(namespaces)
        self.requests: list[tuple[str, str, dict | None, int]] = []  # method, path, body, status
        self.objects: dict[tuple[str, str], dict] = {}  # (plural, name) -> object
        self.complete_when_created: dict[str, set[str]] = {}  # job -> Jobs already Complete at its creation
        self.scripted: list[list] = []  # [method, path regex, [statuses...], headers]
        self.lock = threading.Lock()
        self.controllers = Controllers(self)
        for crd in default_crds() if crds is None else crds:
            self.objects[("customresourcedefinitions", crd["metadata"]["name"])] = crd
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

    # ------------------------------------------------------------ what tests set up and look at

    def script(self, method: str, path: str, *statuses: int, retry_after: int | None = None) -> None:
        """The next requests matching METHOD and the PATH regex get these statuses, in order (then the real
        answer). 429 and 503 carry Retry-After when given."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.scripted.append([method, re.compile(path), list(statuses), headers])

    def add(self, obj: dict) -> None:
        """An object that exists before the test (a Secret, a ServiceAccount, a LocalQueue)."""
        plural = {"Secret": "secrets", "ServiceAccount": "serviceaccounts", "LocalQueue": "localqueues"}[obj["kind"]]
        obj.setdefault("metadata", {}).setdefault("namespace", "dorl")
        self.objects[(plural, obj["metadata"]["name"])] = obj

    def created(self, plural: str) -> list[str]:
        """Names of the objects of this kind that were created (not dry runs), in order."""
        return [
            b["metadata"]["name"]
            for m, p, b, st in self.requests
            if m == "POST" and p.endswith("/" + plural) and st == 201 and not b.get("_dry")
        ]

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, b, _ in self.requests if m in ("POST", "PUT", "PATCH", "DELETE") and not _dry(b)]

    def job_state(self, name: str) -> str:
        job = self.objects[("jobs", name)]
        conds = {c["type"] for c in job["status"].get("conditions", [])}
        return "Complete" if "Complete" in conds else "Failed" if "Failed" in conds else "Running"

    def tick(self, n: int = 1) -> None:
        with self.lock:
            for _ in range(n):
                self.controllers.tick()

    # ------------------------------------------------------------ the API

    def handle(self, method: str, url: str, body: dict | None) -> tuple[int, object, dict]:
        with self.lock:
            code, payload, headers = self._route(method, url, body)
            record = dict(body, _dry=True) if isinstance(body, dict) and "dryRun=All" in url else body
            self.requests.append((method, urlparse(url).path, record, code))
            return code, payload, headers

    def _scripted(self, method: str, path: str):
        for entry in self.scripted:
            m, pattern, statuses, headers = entry
            if m == method and statuses and pattern.search(path):
                code = statuses.pop(0)
                return code, status(code, "Scripted", f"scripted {code}"), headers
        return None

    def _route(self, method: str, url: str, body: dict | None) -> tuple[int, object, dict]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        got = self._scripted(method, path)
        if got:
            return got
        m = NAMESPACED.fullmatch(path)
        if m:
            core, group, version, ns, plural, name, sub = m.groups()
        elif c := CLUSTER.fullmatch(path):
            core, group, version, plural, name = c.groups()
            ns, sub = None, None
        else:
            return 404, status(404, "NotFound", f"no route {path}"), {}
        group = "" if core else group
        if plural == "selfsubjectaccessreviews":
            attrs = body["spec"]["resourceAttributes"]
            resource = attrs["resource"] + ("/" + attrs["subresource"] if attrs.get("subresource") else "")
            allowed = self.allowed(attrs["verb"], attrs.get("group", ""), resource, attrs.get("name"))
            return 201, {**body, "status": {"allowed": allowed}}, {}
        verb = VERBS.get(method) or ("delete" if method == "DELETE" else "get" if name else "list")
        resource = plural + (f"/{sub}" if sub else "")
        if not self.allowed(verb, group, resource, name):
            scope = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            shown = f"{plural}.{group}" if group else plural
            msg = f'{shown} is forbidden: User "fake" cannot {verb} resource "{plural}" in API group "{group}"{scope}'
            return 403, status(403, "Forbidden", msg), {}
        crd = self._crd(group, plural) if group not in ("", "batch", "apiextensions.k8s.io") else None
        if group not in ("", "batch", "apiextensions.k8s.io") and crd is None:
            return 404, status(404, "NotFound", "the server could not find the requested resource"), {}
        if method == "POST" and name is None:
            return self._create(ns, plural, body, crd, query)
        if method == "PUT" and name:
            if (plural, name) not in self.objects:
                return 404, status(404, "NotFound", f'{plural} "{name}" not found'), {}
            old = self.objects[(plural, name)]["metadata"]["resourceVersion"]
            body["metadata"]["resourceVersion"] = str(int(old) + 1)
            self.objects[(plural, name)] = body
            return 200, body, {}
        if method == "DELETE" and name:
            obj = self.objects.pop((plural, name), None)
            return (200, obj, {}) if obj else (404, status(404, "NotFound", f'{plural} "{name}" not found'), {})
        if method == "GET" and plural == "pods" and sub == "log":
            tail = query.get("tailLines", [None])[0]
            lines = [f"{name} line {i} (container {query.get('container', ['?'])[0]})" for i in range(3)]
            return 200, "\n".join(lines[-int(tail) :] if tail else lines) + "\n", {}
        if method == "GET" and name:
            obj = self.objects.get((plural, name))
            return (200, obj, {}) if obj else (404, status(404, "NotFound", f'{plural} "{name}" not found'), {})
        if method == "GET":
            if plural in ("jobs", "jobsets"):
                self.controllers.tick()
            selector = query.get("labelSelector", [None])[0]
            items = [o for (k, _), o in self.objects.items() if k == plural]
            items = [o for o in items if matches(o["metadata"].get("labels", {}), selector)]
            kind = {"jobs": "JobList", "pods": "PodList"}.get(plural, "List")
            return 200, {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items}, {}
        return 405, status(405, "MethodNotAllowed", f"{method} {path}"), {}

    def allowed(self, verb: str, group: str, resource: str, name: str | None) -> bool:
        if self.rules is None:
            return True
        for rule in self.rules:
            names = rule.get("resourceNames")
            if (
                (group in rule["apiGroups"] or "*" in rule["apiGroups"])
                and (resource in rule["resources"] or "*" in rule["resources"])
                and (verb in rule["verbs"] or "*" in rule["verbs"])
                and (not names or name in names)
            ):
                return True
        return False

    def _crd(self, group: str, plural: str) -> dict | None:
        return self.objects.get(("customresourcedefinitions", f"{plural}.{group}"))

    def _create(self, ns: str | None, plural: str, body: dict, crd: dict | None, query: dict):
        meta = body.setdefault("metadata", {})
        if ns is not None and ns not in self.namespaces:
            return 404, status(404, "NotFound", f'namespaces "{ns}" not found'), {}
        if "generateName" in meta and "name" not in meta:
            meta["name"] = meta["generateName"] + f"{len(self.objects):05d}"
        dry = query.get("dryRun") == ["All"]
        strict = query.get("fieldValidation") == ["Strict"]
        invalid = self._validate(body, crd, strict, prune=not dry)
        if invalid:
            return invalid
        if (plural, meta["name"]) in self.objects:
            return 409, status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists'), {}
        if dry:
            return 201, body, {}
        meta.update({"namespace": ns, "resourceVersion": "1", "creationTimestamp": now(), "uid": meta["name"]})
        self.objects[(plural, meta["name"])] = body
        self.controllers.created(plural, body)
        return 201, body, {}

    def _validate(self, body: dict, crd: dict | None, strict: bool, prune: bool):
        """A 400/422 answer for an object the real server would refuse, else None (a custom resource's unknown
        fields pruned when it is stored)."""
        kind, name = body.get("kind"), body["metadata"].get("name")
        if crd is not None:
            version = body["apiVersion"].split("/")[-1]
            served = next((v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")), None)
            if served is None:
                return 404, status(404, "NotFound", "the server could not find the requested resource"), {}
            unknown: list[str] = []
            bad: list[str] = []
            target = body if prune and not strict else copy.deepcopy(body)
            _walk(target, served["schema"]["openAPIV3Schema"], "", unknown, bad, prune=True)
            if strict and unknown:
                msg = "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
                return 400, status(400, "BadRequest", msg), {}
            if bad:
                group = crd["spec"]["group"]
                msg = f'{kind}.{group} "{name}" is invalid: ' + "; ".join(bad)
                return 422, status(422, "Invalid", msg), {}
            return None
        if strict and kind in ("Job", "ConfigMap"):
            import kubernetes_validate

            try:
                kubernetes_validate.validate(body, "1.32.0", strict=True)
            except kubernetes_validate.ValidationError as e:
                return 422, status(422, "Invalid", f'{kind} "{name}" is invalid: {e.message}'), {}
        return None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                code, payload, headers = fake.handle(self.command, self.path, body)
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):  # quiet
                pass

        return Handler


def _dry(body) -> bool:
    return isinstance(body, dict) and body.get("_dry", False)
