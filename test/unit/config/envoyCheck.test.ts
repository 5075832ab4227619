import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { loadConfig } from '../../../src/config/load.js';
import { envoyProblems } from '../../../src/config/envoyCheck.js';
import { repoPath } from '../../helpers/paths.js';

const demo = loadConfig(repoPath('scripts', 'demo', 'portcullis.yaml'));
const shipped = readFileSync(repoPath('envoy', 'envoy.yaml'), 'utf8');

type Node = Record<string, unknown>;

/** envoy.yaml with `edit` applied to its parsed form. */
function edited(edit: (routes: Node[], authz: Node) => void): string {
  const cfg = parse(shipped) as Node;
  const listener = ((cfg.static_resources as Node).listeners as Node[])[0]!;
  const hcm = ((listener.filter_chains as Node[])[0]!.filters as Node[])[0]!.typed_config as Node;
  const routes = ((hcm.route_config as Node).virtual_hosts as Node[])[0]!.routes as Node[];
  const authz = (hcm.http_filters as Node[]).find((f) => f.name === 'envoy.filters.http.ext_authz')!.typed_config as Node;
  edit(routes, authz);
  return stringify(cfg, { aliasDuplicateObjects: false });
}

describe('portcullis check --envoy', () => {
  it('the shipped envoy.yaml agrees with the demo configuration', () => {
    expect(envoyProblems(demo, shipped)).toEqual([]);
  });

  it('names a body window that differs from inspect.check_body_bytes', () => {
    const text = edited((_r, authz) => ((authz.with_request_body as Node).max_request_bytes = 1024));
    expect(envoyProblems(demo, text)).toEqual([{ path: '$.inspect.check_body_bytes', message: expect.stringMatching(/is 65536 but Envoy's ext_authz with_request_body\.max_request_bytes is 1024/) }]);
  });

  it('names routes bound to the wrong tool, to no tool, to another cluster or to an unknown tool', () => {
    const text = edited((routes) => {
      const docs = routes.find((r) => r.name === 'docs')!;
      (((docs.typed_per_filter_config as Node)['envoy.filters.http.ext_authz'] as Node).check_settings as Node).context_extensions = { route_tool: 'tickets' };
      const tickets = routes.find((r) => r.name === 'tickets')!;
      delete (tickets.typed_per_filter_config as Node)['envoy.filters.http.ext_authz'];
      (routes.find((r) => r.name === 'weather')!.route as Node).cluster = 'tool_docs';
      routes.unshift({ name: 'payroll', match: { prefix: '/tools/payroll/' }, route: { cluster: 'tool_docs' } });
    });
    const found = envoyProblems(demo, text).map((p) => `${p.path}: ${p.message}`);
    expect(found).toEqual([
      expect.stringMatching(/^envoy: route "payroll": serves \/tools\/payroll\/ but no tool "payroll"/),
      expect.stringMatching(/^\$\.tools\[0\]\.upstream: is "tool_weather" but envoy: route "weather" sends tool "weather" to cluster "tool_docs"/),
      expect.stringMatching(/^\$\.tools\[1\]: envoy: route "tickets" sends route_tool \(none\) for tool "tickets"/),
      expect.stringMatching(/^\$\.tools\[2\]: envoy: route "docs" sends route_tool "tickets" for tool "docs"/),
      // With its only route bound elsewhere, docs is served by no route at all.
      expect.stringMatching(/^\$\.tools\[1\]: no Envoy route serves tool "tickets"/),
      expect.stringMatching(/^\$\.tools\[2\]: no Envoy route serves tool "docs"/),
    ]);
  });

  it('names a tool whose upstream cluster Envoy does not define, and a tool no route serves', () => {
    const text = edited((routes) => {
      routes.splice(routes.findIndex((r) => r.name === 'exports'), 1);
    });
    const cfg = parse(shipped) as Node;
    ((cfg.static_resources as Node).clusters as Node[]).splice(((cfg.static_resources as Node).clusters as Node[]).findIndex((c) => c.name === 'tool_llm'), 1);
    const withoutCluster = stringify(cfg, { aliasDuplicateObjects: false });
    expect(envoyProblems(demo, text)).toEqual([{ path: '$.tools[4]', message: expect.stringMatching(/^no Envoy route serves tool "exports" \(a route matching \/tools\/exports\/ with context_extensions route_tool: exports\)/) }]);
    expect(envoyProblems(demo, withoutCluster)).toEqual([{ path: '$.tools[5].upstream', message: 'cluster "tool_llm" is not defined in the Envoy configuration (static_resources.clusters)' }]);
  });

  it('a route that names the tool under another prefix still counts as its route, and must go to its cluster', () => {
    const text = edited((routes) => {
      const exports = routes.find((r) => r.name === 'exports')!;
      exports.match = { prefix: '/v2/exports/' };
      (exports.route as Node).cluster = 'tool_llm';
    });
    expect(envoyProblems(demo, text)).toEqual([{ path: '$.tools[4].upstream', message: 'is "tool_exports" but envoy: route "exports" sends tool "exports" to cluster "tool_llm"' }]);
  });

  it('every cluster of a weighted route must be the tool\'s upstream', () => {
    const text = edited((routes) => {
      const route = routes.find((r) => r.name === 'tickets')!.route as Node;
      delete route.cluster;
      route.weighted_clusters = { clusters: [{ name: 'tool_tickets', weight: 90 }, { name: 'tool_payments', weight: 10 }] };
    });
    expect(envoyProblems(demo, text)).toEqual([{ path: '$.tools[1].upstream', message: 'is "tool_tickets" but envoy: route "tickets" sends tool "tickets" to cluster "tool_payments"' }]);
  });

  it('compares Envoy timeouts with what portcullis may spend inside them', () => {
    const text = edited((_r, authz) => (((authz.grpc_service as Node).timeout = '0.04s')));
    expect(envoyProblems(demo, text)).toEqual([{ path: '$.inspect.policy_budget_ms', message: expect.stringMatching(/is 50 ms but Envoy's ext_authz grpc_service\.timeout is 0\.04s/) }]);
    const cfg = parse(shipped) as Node;
    const listener = ((cfg.static_resources as Node).listeners as Node[])[0]!;
    const hcm = ((listener.filter_chains as Node[])[0]!.filters as Node[])[0]!.typed_config as Node;
    const proc = (hcm.http_filters as Node[]).find((f) => f.name === 'envoy.filters.http.ext_proc')!.typed_config as Node;
    proc.message_timeout = { seconds: 1, nanos: 0 };
    expect(envoyProblems(demo, stringify(cfg, { aliasDuplicateObjects: false }))).toEqual([
      { path: '$.tools[2].mcp.discovery_timeout_ms', message: expect.stringMatching(/is 1500 ms but Envoy's ext_proc message_timeout is 1s/) },
    ]);
  });
});
