import { readFileSync } from 'node:fs';
import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HandoffKey } from '../../src/authz/handoff.js';
import { authorizationService, externalProcessorService } from '../../src/server/protos.js';
import { startStack, type Stack } from '../helpers/index.js';
import { clientTarget } from '../helpers/grpc.js';
import { mutateBytes, randomCheck, randomStream } from './messages.js';
import { Rng } from './rng.js';

/**
 * Fuzzing the gRPC port over real gRPC, on the authenticated channel (as Envoy, the only client
 * that can connect): random and mutated CheckRequests and ProcessingRequest streams (wrong types,
 * forged and mutated hand-offs, huge header maps, NUL in names, phases out of order, undecodable
 * bytes). The process must survive, every call and stream must end with a well-formed answer or
 * a clean gRPC error (never a hang), normal calls keep working in between, and RSS stays bounded.
 *
 * `npm test` runs a fixed seed for a few seconds. Longer runs:
 *   PORTCULLIS_FUZZ_ITERATIONS=20000 PORTCULLIS_FUZZ_SEED=7 npx vitest run test/fuzz
 * (iterations per kind; the seed makes a failure reproducible, and is printed on failure).
 */

const SEED = Number(process.env.PORTCULLIS_FUZZ_SEED ?? 20261201);
const ITERATIONS = Number(process.env.PORTCULLIS_FUZZ_ITERATIONS ?? 150);
/** Calls in flight at once. */
const PARALLEL = 16;
/** A call or stream that takes longer than this counts as a hang. */
const CALL_DEADLINE_MS = 10_000;
/** RSS growth tolerated over the run (the heap settles, caches fill to their bounds). */
const MAX_RSS_GROWTH_MB = 200;

const CHECK = '/envoy.service.auth.v3.Authorization/Check';
const PROCESS = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
const identity = (b: Buffer): Buffer => b;

/** gRPC codes that mean portcullis answered cleanly (not: it hung, or the connection died). */
const CLEAN_ERRORS = new Set([2, 3, 8, 12, 13]); // UNKNOWN, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL

let stack: Stack;
let client: Client;
let key: HandoffKey;
const checkSerialize = authorizationService().Check!.requestSerialize as (m: unknown) => Buffer;
const checkDecode = authorizationService().Check!.responseDeserialize as (b: Buffer) => Record<string, unknown>;
const procSerialize = externalProcessorService().Process!.requestSerialize as (m: unknown) => Buffer;
const procDecode0 = externalProcessorService().Process!.requestDeserialize as (b: Buffer) => Record<string, unknown>;
const procDecode = externalProcessorService().Process!.responseDeserialize as (b: Buffer) => Record<string, unknown>;

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

beforeAll(async () => {
  stack = await startStack();
  const { target, creds } = clientTarget(stack.channel, stack.grpcPort, 'envoy');
  const Ctor = makeGenericClientConstructor({}, 'Raw');
  client = new Ctor(target, creds, { 'grpc.max_send_message_length': 64 * 1024 * 1024, 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  key = new HandoffKey(() => stack.prepared.secrets['secrets/handoff-key']!);
}, 120_000);
afterAll(async () => {
  client?.close();
  await stack?.stop();
});

/** What one call ended with. */
type Outcome = { kind: 'answer' } | { kind: 'error'; code: number; details: string };

function unary(bytes: Buffer): Promise<Outcome & { problem?: string }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(CHECK, identity, identity, bytes, { deadline: new Date(Date.now() + CALL_DEADLINE_MS) }, (err: ServiceError | null, res?: Buffer) => {
      if (err) return resolve({ kind: 'error', code: err.code, details: err.details });
      try {
        const r = checkDecode(res!);
        const status = r.status as { code?: unknown } | undefined;
        const one = Number(r.okResponse !== undefined && r.okResponse !== null) + Number(r.deniedResponse !== undefined && r.deniedResponse !== null);
        if (status === undefined || one !== 1) return resolve({ kind: 'answer', problem: `malformed CheckResponse ${JSON.stringify(r).slice(0, 200)}` });
        resolve({ kind: 'answer' });
      } catch (e) {
        resolve({ kind: 'answer', problem: `undecodable CheckResponse: ${(e as Error).message}` });
      }
    });
  });
}

const RESPONSE_KINDS = ['requestHeaders', 'responseHeaders', 'requestBody', 'responseBody', 'requestTrailers', 'responseTrailers', 'immediateResponse'];

