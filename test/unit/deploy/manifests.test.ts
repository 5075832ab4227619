import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { repoPath } from '../../helpers/paths.js';

/**
 * The shipped deployment files keep the admin surfaces off the network: Envoy's admin (which
 * offers POST /quitquitquit) on loopback in every file that configures one, and a NetworkPolicy
 * that lets only Envoy reach portcullis' gRPC port and nobody from the agent network its admin port.
 */

type Json = Record<string, unknown>;

function docsIn(dir: string): { file: string; doc: Json }[] {
  return readdirSync(repoPath(dir))
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .flatMap((f) => parseAllDocuments(readFileSync(repoPath(dir, f), 'utf8')).map((d) => ({ file: join(dir, f), doc: d.toJS() as Json })))
    .filter((d) => d.doc !== null);
}

/** Every `admin: { address: ... }` block anywhere in a document (Envoy bootstrap shape). */
function envoyAdmins(node: unknown, out: Json[] = []): Json[] {
  if (Array.isArray(node)) node.forEach((n) => envoyAdmins(n, out));
  else if (typeof node === 'object' && node !== null) {
    for (const [k, v] of Object.entries(node as Json)) {
      if (k === 'admin' && typeof v === 'object' && v !== null && 'address' in (v as Json)) out.push(v as Json);
      envoyAdmins(v, out);
    }
  }
  return out;
}

describe('shipped deployment files', () => {
  it("Envoy's admin listens on loopback in every shipped Envoy config", () => {
    const all = [
      { file: 'envoy/envoy.yaml', doc: parseAllDocuments(readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8'))[0]!.toJS() as Json },
      ...docsIn('envoy/k8s'),
      ...docsIn('envoy/istio'),
    ];
    const admins = all.flatMap((d) => envoyAdmins(d.doc).map((a) => ({ file: d.file, a })));
    expect(admins.length).toBeGreaterThan(0);
    for (const { file, a } of admins) {
      const sock = (a.address as { socket_address?: { address?: string }; pipe?: unknown }).socket_address;
      expect(sock?.address, file).toBe('127.0.0.1');
    }
    // No Service publishes Envoy's admin port.
    for (const { file, doc } of docsIn('envoy/k8s')) {
      if (doc.kind !== 'Service') continue;
      const ports = ((doc.spec as Json).ports as { port: number; targetPort?: unknown }[]).map((p) => p.port);
      expect(ports, file).not.toContain(9901);
    }
  });

  it("a NetworkPolicy admits only Envoy's pods to portcullis' gRPC port and only monitoring to its admin port", () => {
    const k8s = docsIn('envoy/k8s');
    const deployment = k8s.find((d) => d.doc.kind === 'Deployment' && (d.doc.metadata as Json).name === 'portcullis')!.doc;
    const podLabels = ((deployment.spec as Json).template as { metadata: { labels: Record<string, string> } }).metadata.labels;
    const policies = k8s.filter((d) => d.doc.kind === 'NetworkPolicy').map((d) => d.doc.spec as Json);
    const mine = policies.filter((p) => Object.entries((p.podSelector as { matchLabels: Record<string, string> }).matchLabels).every(([k, v]) => podLabels[k] === v));
    expect(mine).toHaveLength(1);
    const policy = mine[0]!;
    expect(policy.policyTypes).toEqual(['Ingress']);
    const rules = policy.ingress as { from?: Json[]; ports?: { port: number | string }[] }[];
    const byPort = (port: number): { from?: Json[] }[] => rules.filter((r) => (r.ports ?? []).some((p) => p.port === port));
    // Every rule names its sources and its ports: nothing is open to every pod or every port.
    for (const r of rules) {
      expect(r.from && r.from.length > 0).toBe(true);
      expect(r.ports && r.ports.length > 0).toBe(true);
      for (const f of r.from!) {
        expect(f.ipBlock).toBeUndefined();
        expect(Object.keys((f.podSelector as { matchLabels?: Json } | undefined)?.matchLabels ?? {}).length, 'a pod selector per source').toBeGreaterThan(0);
      }
    }
    const grpc = byPort(9191);
    expect(grpc).toHaveLength(1);
    expect(JSON.stringify(grpc[0]!.from)).toContain('portcullis-envoy');
    const admin = byPort(9464);
    expect(admin).toHaveLength(1);
    expect(JSON.stringify(admin[0]!.from)).toContain('monitoring');
    expect(JSON.stringify(admin[0]!.from)).not.toContain('portcullis-envoy');
  });
});
