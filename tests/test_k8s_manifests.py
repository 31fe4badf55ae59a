"""k8s/ checked offline: KubeRay manifests against KubeRay's CRD schemas, strictly; core objects
structurally; and the references between the manifests (secrets, services, ports, image,
entry point, mounted config, QoS).

How strict, and where the check is weaker than an API server:
- RayCluster and RayJob are validated against `openAPIV3Schema` of the v1 version in
  tests/data/kuberay/ (KubeRay v1.7 line), with `additionalProperties: false` added to every
  object schema that lists `properties` and does not preserve unknown fields, so a typo is an
  error rather than a field the API server silently prunes. These CRDs inline every embedded
  Kubernetes type (pod templates down to each container field, the head Service), so the
  strictness reaches into them; only the top-level `metadata` is free-form in the CRD (the API
  server checks ObjectMeta itself), and is checked here by hand. CEL rules
  (`x-kubernetes-validations`) and the operator's own checks are not evaluated.
- The Kubernetes core schemas are not available offline. The Redis Services are validated
  against the core/v1 Service schema that the RayCluster CRD embeds (`headService`), the
  StatefulSet's pod template against the embedded PodTemplateSpec and its claim templates
  against the embedded PVC template (`ephemeral.volumeClaimTemplate`), all strict as above.
  The StatefulSet's own fields, Secrets and ConfigMaps are checked against small hand-written
  schemas below: the fields those kinds have in apps/v1 and core/v1, types and required
  fields, not every format rule an API server applies.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from hft_ray.cli import build_parser
from hft_ray.config import CcxtVenueConfig, HftConfig, parse_config_text

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
CRDS = Path(__file__).resolve().parent / "data" / "kuberay"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
KUBERAY_VERSION = "v1"
WORKER_PORTS = range(10002, 20000)

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


# --- loading -------------------------------------------------------------------------------


@functools.cache
def _documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return tuple(docs)


def manifests(kind: str | None = None) -> list[dict[str, Any]]:
    """Every manifest in k8s/ (of `kind`), as a fresh copy a test may change."""
    return [copy.deepcopy(d) for _, d in _documents() if kind is None or d.get("kind") == kind]


def the(kind: str) -> dict[str, Any]:
    found = manifests(kind)
    assert len(found) == 1, f"expected one {kind} in k8s/, found {len(found)}"
    return found[0]


def named(kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests(kind) if m["metadata"]["name"] == name]
    assert found, f"no {kind} named {name!r} in k8s/"
    return found[0]


def make_strict(node: Any) -> Any:
    """The schema with `additionalProperties: false` wherever an object lists its properties
    (and does not preserve unknown fields), and OpenAPI's `nullable` as JSON Schema's null."""
    if isinstance(node, list):
        return [make_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: make_strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = make_strict(value)
        else:
            out[key] = value
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _crd(kind: str) -> dict[str, Any]:
    # libyaml's loader when present: the CRDs are 2.3 MB of YAML.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd: dict[str, Any] = yaml.load((CRDS / CRD_FILES[kind]).read_text(), Loader=loader)
    return crd


@functools.cache
def crd_schema(kind: str, strict: bool = True) -> dict[str, Any]:
    """The CRD's v1 schema (made strict); cached, so callers must not change it."""
    crd = _crd(kind)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == KUBERAY_VERSION]
    schema = version["schema"]["openAPIV3Schema"]
    strict_schema: dict[str, Any] = make_strict(schema) if strict else schema
    return strict_schema


def api_version(kind: str) -> str:
    return f"{_crd(kind)['spec']['group']}/{KUBERAY_VERSION}"


def embedded(path: str) -> dict[str, Any]:
    """A core Kubernetes schema the RayCluster CRD inlines, at a dotted path under `spec`."""
    node = crd_schema("RayCluster")["properties"]["spec"]
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(instance)
    )


# --- walking -------------------------------------------------------------------------------


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a manifest, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def ray_groups(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group name, group spec) for the head (named `head`) and every worker group."""
    spec = cluster["spec"]
    groups = [("head", spec["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
    return groups


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    # KubeRay runs Ray in the first container of a group's pod template.
    container: dict[str, Any] = group["template"]["spec"]["containers"][0]
    return container


def all_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def secret_keys() -> dict[str, set[str]]:
    return {
        s["metadata"]["name"]: set(s.get("data", {})) | set(s.get("stringData", {}))
        for s in manifests("Secret")
    }


def env_from_secrets(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Environment variable -> (secret, key) for every variable a container takes from one."""
    out = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            out[var["name"]] = (ref["name"], ref["key"])
    return out


