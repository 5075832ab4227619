/**
 * DLP micro-benchmark: MB/s of the full built-in catalog on realistic and adversarial text,
 * buffered (`Scanner.scan`, `applyDlp`) and streamed (`createStreamRedactor`).
 *
 *   npx vite-node bench/dlp.bench.ts
 *   DLP_BENCH_BASELINE=<path to another build's src/dlp/index.ts> npx vite-node bench/dlp.bench.ts
 *
 * With a baseline, each case runs both implementations in alternation in one process (so a
 * noisy machine affects both alike) and prints their ratio. Each figure is the best of several
 * rounds. A bare `charCodeAt` loop over 1 MB is printed as a reference for this machine.
 */
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import * as current from '../src/dlp/index.js';

/** The part of the DLP module the benchmark drives. */
interface DlpModule {
  compileCatalog: typeof current.compileCatalog;
  applyDlp: typeof current.applyDlp;
  createStreamRedactor: typeof current.createStreamRedactor;
}

const MB = 1 << 20;

/** Deterministic PRNG (mulberry32), so every run measures the same text. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick(r: () => number, alphabet: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
  return s;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A JSON tool response (MCP `tools/call` result wrapping a JSON list of orders), `size` chars. */
function jsonBody(size: number): string {
  const r = rng(7);
  const items = [];
  let len = 0;
  for (let i = 0; len < size * 1.2; i++) {
    const item = {
      id: `ord_${(1000 + i).toString(36)}${i}`,
      created_at: `2024-05-${String((i % 28) + 1).padStart(2, '0')}T12:${String(i % 60).padStart(2, '0')}:05Z`,
      status: i % 3 === 0 ? 'shipped' : 'pending',
      amount: { value: 1999 + i * 7, currency: 'USD' },
      customer: { name: `Customer ${i}`, tier: 'gold', ref: pick(r, ALNUM, 12) },
      url: `https://api.shop.example.com/v2/orders/${1000 + i}?expand=items`,
      etag: pick(r, '0123456789abcdef', 32),
      note: 'Delivery window confirmed; leave at front desk if nobody answers.',
      version: 3,
    };
    const s = JSON.stringify(item);
    len += s.length;
    items.push(item);
  }
  const text = JSON.stringify({ jsonrpc: '2.0', id: 42, result: { content: [{ type: 'text', text: JSON.stringify(items) }] } });
  return text.slice(0, size);
}

/** Log-like text where about one line in six carries a secret or personal datum. */
function secretsText(size: number): string {
  const r = rng(11);
  const makers: (() => string)[] = [
    () => `user contact alice.${pick(r, 'abcdefghij', 5)}@example.org`,
    () => `card 4111 1111 1111 1111 on file`,
    () => `export AWS_ACCESS_KEY_ID=${'AKIA'}${pick(r, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}`,
    () => `token ${'ghp_'}${pick(r, ALNUM, 36)}`,
    () => `client ip 10.${Math.floor(r() * 255)}.${Math.floor(r() * 255)}.7 port 443`,
    () => `password="${pick(r, ALNUM + '!#%', 14)}"`,
    () => `Authorization: Bearer ${pick(r, ALNUM, 40)}`,
    () => `call +1 415 555 ${String(1000 + Math.floor(r() * 8999))}`,
  ];
  const plain = [
    '2024-05-01T10:00:00Z INFO request handled path=/api/v1/users/1234 status=200 duration_ms=12',
    'The quick brown fox jumps over the lazy dog while the agent summarises the quarterly report.',
    '{"event":"click","ts":1714557600123,"session":"a8f5f167f44f4964e6c998dee827110c","ok":true}',
    'WARN retrying upstream call attempt=2 backoff=250ms host=api.example.com region=eu-west-1',
    'Meeting notes: discuss roadmap, hiring plan and budget; follow up next Tuesday at 10:30.',
  ];
  let out = '';
  for (let i = 0; out.length < size; i++) {
    out += `${i % 6 === 5 ? makers[Math.floor(r() * makers.length)]!() : plain[i % plain.length]!}\n`;
  }
  return out.slice(0, size);
}

const fill = (unit: string, size = MB): string => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);

interface Case {
  readonly label: string;
  readonly bytes: number;
  readonly run: (m: Prepared) => number;
}

interface Prepared {
  readonly mod: DlpModule;
  readonly scanner: current.Scanner;
}

