// Checks Kubernetes manifests offline: every YAML document parses and is
// valid against the Kubernetes API schemas that the npm package
// kubernetes-models compiles (types, required fields, enums, formats).
// Kubernetes' schemas allow unknown fields, so a misspelt field name is NOT
// caught here (the API server's strict field validation would reject it).
//
// Negative controls first, so that a validator that accepts anything fails
// the test: a Deployment with a string for replicas and one without a
// selector must be rejected.
//
//   node validate.mjs [--args-out FILE] MANIFEST.yaml...
//
// --args-out writes the args of the container "lcache" of the Deployment
// "lcache" as a JSON array, for the test that runs lcache-node with them.

import { readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import yaml from "js-yaml";
import { Service } from "kubernetes-models/v1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";

const models = {
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
};

function validate(doc) {
  const Model = models[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) throw new Error(`no schema here for ${doc.apiVersion} ${doc.kind}`);
  new Model(doc).validate();
}

function mustReject(what, doc) {
  try {
    validate(doc);
  } catch {
    return;
  }
  throw new Error(`negative control accepted: ${what}`);
}

const minimal = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "x" },
  spec: {
    selector: { matchLabels: { app: "x" } },
    template: {
      metadata: { labels: { app: "x" } },
      spec: { containers: [{ name: "x", image: "x" }] },
    },
  },
};
validate(minimal);
mustReject("replicas as a string", { ...minimal, spec: { ...minimal.spec, replicas: "3" } });
mustReject("no selector", { ...minimal, spec: { template: minimal.spec.template } });

const argv = process.argv.slice(2);
let argsOut = null;
if (argv[0] === "--args-out") {
  argsOut = argv[1];
  argv.splice(0, 2);
}
if (argv.length === 0) {
  console.error("usage: node validate.mjs [--args-out FILE] MANIFEST.yaml...");
  process.exit(2);
}

let failed = 0;
let cacheArgs = null;
for (const file of argv) {
  let docs;
  try {
    docs = yaml.loadAll(readFileSync(file, "utf8")).filter((d) => d !== null);
  } catch (e) {
    console.error(`${file}: YAML: ${e.message}`);
    failed++;
    continue;
  }
  if (docs.length === 0) {
    console.error(`${file}: no documents`);
    failed++;
  }
  for (const [i, doc] of docs.entries()) {
    const what = `${basename(file)} #${i + 1} ${doc?.kind}/${doc?.metadata?.name}`;
    try {
      validate(doc);
      console.log(`ok   ${what}`);
    } catch (e) {
      console.error(`FAIL ${what}: ${e.message}`);
      failed++;
    }
    if (doc?.kind === "Deployment" && doc.metadata?.name === "lcache") {
      const c = doc.spec.template.spec.containers.find((c) => c.name === "lcache");
      cacheArgs = c?.args ?? null;
    }
  }
}
if (argsOut !== null) {
  if (cacheArgs === null) {
    console.error("no container lcache in a Deployment lcache: no args to write");
    failed++;
  } else {
    writeFileSync(argsOut, JSON.stringify(cacheArgs));
  }
}
console.log(`${argv.length} files: ${failed ? `${failed} problems` : "all valid"}`);
process.exit(failed ? 1 : 0);
