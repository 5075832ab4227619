import { GatewayError } from '../../errors.js';
import { applyDlp, type Scanner } from '../../dlp/index.js';
import type { Scrubber } from '../../credentials/scrub.js';
import type { FieldFilter } from '../fieldFilter.js';
import { noteFindings, type ResponseState } from '../state.js';
import { mcpListTransform, type McpListContext } from '../../mcp/lists.js';

/**
 * The response transforms, in order: field filter, DLP, injected-credential scrub. The same
 * pipeline runs on a whole body and on each SSE event's data, so no transform can be skipped by
 * changing how a tool frames its answer (a JSON-RPC batch, an event stream).
 */

/** A transform of a parsed JSON document, in place. Returns how many changes it made. */
export interface JsonTransform {
  readonly name: string;
  apply(doc: unknown, ctx: TransformContext): number;
  /**
   * Called instead of `apply` when a text is not JSON (`null`: a body that is not text at all);
   * a transform that must see the document throws to refuse it (fail closed).
   */
  unparsed?(text: string | null, ctx: TransformContext): void;
}

/** What the transforms of one exchange read and record into. */
export interface TransformContext {
  readonly tool: string;
  /** True when the response is JSON-RPC (an MCP server): a top-level array is a batch. */
  readonly jsonRpc: boolean;
  readonly res: ResponseState;
  /** DLP rules of this tool; null when the tool does not run DLP on responses. */
  readonly scanner: Scanner | null;
  /** Credentials injected into this call; always applied. */
  readonly scrubber: Scrubber;
  /** MCP list filtering of this exchange (MCP tools); absent or null otherwise. */
  readonly mcp?: McpListContext | null;
}

/** The field filter as a JSON transform; in a JSON-RPC batch it applies to every response. */
export function fieldFilterTransform(filter: FieldFilter): JsonTransform {
  return {
    name: 'field_filter',
    apply(doc, ctx) {
      if (ctx.jsonRpc && Array.isArray(doc)) return doc.reduce((n: number, item: unknown) => n + filter.apply(item), 0);
      return filter.apply(doc);
    },
  };
}

/** The blocked-content error of a response (or of one event of a stream). */
export function responseBlocked(ctx: TransformContext, stream: boolean): GatewayError {
  return new GatewayError(
    'blocked_content',
    stream
      ? `the response stream of tool "${ctx.tool}" carried data that may not be returned; the stream was ended`
      : `the response of tool "${ctx.tool}" carried data that may not be returned`,
    { rule: 'dlp.response', details: { rules: [...ctx.res.dlp.rules] } },
  );
}

/** The compiled pipeline of one tool. */
export class ResponsePipeline {
  constructor(private readonly json: readonly JsonTransform[]) {}

  /** Whether any JSON transform exists (the body must then be parsed). */
  get hasJson(): boolean {
    return this.json.length > 0;
  }

  /**
   * JSON transforms on a text that may be a JSON document; returns the text unchanged when it
   * is not JSON or nothing changed (a re-serialised document only when something was dropped).
   */
  applyJson(text: string, ctx: TransformContext): string {
    if (this.json.length === 0) return text;
    const t = text.trimStart();
    if (t[0] !== '{' && t[0] !== '[') return this.unparsed(text, ctx);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return this.unparsed(text, ctx);
    }
    let changes = 0;
    for (const tr of this.json) changes += tr.apply(doc, ctx);
    return changes > 0 ? JSON.stringify(doc) : text;
  }

  /** A text (or, with `null`, a body) that is not JSON: each transform may refuse it. */
  unparsed(text: string | null, ctx: TransformContext): string {
    for (const tr of this.json) tr.unparsed?.(text, ctx);
    return text ?? '';
  }

  /** Text transforms: DLP (throws `blocked_content` on a block rule), then the credential scrub. */
  applyText(text: string, ctx: TransformContext, stream = false): string {
    let out = text;
    if (ctx.scanner) {
      const r = applyDlp(ctx.scanner, out);
      noteFindings(ctx.res.dlp, r.findings, r.blocked);
      if (r.blocked) throw responseBlocked(ctx, stream);
      out = r.text;
    }
    return scrubText(out, ctx);
  }

  /** Every transform on one whole text. */
  apply(text: string, ctx: TransformContext, stream = false): string {
    return this.applyText(this.applyJson(text, ctx), ctx, stream);
  }
}

/** The credential scrub alone (also used for header values). */
export function scrubText(text: string, ctx: TransformContext): string {
  if (ctx.scrubber.empty) return text;
  const s = ctx.scrubber.scrub(text);
  if (s.count > 0) ctx.res.scrubbed += s.count;
  return s.text;
}

/**
 * Compiles the pipeline of a tool from its config: `first` (the MCP definitions transform), then
 * for an MCP server list filtering (before any field is dropped, on what the server sent; its
 * responses are then always parsed), then the field filter.
 */
export function compilePipeline(filter: FieldFilter, mcp = false, first: readonly JsonTransform[] = []): ResponsePipeline {
  const json: JsonTransform[] = [...first];
  if (mcp) json.push(mcpListTransform());
  if (!filter.empty) json.push(fieldFilterTransform(filter));
  return new ResponsePipeline(json);
}
