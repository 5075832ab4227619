import { parse, stringify } from 'yaml';
import { renderEnvoyConfig, type EnvoyPorts, type PortcullisChannel } from '../../test/helpers/envoyConfig.js';

/**
 * Envoy configurations for the benchmark, all derived from envoy/envoy.yaml so every variant has
 * the same listener, route, cluster, timeout and access-log settings and differs only in the
 * HTTP filters under test.
 */

/** Which portcullis filters stay in the chain. */
export type EnvoyVariant = 'floor' | 'authz' | 'full';

const EXT_AUTHZ = 'envoy.filters.http.ext_authz';
const EXT_PROC = 'envoy.filters.http.ext_proc';

type Json = Record<string, unknown>;

/**
 * Renders a checkout's envoy/envoy.yaml for the given ports and channel to portcullis; the
 * current checkout's {@link renderEnvoyConfig} by default, a baseline checkout's own otherwise.
 */
export type EnvoyRenderer = (ports: EnvoyPorts, opts: { channel?: PortcullisChannel }) => string;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Removes the named filters from every http_filters list and their per-route configs. */
function dropFilters(node: unknown, names: ReadonlySet<string>, found: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) dropFilters(item, names, found);
    return;
  }
  if (!isObject(node)) return;
  for (const [key, value] of Object.entries(node)) {
    if (key === 'http_filters' && Array.isArray(value)) {
      node[key] = value.filter((f) => {
        const name = isObject(f) ? f.name : undefined;
        if (typeof name === 'string' && names.has(name)) {
          found.add(name);
          return false;
        }
        return true;
      });
    } else if (key === 'typed_per_filter_config' && isObject(value)) {
      for (const n of names) delete value[n];
    }
    dropFilters(node[key], names, found);
  }
}

/**
 * envoy/envoy.yaml rendered for `ports` (see test/helpers/envoyConfig.ts) with the filters a
 * variant does not measure removed: `floor` has neither ext_authz nor ext_proc, `authz` keeps
 * ext_authz only, `full` is the file as shipped. `render` picks the checkout (see
 * {@link EnvoyRenderer}). Fails if a filter to remove is not there, so a
 * renamed filter cannot silently turn a variant into another.
 */
export function renderVariant(
  variant: EnvoyVariant,
  ports: EnvoyPorts,
  runtime: Readonly<Record<string, string | number | boolean>> = {},
  channel: PortcullisChannel = { kind: 'plaintext' },
  render: EnvoyRenderer = renderEnvoyConfig,
): string {
  const text = render(ports, { channel });
  if (variant === 'full' && Object.keys(runtime).length === 0) return text;
  const cfg = parse(text) as Json;
  if (variant !== 'full') {
    const names = new Set(variant === 'floor' ? [EXT_AUTHZ, EXT_PROC] : [EXT_PROC]);
    const found = new Set<string>();
    dropFilters(cfg, names, found);
    for (const n of names) {
      if (!found.has(n)) throw new Error(`envoy.yaml: filter ${n} not found; cannot render the "${variant}" variant`);
    }
  }
  if (Object.keys(runtime).length > 0) addRuntime(cfg, runtime);
  return stringify(cfg, { aliasDuplicateObjects: false, lineWidth: 0 });
}

/** Adds (or extends) a static runtime layer, e.g. to try an Envoy runtime feature flag. */
function addRuntime(cfg: Json, values: Readonly<Record<string, string | number | boolean>>): void {
  const runtime = isObject(cfg.layered_runtime) ? cfg.layered_runtime : { layers: [] };
  const layers = Array.isArray(runtime.layers) ? runtime.layers : [];
  layers.push({ name: 'bench', static_layer: { ...values } });
  runtime.layers = layers;
  cfg.layered_runtime = runtime;
}
