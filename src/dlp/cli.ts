import { StringDecoder } from 'node:string_decoder';
import type { DlpConfig } from './config.js';
import { compileCatalog } from './scanner.js';
import { createStreamRedactor } from './stream.js';
import type { Finding } from './types.js';

function write(output: NodeJS.WritableStream, text: string): Promise<void> {
  if (text.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    output.write(text, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

/**
 * `portcullis dlp scan`: reads `input` as UTF-8 and streams it to `output` redacted. With
 * `json`, writes instead one JSON document `{"findings":[{rule,category,action,start,end}],
 * "blocked":bool}` (offsets in UTF-16 code units of the input; never the matched text).
 * Returns the exit code: 0 nothing found, 1 findings, 2 a `block` rule fired.
 */
export async function runDlpScan(input: NodeJS.ReadableStream, output: NodeJS.WritableStream, opts: { json: boolean; config?: DlpConfig }): Promise<number> {
  const scanner = compileCatalog(opts.config);
  const redactor = createStreamRedactor(scanner);
  const decoder = new StringDecoder('utf8');
  const findings: Finding[] = [];
  let blocked = false;
  const take = async (r: { text: string; findings: Finding[]; blocked: boolean }): Promise<void> => {
    findings.push(...r.findings);
    blocked ||= r.blocked;
    if (!opts.json) await write(output, r.text);
  };
  for await (const chunk of input) {
    const text = typeof chunk === 'string' ? chunk : decoder.write(chunk as Buffer);
    await take(redactor.push(text));
  }
  await take(redactor.push(decoder.end()));
  await take(redactor.end());
  if (opts.json) {
    const list = findings.map((f) => ({ rule: f.rule, category: f.category, action: f.action, start: f.start, end: f.end }));
    await write(output, `${JSON.stringify({ findings: list, blocked })}\n`);
  }
  return blocked ? 2 : findings.length > 0 ? 1 : 0;
}
