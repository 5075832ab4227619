/**
 * DLP micro-benchmark: MB/s of `Scanner.scan` with the full built-in catalog on a realistic
 * 4 KB JSON tool response and on 1 MB of mixed text, plus the streaming redactor.
 *
 *   npx vite-node bench/dlp.bench.ts
 *
 * A bare `charCodeAt` loop over the same 1 MB is printed as a reference for this machine.
 */
import { applyDlp, compileCatalog, createStreamRedactor } from '../src/dlp/index.js';

function jsonBody(): string {
  const items = [];
  for (let i = 0; items.length < 200; i++) {
    items.push({
      id: `ord_${(1000 + i).toString(36)}${i}`,
      created_at: `2024-05-${String((i % 28) + 1).padStart(2, '0')}T12:${String(i % 60).padStart(2, '0')}:05Z`,
      status: i % 3 === 0 ? 'shipped' : 'pending',
      amount: { value: 1999 + i * 7, currency: 'USD' },
      customer: { name: `Customer ${i}`, tier: 'gold' },
      url: `https://api.shop.example.com/v2/orders/${1000 + i}?expand=items`,
      note: 'Delivery window confirmed; leave at front desk if nobody answers.',
      version: 3,
    });
  }
  const text = JSON.stringify({ jsonrpc: '2.0', id: 42, result: { content: [{ type: 'text', text: JSON.stringify(items) }] } });
  return text.slice(0, 4096);
}

function mixedText(size: number): string {
  const lines = [
    '2024-05-01T10:00:00Z INFO request handled path=/api/v1/users/1234 status=200 duration_ms=12',
    'The quick brown fox jumps over the lazy dog while the agent summarises the quarterly report.',
    '{"event":"click","ts":1714557600123,"session":"a8f5f167f44f4964e6c998dee827110c","ok":true}',
    'WARN retrying upstream call attempt=2 backoff=250ms host=api.example.com region=eu-west-1',
    'Meeting notes: discuss roadmap, hiring plan and budget; follow up next Tuesday at 10:30.',
    'DEBUG cache miss key=user:profile:98765 ttl=300 size=2048 bytes from=primary',
  ];
  let out = '';
  for (let i = 0; out.length < size; i++) out += `${lines[i % lines.length]}\n`;
  return out.slice(0, size);
}

function measure(label: string, bytes: number, fn: () => void, minMs = 1500): void {
  for (let i = 0; i < 5; i++) fn();
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < minMs) {
    fn();
    n++;
    t = performance.now();
  }
  const secs = (t - t0) / 1000;
  console.log(`${label.padEnd(40)} ${((bytes * n) / secs / 1e6).toFixed(1).padStart(8)} MB/s  (${((secs / n) * 1e6).toFixed(1)} µs/op)`);
}

const scanner = compileCatalog();
console.log(`rules: ${scanner.ruleCount}`);
const body = jsonBody();
const big = mixedText(1 << 20);
console.log(`findings: 4 KB body ${scanner.scan(body).length}, 1 MB text ${scanner.scan(big).length}`);

let sink = 0;
measure('reference: charCodeAt loop, 1 MB', big.length, () => {
  let h = 0;
  for (let i = 0; i < big.length; i++) h = (h + big.charCodeAt(i)) | 0;
  sink ^= h;
});
measure('scan, 4 KB JSON body', body.length, () => {
  sink ^= scanner.scan(body).length;
});
measure('applyDlp, 4 KB JSON body', body.length, () => {
  sink ^= applyDlp(scanner, body).text.length;
});
measure('scan, 1 MB text', big.length, () => {
  sink ^= scanner.scan(big).length;
});
measure('stream redactor, 1 MB in 512 B chunks', big.length, () => {
  const r = createStreamRedactor(scanner);
  for (let i = 0; i < big.length; i += 512) sink ^= r.push(big.slice(i, i + 512)).text.length;
  sink ^= r.end().text.length;
});
if (sink === 0.5) console.log(sink);
