import { gunzipSync, inflateSync, brotliDecompressSync } from 'node:zlib';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { GatewayError } from '../../errors.js';
import { readText, scanStrings, writeText } from '../../dlp/index.js';
import { noteFindings, type ResponseState } from '../state.js';
import { responseBlocked, type ResponsePipeline, type TransformContext } from './pipeline.js';
import type { Reservation } from './budget.js';

/**
 * Whole response bodies: collected (under the memory budget), decoded, run through the
 * response pipeline, and re-encoded. Used for bodies Envoy buffers and for bodies portcullis
 * holds itself (too large for Envoy's buffer, or of unknown length).
 */

/** Text longer than this is inspected in slices, yielding between them so other streams run. */
const SLICE = 1024 * 1024;
/** A held body up to this size (an ordinary answer of unknown length) may use the whole budget. */
const SMALL_BODY = 1024 * 1024;
/** How far back from a slice end a cut point (newline, quote) is looked for. */
const CUT_WINDOW = 64 * 1024;

function decompress(buf: Buffer, encoding: string, max: number): Buffer {
  const opts = { maxOutputLength: max };
  try {
    if (encoding === 'gzip' || encoding === 'x-gzip') return gunzipSync(buf, opts);
    if (encoding === 'deflate') return inflateSync(buf, opts);
    if (encoding === 'br') return brotliDecompressSync(buf, opts);
  } catch (err) {
    throw new GatewayError('internal', `upstream ${encoding} body could not be decompressed for inspection`, { rule: 'dlp.decompress', cause: err });
  }
  throw new GatewayError('internal', `upstream used content-encoding "${encoding}", which cannot be inspected`, { rule: 'dlp.encoding' });
}

/** The collected chunks of one body, bounded per response and by the process-wide budget. */
export class BodyCollector {
  private chunks: Buffer[] = [];
  private size = 0;

  /**
   * @param prepaid bytes already reserved for this body (its announced length); only what
   *   arrives beyond them is reserved chunk by chunk.
   */
  constructor(
    private readonly reservation: Reservation,
    private readonly maxBytes: number,
    private readonly tool: string,
    private readonly prepaid = 0,
    /** A body held by portcullis (not Envoy-buffered): past SMALL_BODY it draws on the large-body share. */
    private readonly held = true,
  ) {}

  /** Adds a chunk; throws when the response is too large or the budget is used up. */
  add(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const before = this.size;
    this.size += chunk.length;
    if (this.size > this.maxBytes) {
      throw new GatewayError('unavailable', `the response of tool "${this.tool}" is larger than ${this.maxBytes} bytes and cannot be inspected`, { rule: 'dlp.response_too_large' });
    }
    const unpaid = this.size - Math.max(before, this.prepaid);
    if (unpaid > 0 && !this.reservation.grow(unpaid, this.held && this.size > SMALL_BODY)) throw budgetExhausted(this.tool);
    this.chunks.push(chunk);
  }

  /** Everything collected, as one buffer; the collector is empty afterwards. */
  take(): Buffer {
    const out = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    this.size = 0;
    return out;
  }
}

/** The retryable refusal of a response that does not fit the inspection memory budget now. */
export function budgetExhausted(tool: string): GatewayError {
  return new GatewayError('unavailable', `the gateway is inspecting too many large responses right now; the response of tool "${tool}" was not delivered, retry shortly`, {
    rule: 'inspect.memory_budget',
    retryAfterS: 1,
  });
}

/** Offsets at which a long text is cut into slices: after a newline or quote near each SLICE. */
function sliceEnds(text: string): number[] {
  const ends: number[] = [];
  let from = 0;
  while (text.length - from > SLICE) {
    const target = from + SLICE;
    let cut = text.lastIndexOf('\n', target);
    if (cut < target - CUT_WINDOW) cut = text.lastIndexOf('"', target);
    // A secret has no newline or quote inside; without either nearby, cut where the slice ends.
    const end = cut >= target - CUT_WINDOW ? cut + 1 : target;
    ends.push(end);
    from = end;
  }
  ends.push(text.length);
  return ends;
}

