import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoPath } from './paths.js';

/** What the recipe reads of a request the tool received. */
export interface ToolRequest {
  method: string;
  url: string;
  body: Buffer;
}

/** The documented verification function's signature. */
export type VerifyPortcullisSignature = (
  header: string | undefined,
  key: string,
  req: ToolRequest,
  opts?: { maxAgeS?: number; toToolPath?: (p: string) => string },
) => Record<string, string>;

/**
 * Loads the request-signature verification recipe exactly as envoy/README.md prints it (the one
 * ```js block that defines `verifyPortcullisSignature`), so the tests prove the documented code.
 */
export async function loadSignatureRecipe(): Promise<VerifyPortcullisSignature> {
  const readme = readFileSync(repoPath('envoy', 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)\n```/g)].map((m) => m[1] as string).filter((b) => b.includes('export function verifyPortcullisSignature'));
  if (blocks.length !== 1) throw new Error(`envoy/README.md: expected one js block defining verifyPortcullisSignature, found ${blocks.length}`);
  const file = join(mkdtempSync(join(tmpdir(), 'pc-recipe-')), 'verify.mjs');
  writeFileSync(file, blocks[0] as string);
  const mod = (await import(pathToFileURL(file).href)) as { verifyPortcullisSignature: VerifyPortcullisSignature };
  return mod.verifyPortcullisSignature;
}
