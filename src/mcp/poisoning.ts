import { compileToolPoisoningRules, type InjectionDetector, type InjectionFinding } from '../inspect/injection.js';
import { createHash } from 'node:crypto';
import { canonicalJson } from './definition.js';

/**
 * Tool poisoning: instructions aimed at the model hidden in what a server says about its tools.
 * The whole `tools/list` entry is scanned, not only the hashed part: the name, title and
 * description, every string of the input and output schemas (property names, descriptions,
 * defaults, enum values), annotations and `_meta`. Paths are rooted at the entry
 * (`$.description`, `$.inputSchema.properties.path.description`).
 */

let detector: InjectionDetector | null = null;

/** The findings of one `tools/list` entry; empty when it is clean. */
export function scanEntry(entry: unknown): InjectionFinding[] {
  detector ??= compileToolPoisoningRules();
  return detector.detect(entry);
}

/**
 * Identity of a whole entry (SHA-256 of its canonical JSON): an entry is scanned again when any
 * part of it changed, including parts the pin hash leaves out (a title).
 */
export function entryKey(entry: unknown): string {
  return createHash('sha256').update(canonicalJson(entry), 'utf8').digest('hex');
}
