"""Validates the Kubernetes manifests of deploy/kubernetes/ (or another folder).

    python check_kubernetes.py DIR [--queue NAME] [--kubernetes-version 1.30]

Every resource that kustomization.yaml lists is checked against a schema:
core resources with kubernetes-validate's strict schemas (generated from
Kubernetes' OpenAPI; unknown fields are errors), KEDA's ScaledObject and
TriggerAuthentication with the models cloudcoil-models-keda generates from
KEDA's CRDs, made strict the same way (unknown fields are errors, as with
`kubectl apply --validate=strict`). Then the references between them:
secrets, keys and config maps the Deployment names exist, the Service
selects the Deployment's pods, the ScaledObject scales that Deployment on the
request queue NAME through an existing TriggerAuthentication, and the
probes are /health (liveness) and /ready (readiness).

With --rendered, the output of `kubectl kustomize DIR` is checked the same
way (generated Secret and ConfigMap, rewritten references).

Run by crates/cli/tests/deploy.rs with the interpreter of the virtual
environment that scripts/lib.sh's ensure_k8s_validator makes. Prints one
line per problem and exits 1 if there is any, 0 otherwise.
"""

import argparse
import copy
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

KEDA_MODELS = {
    "ScaledObject": keda.ScaledObject,
    "TriggerAuthentication": keda.TriggerAuthentication,
}


