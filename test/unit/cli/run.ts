import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { repoPath } from '../../helpers/paths.js';

/** What one run of the built CLI printed, and its exit code. */
export interface CliRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** The built entry point; the CLI tests run what users run (`npm run build` first). */
export const MAIN = repoPath('dist', 'main.js');

/** Runs `node dist/main.js ...args` (optionally with stdin, env and cwd). */
export function cli(args: readonly string[], opts: { input?: string; env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliRun> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first`);
  return new Promise((done, fail) => {
    const env = { ...process.env, PORTCULLIS_LOG_LEVEL: undefined, ...opts.env };
    const child = execFile(process.execPath, [MAIN, ...args], { env, cwd: opts.cwd ?? repoPath(), encoding: 'utf8', timeout: 60_000 }, (err, out, errOut) => {
      if (err && typeof err.code !== 'number') return fail(err);
      done({ code: err ? (err.code as number) : 0, out, err: errOut });
    });
    child.stdin?.end(opts.input ?? '');
  });
}

/** Lines of a text that look like pino JSON log lines. */
export function jsonLogLines(text: string): string[] {
  return text.split('\n').filter((l) => /^\{.*"level"/.test(l));
}
