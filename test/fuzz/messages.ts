import { AUTHZ_METADATA_NAMESPACE, HandoffKey, handoffStruct, sealHandoff } from '../../src/authz/handoff.js';
import type { AuthzMetadata } from '../../src/authz/check.js';
import type { Rng } from './rng.js';

/**
 * Generators of hostile CheckRequest and ProcessingRequest messages, in proto-loader object form
 * (encoded by the client with the same protos portcullis decodes with), plus byte-level mutation
 * of encoded messages (wrong wire types, truncation, garbage) for what an encoder would refuse.
 */

type Json = Record<string, unknown>;

const TOOLS = ['weather', 'tickets', 'docs', 'payroll', '', '\u0000'];
const PATHS = ['/tools/weather/forecast?city=Oslo', '/tools/tickets/tenants/acme/tickets', '/tools/docs/', '/', '', '/tools/../x', '/tools/weather/%00'];

/** A `google.protobuf.Value` of a random kind, sometimes nested. */
export function randomValue(rng: Rng, depth = 0): Json {
  switch (rng.int(depth > 2 ? 5 : 7)) {
    case 0:
      return { nullValue: 'NULL_VALUE' };
    case 1:
      return { numberValue: rng.pick([0, -1, 42, 1e308, Number.MAX_SAFE_INTEGER + 2, Number.NaN, Number.POSITIVE_INFINITY]) };
    case 2:
      return { stringValue: rng.text(40) };
    case 3:
      return { boolValue: rng.chance(0.5) };
    case 4:
      return { stringValue: rng.pick(TOOLS) };
    case 5:
      return { listValue: { values: Array.from({ length: rng.int(4) }, () => randomValue(rng, depth + 1)) } };
    default:
      return { structValue: randomStruct(rng, depth + 1) };
  }
}

/** A `google.protobuf.Struct` with random keys and values. */
export function randomStruct(rng: Rng, depth = 0): Json {
  const fields: Json = {};
  for (let i = rng.int(5); i > 0; i--) fields[rng.text(8)] = randomValue(rng, depth);
  return { fields };
}

/** A header map: usual names, hostile names and values, sometimes thousands of entries. */
function headerMap(rng: Rng): Record<string, string> {
  const h: Record<string, string> = {};
  const usual = [':method', ':path', ':authority', 'content-type', 'content-length', 'authorization', 'x-request-id', 'x-envoy-auth-partial-body', 'x-user-id', 'x-api-key', 'traceparent', 'x-slack-signature'];
  const n = rng.chance(0.05) ? 2000 + rng.int(2000) : rng.int(12);
  for (let i = 0; i < n; i++) h[rng.chance(0.5) ? rng.pick(usual) : `${rng.text(6)}${i}`] = rng.chance(0.1) ? 'x'.repeat(rng.int(20_000)) : rng.text(30);
  return h;
}

/** A CheckRequest with random, missing and hostile fields. */
export function randomCheck(rng: Rng): Json {
  const http: Json = {};
  if (rng.chance(0.8)) http.headers = headerMap(rng);
  if (rng.chance(0.7)) http.path = rng.chance(0.5) ? rng.pick(PATHS) : rng.text(60);
  if (rng.chance(0.7)) http.method = rng.pick(['GET', 'POST', 'DELETE', '', 'G\u0000T', 'CONNECT']);
  if (rng.chance(0.3)) http.rawBody = rng.chance(0.5) ? rng.bytes(rng.int(2048)) : Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: rng.int(9), method: 'tools/call', params: { name: rng.text(8), arguments: {} } }));
  if (rng.chance(0.1)) http.body = rng.text(200);
  if (rng.chance(0.2)) http.id = rng.text(20);
  if (rng.chance(0.1)) http.size = String(rng.int(1e9));
  const attributes: Json = { request: { http } };
  if (rng.chance(0.3)) attributes.source = { principal: rng.pick(['spiffe://demo.portcullis/agent/reporter', rng.text(30)]), certificate: rng.text(100) };
  if (rng.chance(0.3)) attributes.contextExtensions = { route_tool: rng.pick(TOOLS), [rng.text(5)]: rng.text(10) };
  if (rng.chance(0.2)) attributes.metadataContext = { filterMetadata: { [rng.text(10)]: randomStruct(rng) } };
  return rng.chance(0.05) ? {} : { attributes };
}