/** Text transforms over a long text in slices, yielding to the event loop between them. */
async function applyTextSliced(pipeline: ResponsePipeline, text: string, ctx: TransformContext): Promise<string> {
  if (text.length <= SLICE) return pipeline.applyText(text, ctx);
  const parts: string[] = [];
  let changed = false;
  let from = 0;
  for (const end of sliceEnds(text)) {
    await yieldToLoop();
    const slice = text.slice(from, end);
    const out = pipeline.applyText(slice, ctx);
    changed ||= out !== slice;
    parts.push(out);
    from = end;
  }
  // An unchanged body is not copied again.
  return changed ? parts.join('') : text;
}

/**
 * Large whole-body inspections run a few at a time: each makes several transient copies of its
 * body (joined bytes, decoded text, redacted text, the reply), and on one event loop running
 * more at once only multiplies that memory without finishing any sooner.
 */
class Gate {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly width: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.width) await new Promise<void>((r) => this.waiting.push(r));
    this.active += 1;
    try {
      return await work();
    } finally {
      this.active -= 1;
      this.waiting.shift()?.();
    }
  }
}

/** Bodies above this size go through the gate. */
const GATED_BYTES = SMALL_BODY;
const largeInspections = new Gate(2);

/**
 * A body that is not text: its printable runs are scanned and findings masked in place (same
 * length, so binary formats keep their offsets); injected credentials are masked the same way.
 */
function inspectBinary(bytes: Buffer, ctx: TransformContext): Buffer {
  let out = bytes;
  if (ctx.scanner) {
    const r = scanStrings(ctx.scanner, bytes, {});
    noteFindings(ctx.res.dlp, r.findings, r.blocked);
    if (r.blocked) throw responseBlocked(ctx, false);
    out = r.bytes;
  }
  if (ctx.scrubber.empty) return out;
  // One character per byte, so string offsets are byte offsets.
  const found = ctx.scrubber.find(out.toString('latin1'));
  if (found.length === 0) return out;
  ctx.res.scrubbed += found.length;
  const masked = out === bytes ? Buffer.from(bytes) : out;
  for (const f of found) masked.fill(0x2a, f.start, f.end);
  return masked;
}

/**
 * Inspects a whole body: undoes the content-encoding, reads it in its charset, runs the
 * pipeline (JSON transforms when it is JSON, then DLP and the scrub), and returns the bytes to
 * send, in the body's charset. Throws `blocked_content` when a block rule fires.
 */
export function inspectWholeBody(raw: Buffer, res: ResponseState, pipeline: ResponsePipeline, ctx: TransformContext, limits: BodyLimits): Promise<{ bytes: Buffer; text: string | null }> {
  if (raw.length <= GATED_BYTES) return inspectNow(raw, res, pipeline, ctx, limits);
  return largeInspections.run(() => inspectNow(raw, res, pipeline, ctx, limits));
}

/** Bounds on one body: its largest size, and the reservation its decoded size is held against. */
export interface BodyLimits {
  readonly maxBytes: number;
  readonly reservation: Reservation;
}

async function inspectNow(raw: Buffer, res: ResponseState, pipeline: ResponsePipeline, ctx: TransformContext, limits: BodyLimits): Promise<{ bytes: Buffer; text: string | null }> {
  let bytes = raw;
  if (res.encoding) {
    bytes = decompress(raw, res.encoding, limits.maxBytes);
    // What decompression added is held too: counted against the budget like the raw bytes.
    if (!limits.reservation.grow(Math.max(0, bytes.length - raw.length), bytes.length > SMALL_BODY)) throw budgetExhausted(ctx.tool);
  }
  const reading = readText(bytes, res.charset ?? undefined);
  res.view = reading ? reading.view : 'binary';
  if (!reading) {
    // Not text: a transform that must read the document (MCP list filtering) refuses it.
    pipeline.unparsed(null, ctx);
    return { bytes: inspectBinary(bytes, ctx), text: null };
  }
  const text = await applyTextSliced(pipeline, pipeline.applyJson(reading.text, ctx), ctx);
  return { bytes: writeText(reading, text, bytes), text };
}
