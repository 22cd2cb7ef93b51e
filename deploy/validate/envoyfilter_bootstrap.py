"""Writes an Envoy bootstrap that runs the Wasm config of the EnvoyFilter
in deploy/k8s/istio/envoyfilter.yaml, so the real Envoy 1.40 can check it
(`--mode validate`): every field name and value of the Wasm filter's
config (allow_on_headers_stop_iteration, failure_policy, vm_config, ...).
The module is loaded from the local build instead of the remote URL the
istio-agent would download. (Validate mode does not run the plugin's
on_configure; check_deploy.py compares its plugin configuration with the
WasmPlugin's and with the filter's Config fields.)

    python envoyfilter_bootstrap.py REPO_ROOT WASM_FILE OUT_FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


def main() -> int:
    root, wasm, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    docs = [d for d in yaml.safe_load_all((root / "deploy/k8s/istio/envoyfilter.yaml").read_text()) if d]
    patches = [p for d in docs if d.get("kind") == "EnvoyFilter" for p in d["spec"]["configPatches"]]
    ext = next(p["patch"]["value"] for p in patches if p["applyTo"] == "EXTENSION_CONFIG")
    typed = ext["typed_config"]
    config = dict(typed["value"]["config"])
    config["vm_config"] = {**config["vm_config"], "code": {"local": {"filename": wasm}}}
    # The host-routing bootstrap (a virtual host per instance, as a mesh
    # has) with its Wasm filter's config replaced by the EnvoyFilter's.
    boot = yaml.safe_load((root / "envoy/demo-host.yaml").read_text())
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    wasm_filter = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm")
    wasm_filter["typed_config"] = {"@type": typed["type_url"], "config": config}
    # Istio's name for syncd's cluster, so the plugin's syncd_cluster exists.
    plugin = json.loads(config["configuration"]["value"])
    for cluster in boot["static_resources"]["clusters"]:
        if cluster["name"] == "syncd":
            cluster["name"] = cluster["load_assignment"]["cluster_name"] = plugin["syncd_cluster"]
    # The fleet management route reaches syncd by that name too.
    for vhost in hcm["route_config"]["virtual_hosts"]:
        for route in vhost["routes"]:
            if route.get("route", {}).get("cluster") == "syncd":
                route["route"]["cluster"] = plugin["syncd_cluster"]
    out.write_text(json.dumps(boot, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
