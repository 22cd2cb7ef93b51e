"""Cross-file checks of the deployment files that no schema can make.

A schema says a compose file or a manifest is well formed; it cannot say
that the emulated profile answers at the names syncd polls, that the Istio
ServiceEntry lists the same pods as syncd's configuration, or that the
WasmPlugin's pluginConfig only uses fields the filter knows. Those are the
mistakes that survive `docker compose up` and `kubectl apply` and show up
as a request that never arrives. Run by scripts/validate-deploy.sh:

    python check_deploy.py REPO_ROOT [SYNCD_BINARY]

With SYNCD_BINARY, syncd's own `check-config` parses the instance lists
(the compose file's OLLAMA_BASE_URLS and the Kubernetes TOML), so the
deployment files are read exactly as the daemon will read them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import yaml

BACKEND_PROFILES = ("gpu", "emulated")
WASM_PATH = "/etc/envoy/filter.wasm"
FLEET_CLUSTER = "ollama_fleet"


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def ok(self, what: str) -> None:
        print(f"ok      {what}")

    def fail(self, what: str) -> None:
        self.failures += 1
        print(f"FAIL    {what}")

    def warn(self, what: str) -> None:
        print(f"warn    {what}")

    def check(self, cond: bool, what: str, why: str = "") -> bool:
        if cond:
            self.ok(what)
        else:
            self.fail(f"{what}{': ' + why if why else ''}")
        return cond


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def hosts_of(base_urls: str) -> list[tuple[str, int]]:
    """Host and port of each `;`-separated URL, as Open WebUI splits them."""
    out = []
    for url in filter(None, (u.strip() for u in base_urls.split(";"))):
        parts = urlsplit(url)
        out.append((parts.hostname or "", parts.port or 11434))
    return out


def syncd_check_config(binary: str | None, env: dict[str, str], args: list[str]) -> list[dict] | None:
    """Runs `syncd check-config`; returns its instances, or None without a binary."""
    if not binary:
        return None
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "OLLAMA_"))}
    proc = subprocess.run(
        [binary, "check-config", *args], env={**clean, **env}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ValueError((proc.stderr or proc.stdout).strip())
    # One row per instance: NAME URL CLUSTER (the cluster possibly written
    # `cluster=NAME`); other lines are headings and settings.
    rows = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].startswith(("http://", "https://")):
            cluster = fields[2].removeprefix("cluster=")
            rows.append({"name": fields[0], "url": fields[1], "cluster": cluster})
    return rows


# --- docker-compose.yaml ---------------------------------------------------


def check_compose(root: Path, r: Report, syncd_bin: str | None) -> None:
    path = root / "docker-compose.yaml"
    compose = yaml.safe_load(path.read_text())
    services: dict = compose.get("services", {})
    volumes = set((compose.get("volumes") or {}).keys())

    for name, svc in services.items():
        where = f"compose service {name}"
        if "build" in svc:
            build = svc["build"]
            dockerfile = root / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            if r.check(dockerfile.is_file(), f"{where}: Dockerfile {dockerfile.relative_to(root)} exists"):
                stages = re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text())
                if "target" in build:
                    r.check(build["target"] in stages, f"{where}: build target {build['target']!r} is a stage", f"stages are {stages}")
        elif "image" in svc:
            image = svc["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            r.check(bool(tag) and tag != "latest", f"{where}: image {image} is pinned", "give a version tag")
        else:
            r.fail(f"{where}: has neither image nor build")

        for dep in svc.get("depends_on") or {}:
            if not r.check(dep in services, f"{where}: depends_on {dep} exists"):
                continue
            if not svc.get("profiles") and services[dep].get("profiles"):
                r.fail(f"{where}: depends on {dep}, which only runs in profiles {services[dep]['profiles']}")

        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                if source == "./envoy/compose.yaml" and not (root / source).exists():
                    r.warn(f"{where}: {source} is not rendered yet (syncd's Envoy renderer makes it)")
                else:
                    r.check((root / source).exists(), f"{where}: bind source {source} exists")
            elif source:
                r.check(source in volumes, f"{where}: volume {source} is declared")

    # Both backend profiles must answer at every name syncd polls (once
    # each for a fixed list; at least once for a discovered name), so
    # Envoy's bootstrap and syncd's settings need not change.
    syncd_env = services["syncd"]["environment"]
    base_urls = syncd_env.get("OLLAMA_BASE_URLS", "")
    discover = syncd_env.get("SYNCD_DISCOVER", "")
    wanted = [h for h, _ in hosts_of(base_urls)] if base_urls else []
    found_name = discover.removeprefix("dns:").rsplit(":", 1)[0] if discover else ""
    for profile in BACKEND_PROFILES:
        names: list[str] = []
        for name, svc in services.items():
            profiles = svc.get("profiles")
            if profiles and profile not in profiles:
                continue
            names.append(name)
            for net in (svc.get("networks") or {}).values():
                names.extend((net or {}).get("aliases", []))
        for host in wanted:
            r.check(names.count(host) == 1, f"profile {profile}: exactly one service answers as {host}", f"found {names.count(host)}")
        if found_name:
            r.check(names.count(found_name) >= 2, f"profile {profile}: the Ollama services answer as {found_name} (SYNCD_DISCOVER)", f"found {names.count(found_name)}")

    env = {k: v for k, v in (("OLLAMA_BASE_URLS", base_urls), ("SYNCD_DISCOVER", discover)) if v}
    try:
        instances = syncd_check_config(syncd_bin, env, [])
    except ValueError as e:
        r.fail(f"syncd check-config rejects the compose syncd settings: {e}")
        instances = None
    if instances is not None:
        r.check(len(instances) == len(wanted), f"syncd check-config accepts the compose syncd settings ({len(instances)} fixed instances, discovery {discover or 'off'})")

    webui = services["open-webui"]["environment"]
    r.check("OLLAMA_BASE_URLS" not in webui, "open-webui: no OLLAMA_BASE_URLS (the balancer is its only Ollama)")
    envoy_ports = [str(p).rsplit(":", 1)[-1] for p in services["envoy"].get("ports", [])]
    webui_url = urlsplit(webui.get("OLLAMA_BASE_URL", ""))
    r.check(
        webui_url.hostname == "envoy" and str(webui_url.port) in envoy_ports,
        "open-webui: OLLAMA_BASE_URL points at Envoy's listener",
        f"{webui.get('OLLAMA_BASE_URL')!r}",
    )

    check_envoy_bootstrap(root, r, base_urls, instances)


def check_envoy_bootstrap(root: Path, r: Report, base_urls: str, instances: list[dict] | None) -> None:
    """envoy/compose.yaml's fleet cluster must reach every instance syncd polls."""
    path = root / "envoy" / "compose.yaml"
    if not path.exists():
        r.warn("envoy/compose.yaml not rendered yet: bootstrap cross-checks skipped")
        return
    boot = yaml.safe_load(path.read_text())
    clusters = {}
    for c in boot["static_resources"]["clusters"]:
        clusters[c["name"]] = c
    def endpoints(c: dict) -> set:
        return {
            (e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"])
            for e in c.get("load_assignment", {"endpoints": [{"lb_endpoints": []}]})["endpoints"][0]["lb_endpoints"]
        }
    fleet = clusters.get(FLEET_CLUSTER)
    r.check(fleet is not None, f"envoy/compose.yaml: the fleet cluster {FLEET_CLUSTER} exists", f"clusters are {sorted(clusters)}")
    r.check(("syncd", 11435) in endpoints(clusters.get("syncd", {})), "envoy/compose.yaml: the syncd cluster reaches syncd:11435")
    if fleet is not None and fleet.get("type") == "EDS":
        # The endpoints are the instances syncd polls, served by syncd itself.
        source = fleet["eds_cluster_config"]["eds_config"]["api_config_source"]
        r.check(source.get("cluster_names") == ["syncd"], f"envoy/compose.yaml: {FLEET_CLUSTER} takes its endpoints from syncd (EDS)")
    elif fleet is not None:
        for host, port in hosts_of(base_urls):
            r.check((host, port) in endpoints(fleet), f"envoy/compose.yaml: {FLEET_CLUSTER} reaches {host}:{port}")
        if instances is not None:
            r.check(len(endpoints(fleet)) == len(instances), f"envoy/compose.yaml: one {FLEET_CLUSTER} endpoint per instance syncd polls")
    text = path.read_text()
    r.check(WASM_PATH in text, f"envoy/compose.yaml: loads the filter from {WASM_PATH}")
    r.check("envoy.load_balancing_policies.override_host" in text, "envoy/compose.yaml: the fleet cluster takes the filter's endpoint list (override_host)")


# --- Kubernetes and Istio ------------------------------------------------


def filter_config_fields(root: Path) -> set[str]:
    """Field names of the filter's plugin `Config` struct, read from its source."""
    src = (root / "filter" / "src" / "config.rs").read_text()
    body = re.search(r"pub struct Config \{(.*?)\n\}", src, re.S)
    return set(re.findall(r"pub (\w+):", body.group(1))) if body else set()


def check_k8s(root: Path, r: Report, syncd_bin: str | None) -> None:
    k8s = root / "deploy" / "k8s"
    docs = {p: load_all(p) for p in sorted(k8s.rglob("*.yaml")) if p.name != "kustomization.yaml"}
    by_kind: dict[str, list[dict]] = {}
    for items in docs.values():
        for d in items:
            by_kind.setdefault(d["kind"], []).append(d)

    for kust in sorted(k8s.rglob("kustomization.yaml")):
        for res in yaml.safe_load(kust.read_text()).get("resources", []):
            r.check((kust.parent / res).exists(), f"{kust.relative_to(root)}: resource {res} exists")

    sts = next(s for s in by_kind["StatefulSet"] if s["metadata"]["name"] == "ollama")
    ns = sts["metadata"]["namespace"]
    svc_name = sts["spec"]["serviceName"]
    headless = next(s for s in by_kind["Service"] if s["metadata"]["name"] == svc_name)
    r.check(headless["spec"].get("clusterIP") == "None", f"Service {svc_name} is headless (pods get DNS names)")
    pod_hosts = [f"{sts['metadata']['name']}-{i}.{svc_name}.{ns}.svc.cluster.local" for i in range(sts["spec"]["replicas"])]

    syncd_dep = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == "syncd")
    args = syncd_dep["spec"]["template"]["spec"]["containers"][0]["args"]
    want = f"dns:{svc_name}.{ns}.svc.cluster.local:11434"
    r.check(want in args and "--discover" in args, f"syncd discovers the StatefulSet through its headless Service ({want})", f"args are {args}")
    istio = yaml.safe_load((k8s / "istio" / "kustomization.yaml").read_text())
    patched = [p for p in istio.get("patches", []) if p.get("target", {}).get("name") == "syncd"]
    r.check(bool(patched) and "/etc/syncd/syncd.toml" in patched[0].get("patch", ""), "the Istio overlay has syncd read syncd-config (host mode needs pod names)")

    cm = next(c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == "syncd-config")
    toml_text = cm["data"]["syncd.toml"]
    toml_hosts = [urlsplit(i["url"]).hostname for i in tomllib.loads(toml_text).get("instance", [])]
    r.check(toml_hosts == pod_hosts, "syncd-config lists one instance per StatefulSet replica", f"{toml_hosts} vs {pod_hosts}")
    if syncd_bin:
        tmp = root / "target" / "validate-deploy-syncd.toml"
        tmp.parent.mkdir(exist_ok=True)
        tmp.write_text(toml_text)
        try:
            rows = syncd_check_config(syncd_bin, {}, ["--config", str(tmp)])
            r.ok(f"syncd check-config accepts syncd-config ({len(rows or [])} instances)")
        except ValueError as e:
            r.fail(f"syncd check-config rejects syncd-config: {e}")

    entry = next(s for s in by_kind["ServiceEntry"] if s["metadata"]["name"] == "ollama-pods")
    r.check(entry["spec"]["hosts"] == pod_hosts, "ServiceEntry ollama-pods lists every Ollama pod host", f"{entry['spec']['hosts']} vs {pod_hosts}")

    syncd_svc = next(s for s in by_kind["Service"] if s["metadata"]["name"] == "syncd")
    syncd_port = syncd_svc["spec"]["ports"][0]["port"]
    syncd_fqdn = f"syncd.{syncd_svc['metadata']['namespace']}.svc.cluster.local"
    known = filter_config_fields(root)
    configs = [(f"WasmPlugin {w['metadata']['name']}", w["spec"]["pluginConfig"]) for w in by_kind.get("WasmPlugin", [])]
    configs += [(f"TrafficExtension {t['metadata']['name']}", t["spec"]["wasm"]["pluginConfig"]) for t in by_kind.get("TrafficExtension", [])]
    configs += [(f"EnvoyFilter {e['metadata']['name']}", envoyfilter_plugin(e, r)) for e in by_kind.get("EnvoyFilter", [])]
    for what, cfg in configs:
        r.check(cfg == configs[0][1], f"{what}: pluginConfig is the same as {configs[0][0]}'s")
        r.check(cfg.get("route_by") == "host", f"{what}: route_by is host (Istio has no per-instance clusters)")
        r.check(cfg.get("syncd_cluster") == f"outbound|{syncd_port}||{syncd_fqdn}", f"{what}: syncd_cluster is Istio's name for the syncd Service")
        if known:
            unknown = sorted(set(cfg) - known)
            r.check(not unknown, f"{what}: pluginConfig fields are the filter's", f"unknown {unknown}")
        else:
            r.warn("filter/src/config.rs has no `pub struct Config`: pluginConfig fields not checked")


