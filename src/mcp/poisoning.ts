import { compileToolPoisoningRules, type InjectionDetector, type InjectionFinding } from '../inspect/injection.js';
import type { McpToolDefinition } from './definition.js';

/**
 * Tool poisoning: instructions aimed at the model hidden in what a server says about its tools.
 * Everything the model reads of a definition is scanned: the description, every string of the
 * input schema (property names, descriptions, titles, defaults, enum values) and the
 * annotations (their title). Paths are rooted at the definition (`$.description`,
 * `$.inputSchema.properties.path.description`).
 */

let detector: InjectionDetector | null = null;

/** The findings of one definition; empty when it is clean. */
export function scanDefinition(def: McpToolDefinition): InjectionFinding[] {
  detector ??= compileToolPoisoningRules();
  return detector.detect({ description: def.description, inputSchema: def.inputSchema, annotations: def.annotations });
}
