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
    expect(envoyProblems(demo, text)).toEqual([expect.stringMatching(/max_request_bytes is 1024 but inspect\.check_body_bytes is 65536/)]);
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
    const found = envoyProblems(demo, text);
    expect(found).toHaveLength(4);
    expect(found.join('\n')).toMatch(/route "payroll" serves \/tools\/payroll\/ but no tool "payroll"/);
    expect(found.join('\n')).toMatch(/route "docs" sends route_tool "tickets" for tool "docs"/);
    expect(found.join('\n')).toMatch(/route "tickets" sends route_tool \(none\)/);
    expect(found.join('\n')).toMatch(/route "weather" goes to cluster "tool_docs" but tool "weather" has upstream "tool_weather"/);
  });
});
