"""deploy/: the Kubernetes manifests, checked as far as this machine can (no cluster, no container
engine, no image registry here).

- Every manifest validates against Kubernetes' own schemas in strict mode, offline
  (kubernetes-validate), as do the pod templates inside the KubeRay RayJob (its CRD's schema
  cannot be had offline).
- What the schemas miss and the API server or the running pods would catch: selectors match the
  pods' labels, every ``$(VAR)`` is defined where Kubernetes expands it, the broker URL names the
  Redis Service and its port, the Job's restart policy, the workers' concurrency and shutdown.
- ``kubectl kustomize`` renders the kustomization (where kubectl exists).
- "Pods as processes": each container's command and environment, taken from the manifests (the
  Secret's value, the pod's name and CPU limit filled in as the kubelet would, the Service's name
  pointed at 127.0.0.1), run here against a real Redis; one worker "pod" killed mid-run, and the
  Job still prints the exact count. This proves the commands, the variables and the fault
  handling; not the image build, DNS, scheduling or probes.
"""

import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
VERSIONS = ("1.29.0", "1.37.0")  # the oldest Kubernetes still common, and the newest schemas
PI_3E10 = 23561968945  # `pi` over [0, 3e10), seed 0 (the Job's count): numba and native agree
_VAR = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")  # $(VAR), not $$(VAR)


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization() -> dict:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


def _manifests() -> list[dict]:
    """Every object the kustomization deploys, as written."""
    return [doc for name in _kustomization()["resources"] for doc in _documents(KUBERNETES / name)]


def _find(kind: str, name: str) -> dict:
    return next(doc for doc in _manifests()
                if doc["kind"] == kind and doc["metadata"]["name"] == name)


def _pod_specs() -> list[tuple[str, dict]]:
    """(owner, pod spec) of every workload object."""
    return [(doc["metadata"]["name"], doc["spec"]["template"]["spec"])
            for doc in _manifests() if doc["kind"] in ("Deployment", "Job")]


def _containers() -> list[tuple[str, dict]]:
    return [(owner, container) for owner, spec in _pod_specs() for container in spec["containers"]]


# --- what the schemas check ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version):
    validate = pytest.importorskip("kubernetes_validate").validate
    objects = _manifests()
    assert {doc["kind"] for doc in objects} == {"Deployment", "Service", "Job"}
    for doc in objects:
        validate(doc, version, strict=True)


def test_the_strict_schemas_catch_a_misspelt_field():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    job = _find("Job", "partally-count")
    wrong = {**job, "spec": {**job["spec"], "parallelizm": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, VERSIONS[-1], strict=True)


def test_the_rayjob_pods_validate_strictly():
    validate = pytest.importorskip("kubernetes_validate").validate
    (job,) = _documents(KUBERNETES / "ray" / "rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert "--backend ray" in job["spec"]["entrypoint"]
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"],
                 *(group["template"] for group in cluster["workerGroupSpecs"])]
    for k, template in enumerate(templates):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"ray-{k}"}, **template}
        validate(pod, VERSIONS[-1], strict=True)


# --- what the schemas miss ---------------------------------------------------------------------


