"""The Job and JobSet controllers of the fake API server (tests/k8s/fake_api.py), as far as dorl relies on them.

Job controller: one pod per completion; each pod attempt ends with the next exit code scripted for its Job
(`FakeCluster.exits[job]`, then 0; "disrupted" is a pod preempted with condition DisruptionTarget), and a failed
pod is judged as the real controller judges it (podFailurePolicy: rules in order, the first match decides;
FailJob, Ignore, Count; no match counts) against backoffLimit or, per index, backoffLimitPerIndex, with the
real controller's condition reasons and messages. A pod whose envFrom names a missing Secret waits in
CreateContainerConfigError (as the kubelet leaves it), one whose image is in `bad_images` in that state; its
Job never gets further.

JobSet controller: one child Job `<jobset>-<replicatedJob>-0` labelled as JobSet labels it; on its failure the
failurePolicy rules are read in order (onJobFailureReasons, onJobFailureMessagePatterns as regular expressions),
the default action being RestartJobSet: FailJobSet, RestartJobSet (counted: past maxRestarts the JobSet fails)
or RestartJobSetAndIgnoreMaxRestarts (not counted), recreating the child Job.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Controllers:
    def __init__(self, fake):
        self.fake = fake
        self.age: dict[str, int] = {}
        self.serial: dict[str, int] = {}  # job -> pods made so far (their names' suffix)
        self.failed_index: dict[tuple[str, int], int] = {}

    # ------------------------------------------------------------ objects appearing

    def created(self, plural: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if plural == "jobs":
            obj["status"] = {}
            done = {n for (p, n) in self.fake.objects if p == "jobs" and self.fake.job_state(n) == "Complete"}
            self.fake.complete_when_created[name] = done
            for i in range(obj["spec"].get("completions", 1)):
                self._pod(obj, i)
            obj["status"]["active"] = obj["spec"].get("completions", 1)
        elif plural == "jobsets":
            obj["status"] = {"restarts": 0, "restartsCountTowardsMax": 0}
            done = {n for (p, n) in self.fake.objects if p == "jobs" and self.fake.job_state(n) == "Complete"}
            self.fake.complete_when_created[name] = done
            self._child(obj)

    def _child(self, js: dict) -> None:
        """The child Job of a JobSet's (one) replicated Job, labelled as the JobSet controller labels it."""
        [rj] = js["spec"]["replicatedJobs"]
        name = js["metadata"]["name"]
        extra = {
            "jobset.sigs.k8s.io/jobset-name": name,
            "jobset.sigs.k8s.io/replicatedjob-name": rj["name"],
            "jobset.sigs.k8s.io/restart-attempt": str(js["status"]["restarts"]),
        }
        template = rj["template"]
        spec = {**template["spec"], "template": dict(template["spec"]["template"])}
        pod_meta = dict(spec["template"].get("metadata", {}))
        pod_meta["labels"] = {**pod_meta.get("labels", {}), **extra}
        spec["template"]["metadata"] = pod_meta
        meta = {
            "name": f"{name}-{rj['name']}-0",
            "namespace": js["metadata"]["namespace"],
            "labels": {**template.get("metadata", {}).get("labels", {}), **extra},
            "creationTimestamp": _now(),
            "resourceVersion": "1",
        }
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}
        self._drop_job(meta["name"])
        self.fake.objects[("jobs", meta["name"])] = job
        self.created("jobs", job)

    def _drop_job(self, name: str) -> None:
        self.fake.objects.pop(("jobs", name), None)
        for key in [k for k, o in self.fake.objects.items() if k[0] == "pods" and _job_of(o) == name]:
            del self.fake.objects[key]
        self.age.pop(name, None)

    def _pod(self, job: dict, index: int) -> dict:
        name = job["metadata"]["name"]
        n = self.serial.get(name, 0)
        self.serial[name] = n + 1
        tmpl = job["spec"]["template"]
        labels = {**tmpl["metadata"]["labels"], "batch.kubernetes.io/job-name": name, "job-name": name}
        containers = tmpl["spec"]["containers"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{index}-x{n:04d}",
                "namespace": job["metadata"]["namespace"],
                "labels": labels,
                "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                "creationTimestamp": job["metadata"]["creationTimestamp"],
            },
            "spec": {"containers": [{"name": c["name"], "image": c["image"]} for c in containers]},
            "status": {"phase": "Pending"},
        }
        waiting = self._cannot_start(tmpl["spec"])
        if waiting:
            reason, message = waiting
            state = {"waiting": {"reason": reason, "message": message}}
            pod["status"]["containerStatuses"] = [
                {"name": c["name"], "image": c["image"], "ready": False, "restartCount": 0, "imageID": "",
                 "state": state} for c in containers
            ]  # fmt: skip
        else:
            pod["status"]["phase"] = "Running"
        self.fake.objects[("pods", pod["metadata"]["name"])] = pod
        return pod

    def _cannot_start(self, spec: dict) -> tuple[str, str] | None:
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            if c["image"] in self.fake.bad_images:
                reason = self.fake.bad_images[c["image"]]
                return reason, f'Back-off pulling image "{c["image"]}"'
            for src in c.get("envFrom", []):
                secret = src.get("secretRef", {}).get("name")
                if secret and ("secrets", secret) not in self.fake.objects:
                    return "CreateContainerConfigError", f'secret "{secret}" not found'
        return None

    # ------------------------------------------------------------ one step of every controller

    def tick(self) -> None:
        for (plural, name), obj in list(self.fake.objects.items()):
            if plural == "jobs" and not _finished(obj):
                self._job(name, obj)
        for (plural, _), obj in list(self.fake.objects.items()):
            if plural == "jobsets" and not obj["status"].get("terminalState"):
                self._jobset(obj)

    def _job(self, name: str, job: dict) -> None:
        pods = [p for (k, _), p in self.fake.objects.items() if k == "pods" and _job_of(p) == name]
        running = [p for p in pods if p["status"]["phase"] == "Running"]
        if not running:
            return  # waiting on something a person must fix (a missing Secret, a bad image)
        self.age[name] = self.age.get(name, 0) + 1
        if self.age[name] < self.fake.finish_after:
            return
        self.age[name] = 0
        if name in self.fake.fail:  # the outcome given outright
            reason, message = self.fake.fail[name]
            job["status"] = {"failed": 1, "conditions": [_cond("Failed", reason, message)]}
            return
        st = job["status"]
        for pod in running:
            index = int(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
            codes = self.fake.exits.get(name) or []
            code = codes.pop(0) if codes else 0
            if code == 0:
                pod["status"] = {"phase": "Succeeded"}
                st["succeeded"] = st.get("succeeded", 0) + 1
                continue
            self._fail_pod(pod, code)
            action, message = self._pod_failure_policy(job, pod, code)
            if action == "FailJob":
                self._finish(job, "Failed", "PodFailurePolicy", message)
                return
            if action != "Ignore":
                st["failed"] = st.get("failed", 0) + 1
                if "backoffLimitPerIndex" in job["spec"]:
                    key = (name, index)
                    self.failed_index[key] = self.failed_index.get(key, 0) + 1
                    if self.failed_index[key] > job["spec"]["backoffLimitPerIndex"]:
                        self._finish(job, "Failed", "FailedIndexes", "Job has failed indexes")
                        return
                elif st["failed"] > job["spec"].get("backoffLimit", 6):
                    self._finish(job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                    return
            self._pod(job, index)  # the replacement
        if st.get("succeeded", 0) >= job["spec"].get("completions", 1):
            self._finish(job, "Complete", None, None)

    def _fail_pod(self, pod: dict, code) -> None:
        exit_code = 143 if code == "disrupted" else code
        name = pod["spec"]["containers"][0]["name"]
        pod["status"] = {
            "phase": "Failed",
            "containerStatuses": [{"name": name, "state": {"terminated": {"exitCode": exit_code}}}],
        }
        if code == "disrupted":
            pod["status"]["conditions"] = [
                {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
            ]

    def _pod_failure_policy(self, job: dict, pod: dict, code) -> tuple[str, str]:
        """The action of the first matching rule (Count when none matches), and the Job controller's message."""
        ns, pname = pod["metadata"]["namespace"], pod["metadata"]["name"]
        conditions = {(c["type"], c["status"]) for c in pod["status"].get("conditions", [])}
        [terminated] = pod["status"]["containerStatuses"]
        exit_code = terminated["state"]["terminated"]["exitCode"]
        for i, rule in enumerate(job["spec"].get("podFailurePolicy", {}).get("rules", [])):
            on_exit = rule.get("onExitCodes")
            if on_exit:
                if on_exit.get("containerName", terminated["name"]) != terminated["name"]:
                    continue
                hit = exit_code in on_exit["values"]
                if hit == (on_exit["operator"] == "In"):
                    msg = (
                        f"Container {terminated['name']} for pod {ns}/{pname} failed with exit code {exit_code} "
                        f"matching {rule['action']} rule at index {i}"
                    )
                    return rule["action"], msg
            for cond in rule.get("onPodConditions", []):
                if (cond["type"], cond.get("status", "True")) in conditions:
                    return rule[
                        "action"
                    ], f"Pod {ns}/{pname} has condition {cond['type']} matching {rule['action']} rule at index {i}"
        return "Count", ""

    def _finish(self, job: dict, kind: str, reason, message) -> None:
        job["status"]["active"] = 0
        job["status"].setdefault("conditions", []).append(_cond(kind, reason, message))
        for (k, _), p in self.fake.objects.items():
            if k == "pods" and _job_of(p) == job["metadata"]["name"] and p["status"]["phase"] == "Running":
                p["status"] = {"phase": "Failed"}  # the rest of the Job's pods are terminated

    def _jobset(self, js: dict) -> None:
        name = js["metadata"]["name"]
        child = next(
            (o for (k, _), o in self.fake.objects.items()
             if k == "jobs" and o["metadata"]["labels"].get("jobset.sigs.k8s.io/jobset-name") == name),
            None,
        )  # fmt: skip
        if child is None or not _finished(child):
            return
        st = js["status"]
        cond = next(c for c in child["status"]["conditions"] if c["status"] == "True")
        if cond["type"] == "Complete":
            st["terminalState"] = "Completed"
            st["conditions"] = [_cond("Completed", "AllJobsCompleted", "jobset completed successfully")]
            return
        policy = js["spec"].get("failurePolicy", {})
        action, rule_name = "RestartJobSet", None
        for rule in policy.get("rules", []):
            reasons, patterns = rule.get("onJobFailureReasons"), rule.get("onJobFailureMessagePatterns")
            if reasons and cond["reason"] not in reasons:
                continue
            if patterns and not any(re.search(p, cond["message"] or "") for p in patterns):
                continue
            action, rule_name = rule["action"], rule["name"]
            break
        if action == "FailJobSet":
            self._fail_jobset(
                js, "FailedJobs", f"jobset failed due to failure policy rule {rule_name}: {cond['message']}"
            )
            return
        if action == "RestartJobSet":
            if st["restartsCountTowardsMax"] >= policy.get("maxRestarts", 0):
                self._fail_jobset(js, "ReachedMaxRestarts", "jobset failed due to reaching max number of restarts")
                return
            st["restartsCountTowardsMax"] += 1
        st["restarts"] += 1
        self._child(js)

    def _fail_jobset(self, js: dict, reason: str, message: str) -> None:
        js["status"]["terminalState"] = "Failed"
        js["status"]["conditions"] = [_cond("Failed", reason, message)]


def _cond(kind: str, reason, message) -> dict:
    out = {"type": kind, "status": "True"}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def _job_of(pod: dict) -> str | None:
    return pod["metadata"]["labels"].get("batch.kubernetes.io/job-name")


def _finished(job: dict) -> bool:
    return any(c["type"] in ("Complete", "Failed") for c in job.get("status", {}).get("conditions", []))