def configmap_configs() -> dict[str, HftConfig]:
    """Every hft_ray config in a ConfigMap of k8s/, by `<configmap>/<key>`."""
    out = {}
    for cm in manifests("ConfigMap"):
        for key, text in cm.get("data", {}).items():
            if key.endswith((".yaml", ".yml")):
                source = f"{cm['metadata']['name']}/{key}"
                out[source] = parse_config_text(text, source)
    return out


def cpu_cores(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def port_number(port: dict[str, Any], containers: list[dict[str, Any]]) -> int:
    """A Service port's target as a number, resolving a named targetPort in `containers`."""
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    numbers = [p["containerPort"] for c in containers for p in c["ports"] if p["name"] == target]
    assert len(numbers) == 1, f"targetPort {target!r} names no single container port"
    return int(numbers[0])


# --- hand-written schemas for core objects (see the module docstring) ----------------------

OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
        "namespace": {"type": "string", "pattern": DNS1035_LABEL},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE},
        },
        "annotations": STRING_MAP,
    },
}
SECRET_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "Secret"},
        "metadata": OBJECT_META,
        "type": {"type": "string"},
        "immutable": {"type": "boolean"},
        "data": {
            "type": "object",
            "propertyNames": {"pattern": r"^[-._a-zA-Z0-9]+$"},
            "additionalProperties": {"type": "string", "pattern": r"^[A-Za-z0-9+/]*={0,2}$"},
        },
        "stringData": {
            "type": "object",
            "propertyNames": {"pattern": r"^[-._a-zA-Z0-9]+$"},
            "additionalProperties": {"type": "string"},
        },
    },
}
CONFIGMAP_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "ConfigMap"},
        "metadata": OBJECT_META,
        "immutable": {"type": "boolean"},
        "data": {
            "type": "object",
            "propertyNames": {"pattern": r"^[-._a-zA-Z0-9]+$"},
            "additionalProperties": {"type": "string"},
        },
        "binaryData": STRING_MAP,
    },
}
# apps/v1 StatefulSetSpec's fields; the template and claim templates are checked against the
# schemas the RayCluster CRD embeds.
STATEFULSET_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "apps/v1"},
        "kind": {"const": "StatefulSet"},
        "metadata": OBJECT_META,
        "spec": {
            "type": "object",
            "required": ["selector", "template"],
            "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": STRING_MAP,
                        "matchExpressions": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "template": {"type": "object"},
                "volumeClaimTemplates": {"type": "array", "items": {"type": "object"}},
                "serviceName": {"type": "string", "pattern": DNS1035_LABEL},
                "podManagementPolicy": {"enum": ["OrderedReady", "Parallel"]},
                "updateStrategy": {"type": "object"},
                "revisionHistoryLimit": {"type": "integer", "minimum": 0},
                "minReadySeconds": {"type": "integer", "minimum": 0},
                "persistentVolumeClaimRetentionPolicy": {"type": "object"},
                "ordinals": {"type": "object"},
            },
        },
    },
}


# --- schema validation ---------------------------------------------------------------------

