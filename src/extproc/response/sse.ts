import { GatewayError, errorBody } from '../../errors.js';
import type { ResponsePipeline, TransformContext } from './pipeline.js';

/**
 * Server-sent events, inspected event by event. An event is held until its terminating blank
 * line arrives (an SSE client dispatches nothing before that either), then the whole response
 * pipeline runs on it: the JSON transforms on its `data` when that is JSON (so a dropped field
 * never leaves in an MCP reply sent as SSE), then DLP and the credential scrub on the event.
 * A block ends the stream with an error event; nothing after it is delivered.
 */

/** A blank line, which ends an SSE event (LF, CRLF or CR line endings). */
const EVENT_END = /\r\n\r\n|\n\n|\r\r/g;
/** Largest event held while waiting for its end; a longer one ends the stream (fail closed). */
export const MAX_EVENT_BYTES = 1024 * 1024;

/** Splits off a trailing incomplete UTF-8 sequence so characters are never cut between chunks. */
function completeUtf8(buf: Buffer): [Buffer, Buffer] {
  let i = buf.length - 1;
  let back = 0;
  while (i >= 0 && back < 4 && (buf[i]! & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i < 0) return [buf, Buffer.alloc(0)];
  const lead = buf[i]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (need > back + 1) return [buf.subarray(0, i), buf.subarray(i)];
  return [buf, Buffer.alloc(0)];
}

/** An event's JSON transforms: its data lines replaced by one `data:` line when they changed. */
function transformData(event: string, pipeline: ResponsePipeline, ctx: TransformContext): string {
  if (!pipeline.hasJson) return event;
  const lines = event.split(/\r\n|\n|\r/);
  const data: string[] = [];
  for (const l of lines) if (l.startsWith('data:')) data.push(l.slice(l[5] === ' ' ? 6 : 5));
  if (data.length === 0) return event;
  const text = data.join('\n');
  const out = pipeline.applyJson(text, ctx);
  if (out === text) return event;
  const kept = lines.filter((l) => !l.startsWith('data:') && l !== '');
  return [...kept, `data: ${out}`].join('\n');
}

/** One stream's SSE inspection state. */
export class SseInspector {
  private pending = '';
  private carry: Buffer = Buffer.alloc(0);
  private blocked = false;

  constructor(
    private readonly pipeline: ResponsePipeline,
    private readonly ctx: TransformContext,
    private readonly requestId: string | null,
  ) {}

  /** True once a block ended the stream. */
  get ended(): boolean {
    return this.blocked;
  }

  /**
   * Takes one body chunk and returns the text to deliver now: every event the chunk completed,
   * inspected, in order. At the end of the stream an unterminated last event is inspected too.
   * On a block, the error it raised is returned alongside the text (the caller records it).
   */
  push(chunk: Buffer, end: boolean): { text: string; error: GatewayError | null } {
    if (this.blocked) return { text: '', error: null };
    const [complete, carry] = completeUtf8(this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk);
    this.carry = end ? Buffer.alloc(0) : carry;
    let buf = this.pending + complete.toString('utf8') + (end ? carry.toString('utf8') : '');
    let out = '';
    let from = 0;
    EVENT_END.lastIndex = 0;
    try {
      for (let m = EVENT_END.exec(buf); m; m = EVENT_END.exec(buf)) {
        const stop = m.index + m[0].length;
        out += this.inspect(buf.slice(from, m.index)) + m[0];
        from = stop;
      }
      buf = buf.slice(from);
      if (end && buf.length > 0) {
        out += this.inspect(buf);
        buf = '';
      }
      if (buf.length > MAX_EVENT_BYTES) {
        throw new GatewayError('unavailable', `an event of the response stream of tool "${this.ctx.tool}" is larger than ${MAX_EVENT_BYTES} bytes and cannot be inspected; the stream was ended`, { rule: 'dlp.event_too_large' });
      }
      this.pending = buf;
      return { text: out, error: null };
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      this.blocked = true;
      this.pending = '';
      return { text: `${out}${out === '' || out.endsWith('\n\n') ? '' : '\n\n'}event: error\ndata: ${JSON.stringify(errorBody(err, this.requestId))}\n\n`, error: err };
    }
  }

  private inspect(event: string): string {
    if (event.length === 0) return event;
    return this.pipeline.applyText(transformData(event, this.pipeline, this.ctx), this.ctx, true);
  }
}
