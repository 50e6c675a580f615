"""Checks k8s/ and the Dockerfile without a cluster or docker (run by scripts/check-k8s.sh).

1. Renders k8s/base and every overlay under k8s/overlays with `kubectl kustomize`.
2. Validates every rendered object against the Kubernetes schemas, strictly (unknown fields
   are errors), for the oldest and the newest Kubernetes version castplane supports.
3. Checks castplane's own rules: the control plane runs several replicas with gRPC health
   probes, a disruption budget and anti-affinity; Services select pods and name their ports;
   every container has requests, limits and a locked-down security context (the agent keeps
   only the capabilities k8s/base/agent.yaml explains); Secrets are generated or documented;
   the ConfigMap's castplane.toml uses only keys the control plane knows; images are the
   Dockerfile's targets.
4. Parses the Dockerfile with BuildKit's parser and checks its stages against the manifests,
   the workspace's binaries and the streaming servers scripts/install-deps.sh installs.

Every problem is reported, then the script exits 1 if there were any.
"""

import argparse
import pathlib
import re
import subprocess
import sys
import tomllib

import dockerfile
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OLDEST_KUBERNETES = "1.29.0"

# Secrets the base references but leaves to the operator (README: "Kubernetes").
EXTERNAL_SECRETS = {
    "castplane-database",
    "castplane-api-tls",
    "castplane-admin-token",
    "castplane-join-tokens",
}
# Image name (last path segment) -> Dockerfile target.
IMAGE_TARGETS = {"castplane-control": "control-plane", "castplane-agent": "agent"}
# What the agent may keep, and why: k8s/base/agent.yaml.
AGENT_CAPABILITIES = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"}
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet"}

problems: list[str] = []


def problem(where: str, text: str) -> None:
    problems.append(f"{where}: {text}")


def render(kubectl: str, directory: pathlib.Path) -> list[dict]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True
    )
    if result.returncode != 0:
        problem(str(directory.relative_to(ROOT)), f"kustomize failed: {result.stderr.strip()}")
        return []
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate_schemas(where: str, objects: list[dict]) -> None:
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                path = "/".join(str(p) for p in err.path)
                problem(f"{where} {name_of(obj)}", f"Kubernetes {version}: {path}: {err.message}")
            except Exception as err:  # unknown kinds, missing schemas
                problem(f"{where} {name_of(obj)}", f"Kubernetes {version}: {err}")


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_container(where: str, spec: dict, container: dict, is_agent: bool) -> None:
    where = f"{where} container {container['name']}"
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(kind, {}):
                problem(where, f"needs resources.{kind}.{resource}")
    context = container.get("securityContext", {})
    if context.get("allowPrivilegeEscalation") is not False:
        problem(where, "needs securityContext.allowPrivilegeEscalation: false")
    if context.get("readOnlyRootFilesystem") is not True:
        problem(where, "needs securityContext.readOnlyRootFilesystem: true")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
        problem(where, "must drop ALL capabilities")
    added = set(capabilities.get("add", []))
    allowed = AGENT_CAPABILITIES if is_agent else set()
    if added - allowed:
        problem(where, f"adds capabilities nobody documented: {sorted(added - allowed)}")
    non_root = context.get("runAsNonRoot", spec.get("securityContext", {}).get("runAsNonRoot"))
    if not is_agent and non_root is not True:
        problem(where, "must run as non-root (runAsNonRoot: true)")


def check_probe_port(where: str, container: dict, probe_name: str) -> None:
    probe = container.get(probe_name)
    if probe is None:
        problem(where, f"needs a {probe_name}")
        return
    if "grpc" not in probe:
        problem(where, f"{probe_name} must be a gRPC health probe")
        return
    ports = {p["containerPort"] for p in container.get("ports", [])}
    if probe["grpc"]["port"] not in ports:
        problem(where, f"{probe_name} probes port {probe['grpc']['port']}, which it does not declare")