def envoyfilter_plugin(ef: dict, r: Report) -> dict:
    """Checks the EnvoyFilter's two patches fit together and returns the
    filter's plugin configuration (the JSON in `configuration.value`)."""
    name = f"EnvoyFilter {ef['metadata']['name']}"
    patches = ef["spec"]["configPatches"]
    http = next(p for p in patches if p["applyTo"] == "HTTP_FILTER")
    ext = next(p for p in patches if p["applyTo"] == "EXTENSION_CONFIG")
    wanted = http["patch"]["value"]["config_discovery"]
    r.check(
        http["patch"]["value"]["name"] == ext["patch"]["value"]["name"],
        f"{name}: the HTTP filter asks ECDS for the EXTENSION_CONFIG it adds",
    )
    typed = ext["patch"]["value"]["typed_config"]
    r.check(typed["type_url"] in wanted["type_urls"], f"{name}: the extension's type is one the filter accepts")
    config = typed["value"]["config"]
    r.check(config.get("allow_on_headers_stop_iteration") is True, f"{name}: allow_on_headers_stop_iteration is true (the reason for this file)")
    r.check(http["match"]["listener"].get("portNumber") == 11434, f"{name}: on the callers' outbound listener for Ollama's port 11434")
    remote = config["vm_config"]["code"].get("remote", {})
    r.check(bool(remote.get("sha256")), f"{name}: the remote module is pinned by sha256")
    return json.loads(config["configuration"]["value"])


def main() -> int:
    root = Path(sys.argv[1]).resolve()
    syncd_bin = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    r = Report()
    for step in (check_compose, check_k8s):
        try:
            step(root, r, syncd_bin)
        except (KeyError, StopIteration, TypeError, AttributeError, yaml.YAMLError, tomllib.TOMLDecodeError) as e:
            r.fail(f"{step.__name__}: cannot read an expected field or resource: {type(e).__name__}: {e}")
    print(json.dumps({"cross_checks_failed": r.failures}))
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
