import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ProblemProducer } from './check.js';
import type { ConfigProblem } from './load.js';
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

function routeToolOf(route: Node): string | undefined {
  const perFilter = route.typed_per_filter_config;
  const authz = isNode(perFilter) ? perFilter['envoy.filters.http.ext_authz'] : undefined;
  const settings = isNode(authz) ? authz.check_settings : undefined;
  const ext = isNode(settings) ? settings.context_extensions : undefined;
  const tool = isNode(ext) ? ext.route_tool : undefined;
  return typeof tool === 'string' ? tool : undefined;
}

/** Seconds of a protobuf Duration as written in YAML (`"2s"`, `0.25s`, `{seconds, nanos}`), or null. */
export function durationSeconds(v: unknown): number | null {
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)s$/.exec(v.trim());
    return m ? Number(m[1]) : null;
  }
  if (isNode(v) && (v.seconds !== undefined || v.nanos !== undefined)) {
    const s = Number(v.seconds ?? 0);
    const n = Number(v.nanos ?? 0);
    return Number.isFinite(s) && Number.isFinite(n) ? s + n / 1e9 : null;
  }
  return null;
}

/** The HTTP filters of a given name (their typed_config), wherever they are in the document. */
function filters(doc: unknown, name: string): Node[] {
  const out: Node[] = [];
  for (const n of nodes(doc)) if (n.name === name && isNode(n.typed_config)) out.push(n.typed_config);
  return out;
}

/** Names of the statically defined clusters, or null when the document defines none (CDS). */
function staticClusters(doc: unknown): Set<string> | null {
  const sr = isNode(doc) ? doc.static_resources : undefined;
  const clusters = isNode(sr) ? sr.clusters : undefined;
  if (!Array.isArray(clusters)) return null;
  return new Set(clusters.filter(isNode).map((c) => c.name).filter((n): n is string => typeof n === 'string'));
}

/** A tool route of the Envoy document: a route under the tool prefix, or one that names a tool. */
interface ToolRoute {
  readonly label: string;
  /** The tool its path prefix serves, if it matches under `/tools/<name>/`. */
  readonly prefixTool: string | undefined;
  readonly prefix: string | undefined;
  readonly routeTool: string | undefined;
  /** Every cluster the route may send to: `cluster`, or each of `weighted_clusters`. */
  readonly clusters: readonly string[];
}

function routeClusters(route: Node): string[] {
  if (typeof route.cluster === 'string') return [route.cluster];
  const weighted = isNode(route.weighted_clusters) ? route.weighted_clusters.clusters : undefined;
  if (!Array.isArray(weighted)) return [];
  return weighted.filter(isNode).map((c) => c.name).filter((n): n is string => typeof n === 'string');
}

function toolRoutes(doc: unknown): ToolRoute[] {
  const out: ToolRoute[] = [];
  for (const n of nodes(doc)) {
    const match = n.match;
    const route = n.route;
    if (!isNode(match) || !isNode(route)) continue;
    const prefix = typeof match.prefix === 'string' ? match.prefix : typeof match.path === 'string' ? match.path : undefined;
    const prefixTool = prefix?.startsWith(TOOL_PREFIX) ? prefix.slice(TOOL_PREFIX.length).split('/')[0] || undefined : undefined;
    const routeTool = routeToolOf(n);
    if (prefixTool === undefined && routeTool === undefined) continue;
    const label = `envoy: route ${typeof n.name === 'string' ? `"${n.name}"` : (prefix ?? '(unnamed)')}`;
    out.push({ label, prefixTool, prefix, routeTool, clusters: routeClusters(route) });
  }
  return out;
}

/**
 * Problems found between an Envoy config (YAML text) and the gateway config; empty when they
 * agree. A problem about a tool is located at that tool's key in the gateway configuration; one
 * about the Envoy file alone (a route for no configured tool) is labelled `envoy: route "<name>"`.
 */