def check_control_plane(where: str, objects: list[dict], known_keys: set[str]) -> None:
    deployments = [o for o in objects if name_of(o) == "Deployment/castplane-control"]
    if len(deployments) != 1:
        problem(where, "needs exactly one Deployment castplane-control")
        return
    deployment = deployments[0]
    replicas = deployment["spec"].get("replicas", 1)
    if replicas < 2:
        problem(where, f"the control plane needs at least 2 replicas (has {replicas})")
    spec = pod_spec(deployment)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    anti = spec.get("affinity", {}).get("podAntiAffinity", {})
    if not anti:
        problem(where, "the control plane needs pod anti-affinity")
    control = next(c for c in spec["containers"] if c["name"] == "control")
    check_probe_port(f"{where} control", control, "readinessProbe")
    check_probe_port(f"{where} control", control, "livenessProbe")
    pdbs = [
        o
        for o in objects
        if o["kind"] == "PodDisruptionBudget"
        and selects(o["spec"]["selector"].get("matchLabels", {}), labels)
    ]
    if not pdbs:
        problem(where, "no PodDisruptionBudget selects the control plane")
    for pdb in pdbs:
        minimum = pdb["spec"].get("minAvailable", 0)
        if not 1 <= minimum < replicas:
            problem(where, f"{name_of(pdb)}: minAvailable {minimum} must be 1..{replicas - 1}")
    for name in ("castplane-api", "castplane-agents"):
        if not any(name_of(o) == f"Service/{name}" for o in objects):
            problem(where, f"needs the Service {name}")
    # The config file the control plane reads: only keys it knows, ports it declares.
    maps = [o for o in objects if o["kind"] == "ConfigMap" and "castplane.toml" in o.get("data", {})]
    ports = {p["containerPort"] for p in control.get("ports", [])}
    for config_map in maps:
        try:
            config = tomllib.loads(config_map["data"]["castplane.toml"])
        except tomllib.TOMLDecodeError as err:
            problem(f"{where} {name_of(config_map)}", f"castplane.toml: {err}")
            continue
        for key in sorted(set(config) - known_keys):
            problem(f"{where} {name_of(config_map)}", f"castplane.toml: unknown key {key}")
        for key in ("listen", "agent_listen", "metrics_listen", "health_listen"):
            if key in config and int(config[key].rsplit(":", 1)[1]) not in ports:
                problem(where, f"castplane.toml {key} = {config[key]} is not a container port")


def check_agent(where: str, objects: list[dict]) -> None:
    daemonsets = [o for o in objects if name_of(o) == "DaemonSet/castplane-agent"]
    if len(daemonsets) != 1:
        problem(where, "needs exactly one DaemonSet castplane-agent")
        return
    spec = pod_spec(daemonsets[0])
    if spec.get("hostNetwork") is not True:
        problem(where, "the agent needs hostNetwork (stream ports on the node's address)")
    if not spec.get("nodeSelector") or not spec.get("tolerations"):
        problem(where, "the agent runs on labelled streaming nodes: nodeSelector and tolerations")
    if not any("hostPath" in v for v in spec.get("volumes", [])):
        problem(where, "the agent's data directory must be a hostPath")


