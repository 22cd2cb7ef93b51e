// Validates Istio resources offline against the schemas generated from
// Istio's CRDs (npm @kubernetes-models/istio, built from Istio 1.29's
// crd-all.gen.yaml): WasmPlugin, ServiceEntry, DestinationRule and
// EnvoyFilter (networking.istio.io/v1alpha3). Usage: node istio.mjs FILE...
//
// Those schemas come from Kubernetes structural schemas, which let unknown
// fields through (the API server prunes them silently). A typo such as
// `imagePulPolicy` would therefore pass, so every key is also checked
// against the property names the model declares.
//
// TrafficExtension (Istio 1.30+) is newer than the package: its Wasm block
// is checked with the WasmPlugin schema, whose fields it reuses, and its
// top-level keys against the ones the Istio 1.30 reference documents.
// Kinds that are not Istio's are left to kubernetes-validate.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";
import { WasmPlugin } from "@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin";
import { ServiceEntry } from "@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry";
import { DestinationRule } from "@kubernetes-models/istio/networking.istio.io/v1/DestinationRule";
import { EnvoyFilter } from "@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter";

const require = createRequire(import.meta.url);
const modelDir = dirname(require.resolve("@kubernetes-models/istio/package.json"));

/** Every property name declared in a model's type definition. */
function declaredKeys(relPath) {
  const dts = readFileSync(join(modelDir, relPath), "utf8");
  return new Set([...dts.matchAll(/"([A-Za-z0-9_$]+)"\??:/g)].map((m) => m[1]));
}

const models = {
  "extensions.istio.io/v1alpha1 WasmPlugin": {
    Model: WasmPlugin,
    keys: declaredKeys("extensions.istio.io/v1alpha1/WasmPlugin.d.ts"),
  },
  "networking.istio.io/v1 ServiceEntry": {
    Model: ServiceEntry,
    keys: declaredKeys("networking.istio.io/v1/ServiceEntry.d.ts"),
  },
  "networking.istio.io/v1 DestinationRule": {
    Model: DestinationRule,
    keys: declaredKeys("networking.istio.io/v1/DestinationRule.d.ts"),
  },
  "networking.istio.io/v1alpha3 EnvoyFilter": {
    Model: EnvoyFilter,
    keys: declaredKeys("networking.istio.io/v1alpha3/EnvoyFilter.d.ts"),
  },
};

// From the TrafficExtension reference (Istio 1.30): targeting and ordering
// at spec level, the module under `wasm` (or a script under `lua`).
const TRAFFIC_EXTENSION_SPEC = new Set(["selector", "targetRefs", "phase", "priority", "match", "wasm", "lua"]);
const TRAFFIC_EXTENSION_LUA = new Set(["inlineCode"]);

/** Keys (with their paths) under `value` that are not in `known`; free-form maps are skipped. */
function unknownKeys(value, known, path, skip) {
  if (Array.isArray(value)) {
    return value.flatMap((v, i) => unknownKeys(v, known, `${path}[${i}]`, skip));
  }
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([k, v]) => {
    const here = `${path}.${k}`;
    if (skip.has(k)) return [];
    const bad = known.has(k) ? [] : [here];
    return bad.concat(unknownKeys(v, known, here, skip));
  });
}

// pluginConfig is the filter's own JSON; an EnvoyFilter patch's `value` is
// Envoy configuration (checked by the real Envoy in validate-deploy.sh);
// labels and annotations are free-form.
const FREE_FORM = new Set(["pluginConfig", "value", "matchLabels", "labels", "annotations"]);

function check(doc) {
  const id = `${doc.apiVersion} ${doc.kind}`;
  const problems = [];
  let model = models[id];
  let body = doc;
  // [path, value] pairs whose keys must all be declared by the model.
  let parts = [["spec", doc.spec ?? {}]];
  if (id === "extensions.istio.io/v1alpha1 TrafficExtension") {
    const spec = doc.spec ?? {};
    for (const k of Object.keys(spec)) {
      if (!TRAFFIC_EXTENSION_SPEC.has(k)) problems.push(`unknown field spec.${k}`);
    }
    if (("wasm" in spec) === ("lua" in spec)) problems.push("spec needs exactly one of wasm or lua");
    for (const k of Object.keys(spec.lua ?? {})) {
      if (!TRAFFIC_EXTENSION_LUA.has(k)) problems.push(`unknown field spec.lua.${k}`);
    }
    // The WasmPlugin a TrafficExtension corresponds to.
    const { wasm, lua, ...targeting } = spec;
    body = { apiVersion: "extensions.istio.io/v1alpha1", kind: "WasmPlugin", metadata: doc.metadata, spec: { ...targeting, ...(wasm ?? {}) } };
    model = models["extensions.istio.io/v1alpha1 WasmPlugin"];
    parts = [["spec", targeting], ["spec.wasm", wasm ?? {}]];
  }
  if (!model) return null;
  try {
    new model.Model(body).validate();
  } catch (e) {
    problems.push(e.message);
  }
  const stray = parts.flatMap(([path, value]) => unknownKeys(value, model.keys, path, FREE_FORM));
  problems.push(...stray.map((p) => `unknown field ${p}`));
  if (!doc.metadata?.name) problems.push("metadata.name is missing");
  return problems;
}

let failed = false;
for (const file of process.argv.slice(2)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const parsed of docs) {
    if (parsed.errors.length) {
      console.log(`INVALID ${file}: YAML: ${parsed.errors[0].message}`);
      failed = true;
      continue;
    }
    const doc = parsed.toJS();
    if (!doc) continue;
    const problems = check(doc);
    if (problems === null) continue;
    const name = `${doc.kind}/${doc.metadata?.name ?? "?"}`;
    if (problems.length) {
      failed = true;
      console.log(`INVALID ${file} ${name}:\n  ${problems.join("\n  ")}`);
    } else {
      console.log(`ok      ${file} ${name}`);
    }
  }
}
process.exit(failed ? 1 : 0);