export function envoyProblems(cfg: GatewayConfig, envoyYaml: string): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  let doc: unknown;
  try {
    doc = parseYaml(envoyYaml);
  } catch (err) {
    return [{ path: 'envoy', message: `not YAML (${(err as Error).message.split('\n')[0] ?? ''})` }];
  }
  const index = new Map(cfg.tools.map((t, i) => [t.name, i]));
  for (const n of nodes(doc)) {
    const body = n.with_request_body;
    if (isNode(body) && body.max_request_bytes !== cfg.inspect.check_body_bytes) {
      out.push({
        path: '$.inspect.check_body_bytes',
        message: `is ${cfg.inspect.check_body_bytes} but Envoy's ext_authz with_request_body.max_request_bytes is ${String(body.max_request_bytes)}; set both to the same value`,
      });
    }
  }
  const routes = toolRoutes(doc);
  for (const r of routes) {
    const name = r.prefixTool ?? r.routeTool ?? '';
    const i = index.get(name);
    if (i === undefined) {
      out.push({ path: r.label, message: `serves ${r.prefix ?? `route_tool "${name}"`} but no tool "${name}" is configured` });
      continue;
    }
    const tool = cfg.tools[i]!;
    if (r.routeTool !== name) {
      out.push({ path: `$.tools[${i}]`, message: `${r.label} sends route_tool ${r.routeTool === undefined ? '(none)' : `"${r.routeTool}"`} for tool "${name}": every call on it would be denied` });
    }
    for (const cluster of r.clusters) {
      if (cluster !== tool.upstream) out.push({ path: `$.tools[${i}].upstream`, message: `is "${tool.upstream}" but ${r.label} sends tool "${name}" to cluster "${cluster}"` });
    }
  }
  const clusters = staticClusters(doc);
  cfg.tools.forEach((t, i) => {
    if (!routes.some((r) => r.routeTool === t.name && (r.prefixTool === undefined || r.prefixTool === t.name))) {
      out.push({ path: `$.tools[${i}]`, message: `no Envoy route serves tool "${t.name}" (a route matching ${TOOL_PREFIX}${t.name}/ with context_extensions route_tool: ${t.name}): agents cannot reach it` });
    }
    if (clusters && !clusters.has(t.upstream)) {
      out.push({ path: `$.tools[${i}].upstream`, message: `cluster "${t.upstream}" is not defined in the Envoy configuration (static_resources.clusters)` });
    }
  });
  // Timeouts: what portcullis may spend inside one Envoy call must fit in Envoy's budget for it.
  for (const authz of filters(doc, 'envoy.filters.http.ext_authz')) {
    const svc = authz.grpc_service;
    const timeout = durationSeconds(isNode(svc) ? svc.timeout : undefined);
    if (timeout !== null && timeout * 1000 <= cfg.inspect.policy_budget_ms) {
      out.push({ path: '$.inspect.policy_budget_ms', message: `is ${cfg.inspect.policy_budget_ms} ms but Envoy's ext_authz grpc_service.timeout is ${timeout}s: the Check would time out before the policy may finish` });
    }
  }
  for (const proc of filters(doc, 'envoy.filters.http.ext_proc')) {
    const timeout = durationSeconds(proc.message_timeout);
    if (timeout === null) continue;
    cfg.tools.forEach((t, i) => {
      if (t.mcp && t.mcp.discovery_timeout_ms >= timeout * 1000) {
        out.push({
          path: `$.tools[${i}].mcp.discovery_timeout_ms`,
          message: `is ${t.mcp.discovery_timeout_ms} ms but Envoy's ext_proc message_timeout is ${timeout}s: keep it below, or a tool list fetch outlives the message it answers`,
        });
      }
    });
  }
  return out;
}

/**
 * The `check --envoy FILE` producer: reads the Envoy configuration and cross-checks it (see
 * {@link envoyProblems}); an unreadable file is itself the problem.
 */
export function envoyCheck(file: string): ProblemProducer {
  return {
    name: 'envoy',
    run({ config }) {
      let text: string;
      try {
        text = readFileSync(resolve(file), 'utf8');
      } catch (err) {
        return [{ path: 'envoy', message: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` }];
      }
      return envoyProblems(config, text);
    },
  };
}
