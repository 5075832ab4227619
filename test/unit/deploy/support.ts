import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { repoPath } from '../../helpers/paths.js';

/** A parsed YAML/JSON object. */
export type Json = Record<string, unknown>;

/**
 * A pinned deployment-check tool installed by scripts/install-tools.sh. Missing means the run
 * fails (with how to fix it), never that the check is skipped.
 */
export function deployTool(name: 'helm' | 'kubernetes-validate' | 'check-jsonschema'): string {
  const path = name === 'helm' ? repoPath('.tools', 'bin', 'helm') : repoPath('.tools', 'venv', 'bin', name);
  if (!existsSync(path)) throw new Error(`${name} is not installed at ${path}: run "bash scripts/install-tools.sh" (npm test does it)`);
  return path;
}

/** A pinned version variable of scripts/install-tools.sh (e.g. ENVOY_VERSION). */
export function pinnedVersion(variable: string): string {
  const m = new RegExp(`^${variable}=(\\S+)$`, 'm').exec(readFileSync(repoPath('scripts', 'install-tools.sh'), 'utf8'));
  if (!m) throw new Error(`scripts/install-tools.sh pins no ${variable}`);
  return m[1]!.replace(/^['"]|['"]$/g, '');
}

/** Every non-empty document of a multi-document YAML text. */
export function yamlDocs(text: string): Json[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`invalid YAML: ${d.errors[0]!.message}`);
      return d.toJS() as Json | null;
    })
    .filter((d): d is Json => d !== null && typeof d === 'object');
}

/** Runs a validator; returns its exit status and output instead of throwing on a failed check. */
export function runCheck(cmd: string, args: string[]): { status: number; output: string } {
  try {
    return { status: 0, output: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    const err = e as { status?: number | null; stdout?: string; stderr?: string; message: string };
    if (typeof err.status !== 'number') throw e;
    return { status: err.status, output: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

/** The port a `socket_address` of a named Envoy cluster points at. */
export function envoyClusterPort(envoy: Json, cluster: string): number {
  const clusters = ((envoy.static_resources as Json).clusters as Json[]) ?? [];
  const c = clusters.find((x) => x.name === cluster);
  if (!c) throw new Error(`envoy.yaml has no cluster ${cluster}`);
  const m = /"port_value":(\d+)/.exec(JSON.stringify(c.load_assignment));
  if (!m) throw new Error(`cluster ${cluster} has no port`);
  return Number(m[1]);
}