function stream(messages: readonly Buffer[]): Promise<Outcome & { problem?: string }> {
  return new Promise((resolve) => {
    const call = client.makeBidiStreamRequest(PROCESS, identity, identity, { deadline: new Date(Date.now() + CALL_DEADLINE_MS) });
    let problem: string | undefined;
    let done = false;
    const end = (o: Outcome): void => {
      if (done) return;
      done = true;
      resolve(problem ? { ...o, problem } : o);
    };
    call.on('data', (b: Buffer) => {
      try {
        const r = procDecode(b);
        const kinds = RESPONSE_KINDS.filter((k) => r[k] !== undefined && r[k] !== null);
        if (kinds.length !== 1) problem ??= `reply with ${kinds.length} responses: ${JSON.stringify(r).slice(0, 200)}`;
      } catch (e) {
        problem ??= `undecodable ProcessingResponse: ${(e as Error).message}`;
      }
    });
    call.on('error', (e: ServiceError) => end({ kind: 'error', code: e.code, details: e.details }));
    call.on('status', (s: { code: number; details: string }) => end(s.code === 0 ? { kind: 'answer' } : { kind: 'error', code: s.code, details: s.details }));
    for (const m of messages) call.write(m);
    call.end();
  });
}

/** A Check Envoy would send for a plain allowed call: must keep working throughout. */
function controlCheck(): Buffer {
  return checkSerialize({ attributes: { request: { http: { method: 'GET', path: '/tools/weather/forecast?city=Oslo', headers: { ':method': 'GET', ':path': '/tools/weather/forecast?city=Oslo' } } } } });
}

/** Phase, size and flags of an encoded ProcessingRequest, for failure reports. */
function describeMessage(b: Buffer): string {
  try {
    const m = procDecode0(b);
    const eos = JSON.stringify(m, (_k, v: unknown) => (Buffer.isBuffer(v) ? null : v)).includes('"endOfStream":true');
    return `${String(m.request ?? 'none')}:${b.length}${m.metadataContext ? '+md' : ''}${m.observabilityMode ? '+obs' : ''}${eos ? '+eos' : ''}`;
  } catch {
    return `undecodable:${b.length}`;
  }
}

function judge(label: string, o: Outcome & { problem?: string }, failures: string[]): void {
  if (o.problem) failures.push(`${label}: ${o.problem}`);
  if (o.kind === 'error' && !CLEAN_ERRORS.has(o.code)) failures.push(`${label}: gRPC ${o.code} ${o.details}`);
}

async function inBatches(n: number, one: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < n; i += PARALLEL) await Promise.all(Array.from({ length: Math.min(PARALLEL, n - i) }, (_, j) => one(i + j)));
}

describe(`fuzzing the gRPC port (seed ${SEED}, ${ITERATIONS} per kind)`, () => {
  it('survives random and mutated Check and Process traffic, answers every call, keeps RSS bounded', async () => {
    const rng = new Rng(SEED);
    const pid = stack.portcullisPid();
    expect(pid).not.toBeNull();
    const failures: string[] = [];
    // Warm up (JIT, caches), then take the baseline.
    for (let i = 0; i < 20; i++) await unary(controlCheck());
    const rssStart = rssMb(pid!);
    let peak = rssStart;

    await inBatches(ITERATIONS, async (i) => {
      const check = randomCheck(rng);
      const encoded = checkSerialize(check);
      const bytes = rng.chance(0.3) ? mutateBytes(rng, encoded) : encoded;
      judge(`check #${i}`, await unary(bytes), failures);
    });
    await inBatches(ITERATIONS, async (i) => {
      const messages = randomStream(rng, rng.chance(0.7) ? key : null).map((m) => {
        const encoded = procSerialize(m);
        return rng.chance(0.15) ? mutateBytes(rng, encoded) : encoded;
      });
      const outcome = await stream(messages);
      // The messages' shape is worked out only after the stream, so it does not change the timing.
      const shape = (): string => messages.map(describeMessage).join(' ');
      judge(`stream #${i}`, outcome.problem || (outcome.kind === 'error' && !CLEAN_ERRORS.has(outcome.code)) ? { ...outcome, problem: `${outcome.problem ?? ''} [${shape()}]` } : outcome, failures);
      if (i % PARALLEL === 0) {
        peak = Math.max(peak, rssMb(pid!));
        // Other calls are unaffected: a normal Check still gets its decision.
        const control = await unary(controlCheck());
        if (control.kind !== 'answer' || control.problem) failures.push(`control check after stream #${i}: ${JSON.stringify(control)}`);
      }
    });

    expect(stack.portcullisPid(), `portcullis exited (seed ${SEED})\n${stack.logs().slice(-4000)}`).toBe(pid);
    expect(failures.slice(0, 20), `seed ${SEED}`).toEqual([]);
    expect((await fetch(`${stack.adminUrl}/healthz`)).status).toBe(200);
    const rssEnd = rssMb(pid!);
    peak = Math.max(peak, rssEnd);
    expect(peak - rssStart, `RSS ${rssStart.toFixed(0)} MB -> peak ${peak.toFixed(0)} MB (seed ${SEED})`).toBeLessThan(MAX_RSS_GROWTH_MB);
  }, 60_000 + ITERATIONS * 200);
});