def test_selectors_match_the_pods_labels():
    deployments = [doc for doc in _manifests() if doc["kind"] == "Deployment"]
    for deployment in deployments:
        wanted = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert wanted.items() <= labels.items(), deployment["metadata"]["name"]
    for service in (doc for doc in _manifests() if doc["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        pods = [d for d in deployments if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(pods) == 1, f"Service {service['metadata']['name']} selects {len(pods)} Deployments"
        ports = {port["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"]
                 for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports or isinstance(port["targetPort"], int)


def test_every_variable_is_defined_where_kubernetes_expands_it():
    """$(VAR) in command and args: any of the container's env; in an env value: one before it
    (Kubernetes leaves any other reference as it is, silently)."""
    for owner, container in _containers():
        names = [item["name"] for item in container.get("env", [])]
        for text in [*container.get("command", []), *container.get("args", [])]:
            for name in _VAR.findall(text):
                assert name in names, f"{owner}: $({name}) is not in its env"
        for k, item in enumerate(container.get("env", [])):
            for name in _VAR.findall(item.get("value", "")):
                assert name in names[:k], f"{owner}: $({name}) is not defined before {item['name']}"


def test_the_broker_url_names_the_redis_service_and_port():
    services = {(doc["metadata"]["name"], port["port"])
                for doc in _manifests() if doc["kind"] == "Service" for port in doc["spec"]["ports"]}
    urls = [(owner, item["value"]) for owner, container in _containers()
            for item in container.get("env", []) if item["name"] == "CELERY_BROKER_URL"]
    assert {owner for owner, _ in urls} == {"partally-celery-worker", "partally-count"}
    for owner, url in urls:
        found = re.fullmatch(r"redis://:\$\(REDIS_PASSWORD\)@([a-z0-9-]+):(\d+)/\d+", url)
        assert found, f"{owner}: {url}"
        assert (found[1], int(found[2])) in services, f"{owner}: no Service {found[1]}:{found[2]}"


def test_the_job_and_the_workers_are_set_up_as_the_backend_needs():
    job = _find("Job", "partally-count")["spec"]
    assert job["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    (count,) = job["template"]["spec"]["containers"]
    assert count["command"][:2] == ["partally", "compute"] and "celery" in count["command"]
    worker = _find("Deployment", "partally-celery-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= 30  # a warm shutdown finishes its chunks
    (container,) = worker["containers"]
    assert container["command"][:4] == ["celery", "-A", "partally.celery", "worker"]
    assert "--concurrency=$(CPUS)" in container["command"]
    cpus = next(item for item in container["env"] if item["name"] == "CPUS")["valueFrom"]
    assert cpus["resourceFieldRef"] == {"containerName": container["name"],
                                        "resource": "limits.cpu", "divisor": "1"}
    resources = container["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]


def test_the_image_is_the_one_the_dockerfile_builds():
    images = {container["image"] for _, container in _containers() if "redis" not in container["image"]}
    assert images == {image["name"] for image in _kustomization()["images"]} == {"partally"}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ARG EXTRAS=celery" in dockerfile and "[${EXTRAS}]" in dockerfile


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here")
def test_kubectl_kustomize_renders_it():
    done = subprocess.run(["kubectl", "kustomize", str(KUBERNETES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    names = sorted((doc["kind"], doc["metadata"]["name"]) for doc in rendered)
    assert names == sorted((doc["kind"], doc["metadata"]["name"]) for doc in _manifests())
    tag = _kustomization()["images"][0]["newTag"]
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "partally"
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"] in (f"partally:{tag}", "redis:7.2")


# --- pods as processes -------------------------------------------------------------------------


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names replaced, others left, $$ escapes."""
    text = _VAR.sub(lambda found: env.get(found[1], found[0]), text)
    return text.replace("$$(", "$(")


class _Kubelet:
    """What the kubelet would give a container here: its env, with the Secret's value, the pod's
    name and (each pod as one process on this 2-core machine) a CPU limit of 1; Service names
    pointing at the local Redis."""

    def __init__(self, password: str, redis_port: int) -> None:
        self.password, self.redis_port = password, redis_port

    def env(self, container: dict, pod: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            if "value" in item:
                value = _expand(item["value"], env).replace(
                    "@partally-redis:6379/", f"@127.0.0.1:{self.redis_port}/")
            elif "secretKeyRef" in source:
                assert source["secretKeyRef"] == {"name": "partally-redis", "key": "password"}
                value = self.password
            elif "resourceFieldRef" in source:
                limit = container["resources"]["limits"][source["resourceFieldRef"]["resource"][7:]]
                assert math.ceil(float(limit)) >= 1
                value = "1"
            else:
                assert source["fieldRef"]["fieldPath"] == "metadata.name"
                value = pod
            env[item["name"]] = value
        return env

    def command(self, container: dict, env: dict[str, str]) -> list[str]:
        words = [_expand(word, env) for word in [*container["command"], *container.get("args", [])]]
        here = Path(sys.executable).with_name(words[0])  # this Python's `celery` / `partally`
        return [str(here) if here.exists() else words[0], *words[1:]]


@pytest.mark.celery
@pytest.mark.timeout(240)
def test_pods_as_processes_count_exactly_with_a_worker_pod_killed():
    from celery_cluster import VISIBILITY_S, CeleryCluster, cpu_ticks, missing

    why = missing()
    if why:
        pytest.skip(why)
    import secrets

    password = secrets.token_hex(16)
    redis_container = _find("Deployment", "partally-redis")["spec"]["template"]["spec"]["containers"][0]
    redis_env = {"REDIS_PASSWORD": password}
    assert redis_container["command"] == ["redis-server"]
    redis_args = [_expand(word, redis_env) for word in redis_container["args"]]
    with CeleryCluster(redis_password=password, redis_args=redis_args) as cluster:
        cluster.redis.start()
        kubelet = _Kubelet(password, cluster.redis.port)
        deployment = _find("Deployment", "partally-celery-worker")
        (worker,) = deployment["spec"]["template"]["spec"]["containers"]
        base = cluster.env()  # PATH, the tests' cache folder ...
        for k in range(deployment["spec"]["replicas"]):
            pod = f"partally-celery-worker-{k}"
            env = {**base, **kubelet.env(worker, pod),
                   "PARTALLY_CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_S)}  # test time only
            cluster.add_worker(kubelet.command(worker, env), env, name=f"worker@{pod}")
        cluster.wait_for_workers(60)

        (count,) = _find("Job", "partally-count")["spec"]["template"]["spec"]["containers"]
        env = {**base, **kubelet.env(count, "partally-count-x1")}
        ticks = {pid: cpu_ticks(pid) for w in cluster.workers for pid in w.pool()}
        job = subprocess.Popen(kubelet.command(count, env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            victim = None
            while victim is None:  # a worker pod running a chunk: it is lost
                assert job.poll() is None and time.monotonic() < deadline, job.stderr.read()
                time.sleep(0.02)
                victim = next((w for w in cluster.workers for pid in w.pool()
                               if cpu_ticks(pid) > ticks.get(pid, 0) + 1), None)
            victim.kill()
            stdout, stderr = job.communicate(timeout=120)
        finally:
            job.kill()
    assert job.returncode == 0, stderr[-3000:]
    assert stdout.split()[0] == str(PI_3E10), stdout
    assert "backend 'celery'" in stderr  # -v: what ran
    assert cluster.pids() == []