KNOWN_KINDS = {
    ("ray.io/v1", "RayCluster"),
    ("ray.io/v1", "RayJob"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("apps/v1", "StatefulSet"),
}


def test_k8s_holds_every_part_of_the_deployment_and_nothing_unknown() -> None:
    kinds = [(d.get("apiVersion"), d.get("kind")) for _, d in _documents()]
    assert set(kinds) <= KNOWN_KINDS, f"unexpected kinds: {set(kinds) - KNOWN_KINDS}"
    assert set(kinds) == KNOWN_KINDS
    names = [(d["kind"], d["metadata"]["name"]) for _, d in _documents()]
    assert len(names) == len(set(names)), "two manifests share a kind and name"


@pytest.mark.parametrize("kind", sorted(CRD_FILES))
def test_kuberay_manifest_validates_strictly_against_its_crd(kind: str) -> None:
    for manifest in manifests(kind):
        assert manifest["apiVersion"] == api_version(kind)
        assert errors(crd_schema(kind), manifest) == []
        # The CRD leaves the top-level metadata to the API server.
        assert errors(OBJECT_META, manifest["metadata"]) == []
        assert re.match(DNS1035_LABEL, manifest["metadata"]["name"])


def test_strict_schema_rejects_an_unknown_field_the_crd_alone_would_let_through() -> None:
    broken = the("RayCluster")
    broken["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
        "imagePullPolicyy"
    ] = "Always"
    broken["spec"]["gcsFaultToleranceOptions"]["redisAdress"] = "redis:6379"

    assert errors(crd_schema("RayCluster", strict=False), broken) == []
    found = errors(crd_schema("RayCluster"), broken)
    assert len(found) == 2
    assert "'imagePullPolicyy' was unexpected" in found[1]
    assert found[1].startswith("spec.workerGroupSpecs.0.template.spec.containers.0:")
    assert found[0].startswith("spec.gcsFaultToleranceOptions:")
    assert "'redisAdress' was unexpected" in found[0]


def test_strict_schema_rejects_wrong_types() -> None:
    broken = the("RayCluster")
    broken["spec"]["workerGroupSpecs"][1]["replicas"] = "1"
    broken["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    found = errors(crd_schema("RayCluster"), broken)
    assert found == [
        "spec.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'",
        "spec.workerGroupSpecs.1.replicas: '1' is not of type 'integer'",
    ]


def test_strict_schema_rejects_a_broken_rayjob() -> None:
    broken = the("RayJob")
    broken["spec"]["entryPoint"] = broken["spec"].pop("entrypoint")
    broken["spec"]["backoffLimit"] = "0"
    found = errors(crd_schema("RayJob"), broken)
    assert found == [
        "spec.backoffLimit: '0' is not of type 'integer'",
        "spec: Additional properties are not allowed ('entryPoint' was unexpected)",
    ]


def test_strictness_reaches_embedded_metadata_but_keeps_free_maps_free() -> None:
    broken = the("RayCluster")
    head_meta = broken["spec"]["headGroupSpec"]["template"]["metadata"]
    head_meta["labels"]["any/label"] = "is-fine"
    head_meta["generateName"] = "not-allowed-in-a-template-here-"
    found = errors(crd_schema("RayCluster"), broken)
    assert found == [
        "spec.headGroupSpec.template.metadata: Additional properties are not allowed "
        "('generateName' was unexpected)"
    ]


def test_services_validate_against_the_embedded_core_service_schema() -> None:
    schema = embedded("headGroupSpec.headService")
    for service in manifests("Service"):
        assert errors(schema, service) == []
        assert errors(OBJECT_META, service["metadata"]) == []
        assert re.match(DNS1035_LABEL, service["metadata"]["name"])
    broken = manifests("Service")[0]
    broken["spec"]["ports"][0]["port"] = "6379"
    assert errors(schema, broken) == ["spec.ports.0.port: '6379' is not of type 'integer'"]


def test_statefulset_structure_pod_template_and_claims() -> None:
    pod_template = embedded("headGroupSpec.template")
    claim_template = embedded(
        "headGroupSpec.template.spec.volumes.[].ephemeral.volumeClaimTemplate"
    )
    for sts in manifests("StatefulSet"):
        assert errors(STATEFULSET_SCHEMA, sts) == []
        spec = sts["spec"]
        assert errors(pod_template, spec["template"]) == []
        for claim in spec.get("volumeClaimTemplates", []):
            assert errors(claim_template, claim) == []
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items()
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        volumes = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
        for container in all_containers(spec["template"]["spec"]):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in claims | volumes, f"mount {mount['name']} has no volume"
    broken = the("StatefulSet")
    broken["spec"]["volumeClaimTemplate"] = broken["spec"].pop("volumeClaimTemplates")
    assert errors(STATEFULSET_SCHEMA, broken) == [
        "spec: Additional properties are not allowed ('volumeClaimTemplate' was unexpected)"
    ]


def test_secrets_and_configmaps_are_well_formed() -> None:
    for secret in manifests("Secret"):
        assert errors(SECRET_SCHEMA, secret) == []
    for cm in manifests("ConfigMap"):
        assert errors(CONFIGMAP_SCHEMA, cm) == []


def test_secret_templates_hold_placeholders_only() -> None:
    for secret in manifests("Secret"):
        assert "data" not in secret, "base64 data could hide a real value: use stringData"
        for key, value in secret["stringData"].items():
            assert re.fullmatch(r"<[a-z0-9-]+>", value), f"{key}: not a <placeholder>"


# --- references between manifests ----------------------------------------------------------


def test_every_secret_reference_names_a_secret_and_key_defined_in_k8s() -> None:
    defined = secret_keys()
    references = 0
    for _, doc in _documents():
        for node in walk(doc):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                references += 1
                assert ref["name"] in defined, f"{doc['kind']}: no Secret {ref['name']!r}"
                assert ref["key"] in defined[ref["name"]], f"{ref['name']} has no {ref['key']}"
            for key in ("secret", "secretRef"):
                if isinstance(node.get(key), dict):
                    name = node[key].get("secretName") or node[key].get("name")
                    references += 1
                    assert name in defined, f"{doc['kind']}: no Secret {name!r}"
    assert references > 0


def redis_service() -> tuple[str, int]:
    """Name and port of the Service clients use to reach the Redis StatefulSet."""
    sts = the("StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    containers = all_containers(sts["spec"]["template"]["spec"])
    clients = [
        s
        for s in manifests("Service")
        if s["spec"].get("clusterIP") != "None" and s["spec"]["selector"].items() <= labels.items()
    ]
    assert len(clients) == 1, "expected one ClusterIP Service in front of Redis"
    (port,) = clients[0]["spec"]["ports"]
    assert port_number(port, containers) == 6379
    return clients[0]["metadata"]["name"], int(port["port"])


def test_redis_statefulset_is_governed_by_a_headless_service_and_persists() -> None:
    sts = the("StatefulSet")
    governing = named("Service", sts["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert (
        governing["spec"]["selector"].items()
        <= sts["spec"]["template"]["metadata"]["labels"].items()
    )
    (redis,) = sts["spec"]["template"]["spec"]["containers"]
    data_mounts = [m for m in redis["volumeMounts"] if m["mountPath"] == "/data"]
    claims = [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]]
    assert [m["name"] for m in data_mounts] == claims
    command = " ".join(redis["command"] + redis["args"])
    assert "--dir /data" in command and "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert env_from_secrets(redis)["REDIS_PASSWORD"] == ("hft-ray-redis", "password")


def test_gcs_fault_tolerance_and_hft_ray_store_point_at_the_redis_service() -> None:
    host, port = redis_service()
    ft = the("RayCluster")["spec"]["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] == f"{host}:{port}"
    password_ref = ft["redisPassword"]["valueFrom"]["secretKeyRef"]
    redis_password = env_from_secrets(
        the("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    )
    assert (password_ref["name"], password_ref["key"]) == redis_password["REDIS_PASSWORD"]
    configs = configmap_configs()
    assert configs
    for source, config in configs.items():
        assert config.store.url is not None, f"{source}: no Redis store"
        url = urlsplit(config.store.url)
        assert (url.hostname, url.port) == (host, port), source
        assert config.store.password_env is not None, source


def test_every_env_var_a_config_names_is_given_from_a_secret_in_every_ray_container() -> None:
    cluster = the("RayCluster")
    for source, config in configmap_configs().items():
        named_vars = [config.store.password_env]
        for venue in config.venues.values():
            if isinstance(venue, CcxtVenueConfig):
                named_vars += [venue.api_key_env, venue.secret_env, venue.password_env]
        wanted = {var for var in named_vars if var is not None}
        for group, spec in ray_groups(cluster):
            given = env_from_secrets(ray_container(spec))
            missing = wanted - set(given)
            assert not missing, f"{source}: {group} lacks {sorted(missing)}"
    ft_secret = the("RayCluster")["spec"]["gcsFaultToleranceOptions"]["redisPassword"]
    ref = ft_secret["valueFrom"]["secretKeyRef"]
    for group, spec in ray_groups(cluster):
        store_password = env_from_secrets(ray_container(spec))["HFT_RAY_REDIS_PASSWORD"]
        assert store_password == (ref["name"], ref["key"]), group


def test_one_image_in_every_ray_container_built_by_the_dockerfile() -> None:
    cluster = the("RayCluster")
    images = {
        c["image"]
        for _, group in ray_groups(cluster)
        for c in all_containers(group["template"]["spec"])
    }
    job = the("RayJob")
    submitter = job["spec"].get("submitterPodTemplate")
    if submitter is not None:
        images |= {c["image"] for c in all_containers(submitter["spec"])}
    assert len(images) == 1, f"Ray containers use several images: {sorted(images)}"
    (image,) = images
    dockerfile = (K8S / "Dockerfile").read_text()
    assert f"-t {image} " in dockerfile, "the Dockerfile's build command names another tag"
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base.startswith(f"rayproject/ray:{cluster['spec']['rayVersion']}-")


def test_metrics_port_is_exported_exposed_annotated_and_configured_alike() -> None:
    configured = {c.metrics.export_port for c in configmap_configs().values()}
    assert len(configured) == 1
    (port,) = configured
    assert port not in WORKER_PORTS
    for group, spec in ray_groups(the("RayCluster")):
        assert spec["rayStartParams"]["metrics-export-port"] == str(port), group
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", group
        assert annotations["prometheus.io/port"] == str(port), group
        assert annotations["prometheus.io/path"] == "/metrics", group
        ports = {p["name"]: p["containerPort"] for p in ray_container(spec)["ports"]}
        assert ports["metrics"] == port, group


def test_head_schedules_nothing_and_worker_groups_get_exclusive_whole_cores() -> None:
    cluster = the("RayCluster")
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = dict(ray_groups(cluster))
    assert {"feeds", "trading"} <= set(groups)
    for name, group in groups.items():
        for container in all_containers(group["template"]["spec"]):
            resources = container["resources"]
            # Guaranteed QoS: requests == limits for cpu and memory in every container.
            for resource in ("cpu", "memory"):
                assert resource in resources["limits"], f"{name}: no {resource} limit"
                assert resources["requests"][resource] == resources["limits"][resource], name
            cores = cpu_cores(resources["limits"]["cpu"])
            # Whole CPUs: what the kubelet's static CPU manager needs to hand out cores.
            assert cores == int(cores) and cores >= 1, f"{name}: {cores} CPUs"
        if name != "head":
            cores = cpu_cores(ray_container(group)["resources"]["limits"]["cpu"])
            assert group["rayStartParams"]["num-cpus"] == str(int(cores)), name
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name


def test_token_auth_is_set_explicitly() -> None:
    # Ray >= 2.59 defaults local clusters to token auth; a cluster we start says what it wants.
    assert the("RayCluster")["spec"]["authOptions"]["mode"] == "token"


def test_rayjob_runs_hft_ray_with_the_config_the_head_mounts() -> None:
    cluster = the("RayCluster")
    job = the("RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert "rayClusterSpec" not in job["spec"], "pick one: clusterSelector or rayClusterSpec"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["hft-ray", "run"]
    args = build_parser().parse_args(argv[1:])
    assert args.config is not None, "the RayJob must name its config"
    config_path = PurePosixPath(str(args.config))

    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    volumes = {v["name"]: v for v in head["volumes"]}
    mounts = [
        m
        for m in ray_container(cluster["spec"]["headGroupSpec"])["volumeMounts"]
        if config_path.parent == PurePosixPath(m["mountPath"])
    ]
    assert len(mounts) == 1, f"nothing is mounted at {config_path.parent} on the head"
    assert "subPath" not in mounts[0]
    source = volumes[mounts[0]["name"]]["configMap"]
    configmap = named("ConfigMap", source["name"])
    files = {item["path"]: item["key"] for item in source.get("items", [])} or {
        key: key for key in configmap["data"]
    }
    assert config_path.name in files, f"{source['name']} has no {config_path.name}"
    config = parse_config_text(configmap["data"][files[config_path.name]], config_path.name)
    assert config.mode == "sim", "the RayJob runs the paper (simulated) config"
    runs_dir = PurePosixPath(str(config.run.runs_dir))
    assert any(
        runs_dir.is_relative_to(m["mountPath"])
        for m in ray_container(cluster["spec"]["headGroupSpec"])["volumeMounts"]
    ), "the config's runs_dir is not on a volume of the head"


def test_readme_names_every_manifest_in_its_apply_order() -> None:
    readme = (K8S / "README.md").read_text()
    for path in sorted(K8S.glob("*.yaml")):
        assert path.name in readme, f"k8s/README.md does not mention {path.name}"


def group_resources(group: dict[str, Any]) -> dict[str, float]:
    """A group's custom Ray resources: rayStartParams.resources is a JSON object quoted for
    the shell (`'"{\\"name\\": 1}"'` in YAML)."""
    text = group.get("rayStartParams", {}).get("resources")
    if text is None:
        return {}
    decoded = json.loads(json.loads(text))  # the shell quoting, then the object
    return {str(k): float(v) for k, v in decoded.items()}


def test_every_feed_node_resource_is_offered_by_the_feeds_worker_group_only() -> None:
    groups = dict(ray_groups(the("RayCluster")))
    offered = {name: group_resources(g) for name, g in groups.items()}
    for source, config in configmap_configs().items():
        for venue, cfg in config.venues.items():
            wanted = cfg.node_resource
            assert wanted is not None, f"{source}: venue {venue} names no node_resource"
            hosts = [name for name, res in offered.items() if res.get(wanted, 0) > 0]
            assert hosts == ["feeds"], f"{source}: {venue}'s {wanted} is offered by {hosts}"