def strict(schema):
    """The schema with every object closed: properties it does not name are
    errors (KEDA's CRDs leave objects open; the API server prunes)."""
    schema = copy.deepcopy(schema)

    def close(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def keda_errors(doc):
    model = KEDA_MODELS.get(doc.get("kind"))
    if model is None:
        return [f"no KEDA schema for kind {doc.get('kind')!r}"]
    schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def core_errors(doc, version):
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


def load(folder):
    """(kustomization, [(file, document)]) or exits on an unreadable folder."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization.get("resources", []):
        for doc in yaml.safe_load_all((folder / name).read_text()):
            if doc is not None:
                docs.append((name, doc))
    return kustomization, docs


def name_of(doc):
    return (doc.get("metadata") or {}).get("name")


def schema_problems(docs, version):
    problems = []
    for file, doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            problems.append(f"{file}: a document without apiVersion and kind")
            continue
        where = f"{file}: {doc.get('kind')} {name_of(doc)}"
        if doc["apiVersion"].startswith("keda.sh/"):
            errors = keda_errors(doc)
        else:
            errors = core_errors(doc, version)
        problems += [f"{where}: {e}" for e in errors]
    return problems


def check(folder, queue, version, rendered=None):
    problems = []
    kustomization, docs = load(folder)

    listed = set(kustomization.get("resources", []))
    for path in sorted(folder.glob("*.yaml")):
        if path.name != "kustomization.yaml" and path.name not in listed:
            problems.append(f"{path.name}: not listed in kustomization.yaml's resources")
    generated = {"Secret": {}, "ConfigMap": {}}
    for kind, key in (("Secret", "secretGenerator"), ("ConfigMap", "configMapGenerator")):
        for gen in kustomization.get(key, []):
            keys = set()
            for f in gen.get("files", []):
                if not (folder / f).is_file():
                    problems.append(f"kustomization.yaml: {key} {gen['name']}: no file {f}")
                keys.add(f.split("=", 1)[0] if "=" in f else pathlib.Path(f).name)
            for literal in gen.get("literals", []):
                keys.add(literal.split("=", 1)[0])
            generated[kind][gen["name"]] = keys

    problems += schema_problems(docs, version)
    if not problems:
        problems += reference_problems(docs, generated, queue)
    if rendered is not None:
        # What `kubectl kustomize` made of the folder: generated objects with
        # their hashed names, references rewritten, labels and namespace set.
        out = [("(rendered)", d) for d in yaml.safe_load_all(rendered.read_text()) if d is not None]
        if len(out) != len(docs) + sum(len(g) for g in generated.values()):
            problems.append(f"(rendered): {len(out)} objects, expected the resources and generated ones")
        found = schema_problems(out, version)
        if not found:
            found = reference_problems(out, {"Secret": {}, "ConfigMap": {}}, queue)
        problems += [p if p.startswith("(rendered)") else f"(rendered): {p}" for p in found]
    return problems


def reference_problems(docs, generated, queue):
    problems = []
    by_kind = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], {})[name_of(doc)] = doc
    secrets = {n: set((d.get("stringData") or {}) | (d.get("data") or {}))
               for n, d in by_kind.get("Secret", {}).items()}
    secrets.update(generated["Secret"])
    configmaps = {n: set(d.get("data") or {}) for n, d in by_kind.get("ConfigMap", {}).items()}
    configmaps.update(generated["ConfigMap"])

    def need_secret(where, name, key=None):
        if name not in secrets:
            problems.append(f"{where}: no Secret {name!r}")
        elif key is not None and key not in secrets[name]:
            problems.append(f"{where}: Secret {name!r} has no key {key!r}")

    deployments = by_kind.get("Deployment", {})
    for dname, dep in deployments.items():
        where = f"Deployment {dname}"
        pod = dep["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                need_secret(f"{where}: volume {volume['name']}", volume["secret"]["secretName"])
            if "configMap" in volume and volume["configMap"]["name"] not in configmaps:
                problems.append(f"{where}: volume {volume['name']}: no ConfigMap {volume['configMap']['name']!r}")
        for c in pod["containers"]:
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    need_secret(f"{where}: env {env['name']}", ref["name"], ref["key"])
            for source in c.get("envFrom", []):
                if "configMapRef" in source and source["configMapRef"]["name"] not in configmaps:
                    problems.append(f"{where}: no ConfigMap {source['configMapRef']['name']!r}")
                if "secretRef" in source:
                    need_secret(f"{where}: envFrom", source["secretRef"]["name"])
            probes = {p: (c.get(p) or {}).get("httpGet", {}).get("path")
                      for p in ("livenessProbe", "readinessProbe")}
            if probes != {"livenessProbe": "/health", "readinessProbe": "/ready"}:
                problems.append(f"{where}: container {c['name']}: probes {probes}, "
                                "expected liveness /health and readiness /ready")
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        selector = dep["spec"]["selector"].get("matchLabels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{where}: its selector does not select its own pods")

    def selects_a_deployment(selector):
        return any(all(d["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                       for k, v in selector.items())
                   for d in deployments.values())

    services = by_kind.get("Service", {})
    for sname, svc in services.items():
        if not selects_a_deployment(svc["spec"].get("selector", {})):
            problems.append(f"Service {sname}: selects no Deployment's pods")
    for pname, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if not selects_a_deployment(pdb["spec"]["selector"].get("matchLabels", {})):
            problems.append(f"PodDisruptionBudget {pname}: selects no Deployment's pods")
    for iname, ing in by_kind.get("Ingress", {}).items():
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                svc = services.get(backend["name"])
                ports = {p.get("name") for p in svc["spec"]["ports"]} if svc else set()
                if svc is None or backend["port"].get("name", "") not in ports | {""}:
                    problems.append(f"Ingress {iname}: no Service port {backend}")

    auths = by_kind.get("TriggerAuthentication", {})
    for aname, auth in auths.items():
        for ref in auth["spec"].get("secretTargetRef", []):
            need_secret(f"TriggerAuthentication {aname}", ref["name"], ref["key"])
    scaled = by_kind.get("ScaledObject", {})
    if not scaled:
        problems.append("no ScaledObject")
    for sname, so in scaled.items():
        where = f"ScaledObject {sname}"
        target = so["spec"]["scaleTargetRef"]
        if target.get("kind", "Deployment") != "Deployment" or target["name"] not in deployments:
            problems.append(f"{where}: scales {target}, not a Deployment of these manifests")
        rabbit = [t for t in so["spec"]["triggers"] if t["type"] == "rabbitmq"]
        if not rabbit:
            problems.append(f"{where}: no rabbitmq trigger")
        for t in rabbit:
            if queue is not None and t["metadata"].get("queueName") != queue:
                problems.append(f"{where}: rabbitmq trigger on queue "
                                f"{t['metadata'].get('queueName')!r}, the server's is {queue!r}")
            ref = (t.get("authenticationRef") or {}).get("name")
            if ref not in auths:
                problems.append(f"{where}: rabbitmq trigger: no TriggerAuthentication {ref!r}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--queue", help="the RPC request queue the rabbitmq trigger must watch")
    parser.add_argument("--kubernetes-version", default="1.30")
    parser.add_argument("--rendered", type=pathlib.Path,
                        help="the output of `kubectl kustomize FOLDER`, checked the same way")
    args = parser.parse_args()
    problems = check(args.folder, args.queue, args.kubernetes_version, args.rendered)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"{args.folder}: valid (Kubernetes {args.kubernetes_version} strict schemas, KEDA CRD models)")


if __name__ == "__main__":
    main()