def check_workloads(where: str, objects: list[dict]) -> None:
    generated = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    workloads = [o for o in objects if o["kind"] in WORKLOAD_KINDS]
    for workload in workloads:
        spec = pod_spec(workload)
        is_agent = workload["metadata"]["name"] == "castplane-agent"
        for container in containers(spec):
            check_container(f"{where} {name_of(workload)}", spec, container, is_agent)
            image = container["image"]
            short = image.rsplit("/", 1)[-1].split(":", 1)[0]
            if short.startswith("castplane-") and short not in IMAGE_TARGETS:
                problem(where, f"{name_of(workload)} uses {image}, which the Dockerfile does not build")
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] not in generated | EXTERNAL_SECRETS:
                    problem(where, f"{name_of(workload)} needs Secret {ref['name']}, which nothing makes")
        for volume in spec.get("volumes", []):
            secret = volume.get("secret", {}).get("secretName")
            if secret and secret not in generated | EXTERNAL_SECRETS:
                problem(where, f"{name_of(workload)} mounts Secret {secret}, which nothing makes")
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations.get("prometheus.io/port", "0"))
            declared = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
            if port not in declared:
                problem(where, f"{name_of(workload)} is scraped on port {port}, which it does not declare")
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"].get("selector", {})
        matched = [
            w for w in workloads if selects(selector, w["spec"]["template"]["metadata"]["labels"])
        ]
        if not matched:
            problem(where, f"{name_of(service)} selects no pods")
            continue
        names = {
            p.get("name")
            for w in matched
            for c in pod_spec(w)["containers"]
            for p in c.get("ports", [])
        }
        numbers = {
            p["containerPort"]
            for w in matched
            for c in pod_spec(w)["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if target not in names and target not in numbers:
                problem(where, f"{name_of(service)} targets port {target}, which its pods do not declare")


def file_config_keys() -> set[str]:
    """The keys of the control plane's FileConfig (control-plane/src/config.rs)."""
    source = (ROOT / "control-plane/src/config.rs").read_text()
    body = re.search(r"pub struct FileConfig \{(.*?)\n\}", source, re.S)
    if not body:
        problem("control-plane/src/config.rs", "no FileConfig struct found")
        return set()
    return set(re.findall(r"pub (\w+):", body.group(1)))


def workspace_binaries() -> set[str]:
    names = set()
    for manifest in ROOT.glob("*/Cargo.toml"):
        names.update(re.findall(r'\[\[bin\]\]\s*\nname = "([^"]+)"', manifest.read_text()))
    return names


def install_deps_packages() -> set[str]:
    script = (ROOT / "scripts/install-deps.sh").read_text()
    match = re.search(r"^packages=\((.*?)\)", script, re.M)
    return set(match.group(1).split()) if match else set()


def check_dockerfile(manifests: list[dict]) -> None:
    where = "Dockerfile"
    commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    stages: dict[str, list] = {}
    bases: dict[str, str] = {}
    current = None
    for command in commands:
        if command.cmd == "FROM":
            value = command.value
            if len(value) != 3 or value[1].upper() != "AS":
                problem(where, f"line {command.start_line}: every stage needs a name (FROM image AS name)")
                continue
            current = value[2]
            bases[current] = value[0]
            stages[current] = []
        elif current is not None:
            stages[current].append(command)
    for target in IMAGE_TARGETS.values():
        if target not in stages:
            problem(where, f"no stage {target} (the manifests' images are built from it)")
    for stage, base in bases.items():
        if not (base.startswith("debian:12") or "bookworm" in base):
            problem(where, f"stage {stage} is based on {base}, not Debian 12")
    rust = re.match(r"rust:(\d+)\.(\d+)", bases.get("build", ""))
    wanted = re.search(r'rust-version = "(\d+)\.(\d+)"', (ROOT / "Cargo.toml").read_text())
    if not rust or (wanted and tuple(map(int, rust.groups())) < tuple(map(int, wanted.groups()))):
        problem(where, f"the build stage's Rust ({bases.get('build')}) is older than the workspace's rust-version")
    binaries = workspace_binaries()
    seen: list[str] = []
    for stage, stage_commands in stages.items():
        for command in stage_commands:
            if command.cmd == "COPY":
                source = next((f.split("=", 1)[1] for f in command.flags if f.startswith("--from=")), None)
                if source and source not in seen:
                    problem(where, f"line {command.start_line}: COPY --from={source} names no earlier stage")
                for path in command.value[:-1]:
                    if path.startswith("/out/") and path[5:] not in binaries:
                        problem(where, f"line {command.start_line}: {path[5:]} is no binary of the workspace")
        seen.append(stage)

    def stage_text(stage: str) -> str:
        return " ".join(" ".join(c.value) for c in stages.get(stage, []) if c.cmd == "RUN")

    agent_packages = set(stage_text("agent").split())
    streaming = install_deps_packages() & {"icecast2", "ffmpeg", "liquidsoap", "nginx", "libnginx-mod-rtmp"}
    if len(streaming) < 5:
        problem("scripts/install-deps.sh", "cannot find the streaming servers in its packages=(...) list")
    for package in sorted(streaming - agent_packages):
        problem(where, f"the agent image lacks {package}, which the agent's plugins run")

    def user_of(stage: str) -> str | None:
        users = [c.value[0] for c in stages.get(stage, []) if c.cmd == "USER"]
        return users[-1] if users else None

    def exposed(stage: str) -> set[int]:
        return {int(p.split("/")[0]) for c in stages.get(stage, []) if c.cmd == "EXPOSE" for p in c.value}

    for obj in manifests:
        if obj.get("kind") not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(obj)
        for container in spec["containers"]:
            short = container["image"].rsplit("/", 1)[-1].split(":", 1)[0]
            target = IMAGE_TARGETS.get(short)
            if target is None:
                continue
            ports = {p["containerPort"] for p in container.get("ports", [])}
            for port in sorted(ports - exposed(target)):
                problem(where, f"stage {target} does not EXPOSE {port}, which {name_of(obj)} uses")
            run_as = container.get("securityContext", {}).get(
                "runAsUser", spec.get("securityContext", {}).get("runAsUser")
            )
            user = user_of(target)
            if run_as is not None and user is not None and user.split(":")[0] != str(run_as):
                problem(where, f"stage {target} runs as {user}, {name_of(obj)} as {run_as}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", default="kubectl")
    args = parser.parse_args()
    known_keys = file_config_keys()
    directories = [K8S / "base"] + sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
    base_objects: list[dict] = []
    for directory in directories:
        where = str(directory.relative_to(ROOT))
        objects = render(args.kubectl, directory)
        if not objects:
            continue
        if directory.name == "base":
            base_objects = objects
        validate_schemas(where, objects)
        check_control_plane(where, objects, known_keys)
        check_agent(where, objects)
        check_workloads(where, objects)
        print(f"check-k8s: {where}: {len(objects)} objects rendered and checked")
    check_dockerfile(base_objects)
    for text in problems:
        print(f"check-k8s: {text}", file=sys.stderr)
    if problems:
        print(f"check-k8s: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-k8s: {len(directories)} kustomizations valid for Kubernetes "
          f"{OLDEST_KUBERNETES} and {kubernetes_validate.latest_version()}; Dockerfile consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
