import { parse as parseYaml } from 'yaml';
import { TOOL_PREFIX } from '../tools/registry.js';
import type { GatewayConfig } from './types.js';

/**
 * Cross-checks an Envoy configuration against the gateway configuration (`portcullis check
 * --envoy FILE`): the body window ext_authz forwards must be the one portcullis assumes, and every
 * tool route must name its tool (`route_tool`) and go to that tool's cluster. At run time the
 * same mistakes are denials; this finds them before deployment.
 */

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every mapping in a parsed document, depth first. */
function* nodes(v: unknown): Generator<Node> {
  if (Array.isArray(v)) {
    for (const item of v) yield* nodes(item);
  } else if (isNode(v)) {
    yield v;
    for (const child of Object.values(v)) yield* nodes(child);
  }
}

function routeTool(route: Node): string | undefined {
  const perFilter = route.typed_per_filter_config;
  const authz = isNode(perFilter) ? perFilter['envoy.filters.http.ext_authz'] : undefined;
  const settings = isNode(authz) ? authz.check_settings : undefined;
  const ext = isNode(settings) ? settings.context_extensions : undefined;
  const tool = isNode(ext) ? ext.route_tool : undefined;
  return typeof tool === 'string' ? tool : undefined;
}

/** Problems found between an Envoy config (YAML text) and the gateway config; empty when they agree. */
export function envoyProblems(cfg: GatewayConfig, envoyYaml: string): string[] {
  const out: string[] = [];
  let doc: unknown;
  try {
    doc = parseYaml(envoyYaml);
  } catch (err) {
    return [`envoy: not YAML (${(err as Error).message.split('\n')[0] ?? ''})`];
  }
  const tools = new Map(cfg.tools.map((t) => [t.name, t]));
  for (const n of nodes(doc)) {
    const body = n.with_request_body;
    if (isNode(body) && body.max_request_bytes !== cfg.inspect.check_body_bytes) {
      out.push(
        `envoy: ext_authz with_request_body.max_request_bytes is ${String(body.max_request_bytes)} but inspect.check_body_bytes is ${cfg.inspect.check_body_bytes}; set both to the same value`,
      );
    }
    const match = n.match;
    const route = n.route;
    if (!isNode(match) || !isNode(route) || typeof match.prefix !== 'string' || !match.prefix.startsWith(TOOL_PREFIX)) continue;
    const name = match.prefix.slice(TOOL_PREFIX.length).split('/')[0] ?? '';
    const label = `envoy: route ${typeof n.name === 'string' ? `"${n.name}"` : match.prefix}`;
    const tool = tools.get(name);
    if (!tool) {
      out.push(`${label} serves ${match.prefix} but no tool "${name}" is configured`);
      continue;
    }
    const routed = routeTool(n);
    if (routed !== name) out.push(`${label} sends route_tool ${routed === undefined ? '(none)' : `"${routed}"`} for tool "${name}": every call on it would be denied`);
    if (typeof route.cluster === 'string' && route.cluster !== tool.upstream) {
      out.push(`${label} goes to cluster "${route.cluster}" but tool "${name}" has upstream "${tool.upstream}"`);
    }
  }
  return out;
}