function stream(m: Prepared, text: string, chunk: number): number {
  const red = m.mod.createStreamRedactor(m.scanner);
  let n = 0;
  for (let i = 0; i < text.length; i += chunk) n += red.push(text.slice(i, i + chunk)).text.length;
  return n + red.end().text.length;
}

/** Runs `fn` for at least `ms`; returns MB/s. */
function timeIt(bytes: number, fn: () => number, ms: number): number {
  let sink = 0;
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms || n < 2) {
    sink ^= fn();
    n++;
    t = performance.now();
  }
  if (sink === 0.5) console.log(sink);
  return (bytes * n) / ((t - t0) / 1000) / 1e6;
}

async function main(): Promise<void> {
  const impls: Prepared[] = [{ mod: current, scanner: current.compileCatalog() }];
  const baselinePath = process.env['DLP_BENCH_BASELINE'];
  if (baselinePath) {
    const mod = (await import(pathToFileURL(baselinePath).href)) as DlpModule;
    impls.push({ mod, scanner: mod.compileCatalog() });
  }
  const rounds = Number(process.env['DLP_BENCH_ROUNDS'] ?? 3);
  const ms = Number(process.env['DLP_BENCH_MS'] ?? 400);

  const json4k = jsonBody(4096);
  const json1m = jsonBody(MB);
  const secrets = secretsText(MB);
  const cases: Case[] = [
    { label: 'scan, 4 KB JSON', bytes: json4k.length, run: (m) => m.scanner.scan(json4k).length },
    { label: 'applyDlp, 4 KB JSON', bytes: json4k.length, run: (m) => m.mod.applyDlp(m.scanner, json4k).text.length },
    { label: 'scan, 1 MB JSON', bytes: json1m.length, run: (m) => m.scanner.scan(json1m).length },
    { label: 'applyDlp, 1 MB many secrets', bytes: secrets.length, run: (m) => m.mod.applyDlp(m.scanner, secrets).text.length },
    { label: 'stream, 1 MB JSON, 1 KB chunks', bytes: json1m.length, run: (m) => stream(m, json1m, 1024) },
    { label: 'stream, 1 MB JSON, 16 KB chunks', bytes: json1m.length, run: (m) => stream(m, json1m, 16384) },
    { label: 'stream, 1 MB many secrets, 1 KB chunks', bytes: secrets.length, run: (m) => stream(m, secrets, 1024) },
  ];
  const patho: [string, string][] = [
    ["1 MB of 'a'", fill('a')],
    ['1 MB of digits', fill('4')],
    ['1 MB of base64-like chars', fill('QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3+/')],
    ["1 MB of '-----BEGIN '", fill('-----BEGIN ')],
    ['1 MB of digit groups', fill('4111 ')],
    ['1 MB of dotted quads', fill('1.2.3.')],
  ];
  for (const [label, text] of patho) cases.push({ label: `scan, ${label}`, bytes: text.length, run: (m) => m.scanner.scan(text).length });

  console.log(`node ${process.version}, ${availableParallelism()} cores, ${impls[0]!.scanner.ruleCount} rules${impls[1] ? ` (baseline: ${impls[1].scanner.ruleCount})` : ''}`);
  console.log(
    `findings: 4 KB JSON ${impls[0]!.scanner.scan(json4k).length}, 1 MB JSON ${impls[0]!.scanner.scan(json1m).length}, ` +
      `1 MB many secrets ${impls[0]!.scanner.scan(secrets).length}`,
  );
  const ref = timeIt(
    json1m.length,
    () => {
      let h = 0;
      for (let i = 0; i < json1m.length; i++) h = (h + json1m.charCodeAt(i)) | 0;
      return h;
    },
    ms,
  );
  console.log(`${'reference: charCodeAt loop, 1 MB'.padEnd(42)} ${ref.toFixed(0).padStart(8)} MB/s`);
  console.log(`${'case'.padEnd(42)} ${'MB/s'.padStart(8)}${impls[1] ? `${'baseline'.padStart(10)}   ratio` : ''}`);
  for (const c of cases) {
    const best = impls.map(() => 0);
    for (const m of impls) c.run(m);
    for (let round = 0; round < rounds; round++) {
      impls.forEach((m, i) => {
        best[i] = Math.max(best[i]!, timeIt(c.bytes, () => c.run(m), ms));
      });
    }
    const cur = best[0]!;
    const base = best[1];
    console.log(
      `${c.label.padEnd(42)} ${cur.toFixed(1).padStart(8)}` + (base === undefined ? '' : `${base.toFixed(1).padStart(10)}   ${(cur / base).toFixed(2)}x`),
    );
  }
}

await main();
