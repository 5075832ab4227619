import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { repoPath } from '../../helpers/paths.js';
import { deployTool, runCheck, yamlDocs, type Json } from './support.js';

/**
 * Validators for rendered manifests: Kubernetes' own kinds through kubernetes-validate (strict:
 * unknown fields are errors), Istio's through the openAPIV3Schema of its CRDs (istio.io/api,
 * pinned), and the mesh config fragment against the MeshConfig proto's field names.
 */

const ISTIO = repoPath('.tools', 'schemas', 'istio');

/** API groups whose kinds kubernetes-validate knows (the rest are CRDs). */
export function isCoreKind(doc: Json): boolean {
  const api = String(doc.apiVersion);
  return !api.includes('.') || api.endsWith('.k8s.io/v1') || /^(apps|policy|batch|autoscaling)\//.test(api);
}

/** Strict kubernetes-validate of one multi-document file; the problems it reports (none: valid). */
export function kubernetesProblems(file: string, version: string): string[] {
  const res = runCheck(deployTool('kubernetes-validate'), ['--strict', '--no-warn', '-k', version, file]);
  const lines = res.output.split('\n').filter((l) => l.trim() !== '' && !/ passed for resource /.test(l));
  if (res.status !== 0 && lines.length === 0) lines.push(`kubernetes-validate exited ${res.status}`);
  return res.status === 0 ? [] : lines;
}

/**
 * CRD schemas are open by default (the API server prunes unknown fields); with kubectl's strict
 * field validation an unknown field is an error. Closing every object that lists its properties
 * (and does not preserve unknown fields) gives the test the same strictness.
 */
function closeObjects(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(closeObjects);
  if (typeof node !== 'object' || node === null) return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node as Json)) {
    if (k === 'x-kubernetes-validations') continue; // CEL: not evaluated here
    out[k] = closeObjects(v);
  }
  if (out.properties && out.additionalProperties === undefined && out['x-kubernetes-preserve-unknown-fields'] !== true) {
    out.additionalProperties = false;
  }
  return out;
}

let istio: Map<string, ValidateFunction> | undefined;

/** The Istio CRD validators by `apiVersion/kind`. */
function istioValidators(): Map<string, ValidateFunction> {
  if (istio) return istio;
  let text: string;
  try {
    text = readFileSync(`${ISTIO}/crds.yaml`, 'utf8');
  } catch {
    throw new Error(`Istio CRDs are not installed at ${ISTIO}: run "bash scripts/install-tools.sh" (npm test does it)`);
  }
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats.default(ajv);
  for (const f of ['int32', 'int64', 'double', 'float', 'binary']) ajv.addFormat(f, true);
  istio = new Map();
  for (const crd of yamlDocs(text)) {
    if (crd.kind !== 'CustomResourceDefinition') continue;
    const spec = crd.spec as { group: string; names: { kind: string }; versions: { name: string; schema: { openAPIV3Schema: Json } }[] };
    for (const v of spec.versions) {
      const schema = closeObjects(v.schema.openAPIV3Schema) as Json;
      // apiVersion, kind and metadata are checked by the API server itself, not the CRD schema.
      (schema.properties as Json).metadata = { type: 'object' };
      (schema.properties as Json).apiVersion = { type: 'string' };
      (schema.properties as Json).kind = { type: 'string' };
      istio.set(`${spec.group}/${v.name}/${spec.names.kind}`, ajv.compile(schema));
    }
  }
  return istio;
}

/** Problems of one Istio resource against its CRD schema (none: valid). */
export function istioProblems(doc: Json): string[] {
  const key = `${String(doc.apiVersion)}/${String(doc.kind)}`;
  const validate = istioValidators().get(key);
  if (!validate) return [`no Istio CRD for ${key}`];
  if (validate(doc)) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
}

/** Fields (json names) of a proto message in Istio's mesh config proto, with their types. */
export function meshProtoFields(message: string): Map<string, string> {
  const proto = readFileSync(`${ISTIO}/mesh-config.proto`, 'utf8');
  const start = new RegExp(`\\bmessage ${message} \\{`).exec(proto);
  if (!start) throw new Error(`mesh config proto has no message ${message}`);
  const fields = new Map<string, string>();
  // Blocks entered since the message's own: fields of a oneof belong to the message, fields of
  // a nested message or enum do not.
  const blocks: boolean[] = [];
  let line = '';
  for (let i = start.index + start[0].length; i < proto.length; i++) {
    const c = proto[i]!;
    if (c === '{') {
      blocks.push(/^\s*oneof\b/.test(line));
      line = '';
    } else if (c === '}') {
      if (blocks.length === 0) break;
      blocks.pop();
      line = '';
    } else if (c === '\n') {
      const m = blocks.every(Boolean) ? /^\s*(?:repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*\d+/.exec(line) : null;
      if (m) fields.set(m[2]!.replace(/_(\w)/g, (_s, ch: string) => ch.toUpperCase()), m[1]!);
      line = '';
    } else line += c;
  }
  return fields;
}