/** A hand-off: correctly sealed (possibly for a denied call), then sometimes mutated field by field. */
function handoff(rng: Rng, key: HandoffKey | null): Json {
  const meta: AuthzMetadata = {
    request_id: rng.chance(0.5) ? 'fuzz-1' : null,
    traceparent: null,
    method: 'GET',
    path: rng.pick(PATHS),
    tool: rng.pick(TOOLS),
    agent: 'reporter',
    agent_version: null,
    user: 'bob',
    tenant: 'acme',
    auth_methods: ['jwt'],
    roles: [],
    auth_error: null,
    forwarded_recorded: false,
    allowed: rng.chance(0.8),
    dry_run: false,
    rule: null,
    reason: null,
    policy_version: null,
    mcp_method: null,
    mcp_tool: null,
    mcp_prompt: null,
    mcp_resource: null,
    mcp_session: null,
    mcp_protocol_version: null,
    proven_by: [],
    jti: null,
    authz_ms: 1,
    body_sha256: null,
    mcp_decided_on: null,
    idempotency_key: null,
    idempotency_claim: null,
    fact_records: [],
    budget_records: [],
  };
  const signer = key ?? HandoffKey.ephemeral();
  const struct = handoffStruct(sealHandoff(meta, signer)) as unknown as { fields: { portcullis: { structValue: { fields: Json } } } };
  const fields = struct.fields.portcullis.structValue.fields;
  for (let i = rng.chance(0.5) ? rng.int(4) : 0; i > 0; i--) {
    const name = rng.pick([...Object.keys(fields), rng.text(6)]);
    if (rng.chance(0.3)) delete fields[name];
    else fields[name] = randomValue(rng);
  }
  return rng.chance(0.1) ? randomStruct(rng) : (struct as unknown as Json);
}

function headerList(rng: Rng): Json {
  const headers = Object.entries(headerMap(rng)).map(([key, v]) => (rng.chance(0.5) ? { key, rawValue: Buffer.from(v) } : { key, value: v }));
  return { headers: { headers } };
}

/** One ProcessingRequest of a random phase. */
function randomPhase(rng: Rng, key: HandoffKey | null): Json {
  const kind = rng.pick(['requestHeaders', 'requestBody', 'requestTrailers', 'responseHeaders', 'responseBody', 'responseTrailers', 'none']);
  const msg: Json = {};
  const body = (): Json => ({ body: rng.chance(0.3) ? Buffer.from('{"a":1,"a":2}') : rng.bytes(rng.int(rng.chance(0.05) ? 200_000 : 512)), endOfStream: rng.chance(0.5) });
  switch (kind) {
    case 'requestHeaders':
    case 'responseHeaders':
      msg[kind] = { ...headerList(rng), endOfStream: rng.chance(0.3) };
      break;
    case 'requestBody':
    case 'responseBody':
      msg[kind] = body();
      break;
    case 'requestTrailers':
    case 'responseTrailers':
      msg[kind] = { trailers: headerList(rng).headers };
      break;
    default:
      break;
  }
  if (rng.chance(0.6)) msg.metadataContext = { filterMetadata: { [rng.chance(0.9) ? AUTHZ_METADATA_NAMESPACE : rng.text(8)]: handoff(rng, key) } };
  if (rng.chance(0.05)) msg.observabilityMode = true;
  return msg;
}

/**
 * The messages of one Process stream: sometimes a plausible exchange (signed request headers,
 * then bodies and response), otherwise phases in any order, repeated or missing.
 */
export function randomStream(rng: Rng, key: HandoffKey | null): Json[] {
  const n = rng.int(8);
  const out: Json[] = [];
  for (let i = 0; i < n; i++) out.push(randomPhase(rng, key));
  return out;
}

/**
 * Mutates an encoded message: flips, inserts or deletes bytes, truncates it, or writes a field
 * with a wrong wire type (a length-delimited field as a varint and the reverse), or returns garbage.
 */
export function mutateBytes(rng: Rng, encoded: Buffer): Buffer {
  const b = Buffer.from(encoded);
  switch (rng.int(6)) {
    case 0:
      for (let i = rng.int(8) + 1; i > 0 && b.length > 0; i--) b[rng.int(b.length)] = rng.int(256);
      return b;
    case 1:
      return b.subarray(0, rng.int(b.length + 1));
    case 2: {
      const at = rng.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), rng.bytes(rng.int(32) + 1), b.subarray(at)]);
    }
    case 3: {
      // Field 1 (attributes / request_headers) as a varint, then the original bytes.
      return Buffer.concat([Buffer.from([0x08, rng.int(128)]), b]);
    }
    case 4: {
      // A field number the schema has with a length-delimited type, claiming a huge length.
      return Buffer.concat([b, Buffer.from([(rng.int(15) + 1) << 3 | 2, 0xff, 0xff, 0xff, 0x0f])]);
    }
    default:
      return rng.bytes(rng.int(256));
  }
}
