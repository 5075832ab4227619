import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { repoPath } from './paths.js';

type Json = Record<string, unknown>;

/**
 * The commented `transport_socket` block envoy/envoy.yaml documents on a tool cluster, uncommented
 * and parsed, so tests run the documented configuration rather than a copy of it. Throws when the
 * cluster carries no such block.
 */
export function documentedUpstreamTls(cluster: string): Json {
  const lines = readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8').split('\n');
  const start = lines.findIndex((l) => new RegExp(`^\\s*- name: ${cluster}\\s*$`).test(l));
  if (start < 0) throw new Error(`envoy.yaml: no cluster ${cluster}`);
  for (let i = start + 1; i < lines.length && !/^\s*- name: /.test(lines[i] as string); i++) {
    const head = /^(\s*)# transport_socket:\s*$/.exec(lines[i] as string);
    if (!head) continue;
    const prefix = `${head[1]}# `;
    const block = ['transport_socket:'];
    for (let j = i + 1; j < lines.length && (lines[j] as string).startsWith(`${prefix}  `); j++) block.push((lines[j] as string).slice(prefix.length));
    return (parse(block.join('\n')) as { transport_socket: Json }).transport_socket;
  }
  throw new Error(`envoy.yaml: cluster ${cluster} documents no commented transport_socket block`);
}

/**
 * The documented block with a test CA, SNI and expected SAN in place of the placeholders. Fails
 * if the block no longer has the fields the documentation tells operators to set.
 */
export function upstreamTlsSocket(cluster: string, opts: { ca: string; san: string }): Json {
  const socket = structuredClone(documentedUpstreamTls(cluster));
  const typed = socket.typed_config as Json;
  if (typeof typed.sni !== 'string') throw new Error('documented UpstreamTlsContext has no sni');
  typed.sni = opts.san;
  const validation = (typed.common_tls_context as Json).validation_context as Json;
  const trusted = validation.trusted_ca as Json;
  if (typeof trusted.filename !== 'string') throw new Error('documented UpstreamTlsContext has no trusted_ca file');
  trusted.filename = opts.ca;
  const sans = validation.match_typed_subject_alt_names as Json[];
  if (!Array.isArray(sans) || sans.length !== 1) throw new Error('documented UpstreamTlsContext must match exactly one SAN');
  (sans[0]?.matcher as Json).exact = opts.san;
  return socket;
}
