import { EventEmitter } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { StdoutSink } from '../../../src/audit/sinks.js';
import { BufferedStdout, PlainStderr, log, loggerOptions, useCliLogging } from '../../../src/log.js';
import { repoPath } from '../../helpers/paths.js';
import { cli, jsonLogLines } from './run.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function capture(): { lines: string[]; write(s: string): void } {
  const lines: string[] = [];
  return { lines, write: (s: string) => void lines.push(s) };
}

describe('log line format', () => {
  it('pino loggers built from loggerOptions write ISO-8601 times and string levels', () => {
    const out = capture();
    pino(loggerOptions({ level: 'info' }), out).warn({ tool: 'docs' }, 'hello');
    const rec = JSON.parse(out.lines[0]!) as Record<string, unknown>;
    expect(rec).toMatchObject({ level: 'warn', service: 'portcullis', tool: 'docs', msg: 'hello' });
    expect(rec.time).toMatch(ISO);
  });

  it('audit records on stdout use the same format', () => {
    const out = capture();
    new StdoutSink(out).write({ record_type: 'exchange', request_id: 'r-1' } as unknown as Parameters<StdoutSink['write']>[0]);
    const rec = JSON.parse(out.lines[0]!) as Record<string, unknown>;
    expect(rec).toMatchObject({ level: 'info', msg: 'audit', audit: { request_id: 'r-1' } });
    expect(rec.time).toMatch(ISO);
  });

  it('the process log of serve writes JSON lines with ISO times and string levels on stdout', async () => {
    const { execFileSync } = await import('node:child_process');
    const script = `import(${JSON.stringify(repoPath('dist', 'log.js'))}).then((m) => { m.log.warn({ file: 'a' }, 'watch failed'); m.log.error('boom'); return m.flushStdout(); })`;
    const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    const recs = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs.map((r) => [r.level, r.msg])).toEqual([
      ['warn', 'watch failed'],
      ['error', 'boom'],
    ]);
    for (const r of recs) expect(r.time).toMatch(ISO);
  });

  it('CLI logging renders plain diagnostics, warnings and worse, still redacting secrets', () => {
    const err = capture();
    useCliLogging(err);
    log.info('not shown');
    log.warn({ file: 'keys/jwks.json', headers: { authorization: 'Bearer abc' }, count: 2 }, 'JWKS file invalid');
    log.error('failed');
    expect(err.lines).toEqual(['portcullis: warning: JWKS file invalid (file=keys/jwks.json, headers={"authorization":"[redacted]"}, count=2)\n', 'portcullis: error: failed\n']);
  });

  it('lines still buffered at exit reach the descriptor, not an asynchronous write the exiting process never completes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-log-'));
    const fd = openSync(join(dir, 'out'), 'w');
    try {
      const asyncWrites: string[] = [];
      const boom = Object.assign(new EventEmitter(), { write: (s: string) => void asyncWrites.push(s), flushSync: () => undefined });
      const out = new BufferedStdout(boom as unknown as ConstructorParameters<typeof BufferedStdout>[0], fd);
      out.write('{"msg":"one"}\n');
      out.write('{"msg":"two"}\n');
      out.flushSync();
      expect(asyncWrites).toEqual([]);
      expect(readFileSync(join(dir, 'out'), 'utf8')).toBe('{"msg":"one"}\n{"msg":"two"}\n');
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a line that is not JSON passes through unchanged', () => {
    const err = capture();
    new PlainStderr(err).write('plain text');
    expect(err.lines).toEqual(['plain text\n']);
  });
});

describe('CLI output carries no log lines', () => {
  it('token prints only the token on stdout; a failing load says why on stderr as text', async () => {
    const demo = repoPath('scripts', 'demo', 'portcullis.yaml');
    const bad = await cli(['token', '--config', demo, '--key', repoPath('no', 'such', 'key.json')]);
    expect(bad.code).toBe(1);
    expect(bad.out).toBe('');
    expect(jsonLogLines(bad.err)).toEqual([]);
    expect(bad.err).toMatch(/^portcullis: no signing key at \S+key\.json: pass --key FILE/);
  });

  it('dlp scan prints only its result, even with the log at debug', async () => {
    const r = await cli(['dlp', 'scan', '--json'], { input: 'card 4111 1111 1111 1111\n', env: { PORTCULLIS_LOG_LEVEL: 'debug' } });
    expect(r.code).toBe(1);
    expect(jsonLogLines(r.out)).toEqual([]);
    expect(JSON.parse(r.out)).toMatchObject({ blocked: false, findings: [expect.objectContaining({ category: expect.any(String) })] });
  });
});
