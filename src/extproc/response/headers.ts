import { applyDlp } from '../../dlp/index.js';
import type { ProtoHeaderMutation, ProtoHeaderOption, ProtoHttpHeaders } from '../proto.js';
import { noteFindings } from '../state.js';
import { responseBlocked, scrubText, type TransformContext } from './pipeline.js';

/** Headers that carry no tool-chosen text worth scanning (framing and Envoy's own). */
const SKIP = new Set([':status', 'content-length', 'date', 'transfer-encoding', 'connection']);

/** Every header of a message with its value, repeated names included (Set-Cookie ...). */
function entries(h: ProtoHttpHeaders | undefined): [string, string][] {
  return (h?.headers?.headers ?? []).map(({ key, value, rawValue }) => [key.toLowerCase(), rawValue && rawValue.length > 0 ? rawValue.toString('utf8') : (value ?? '')]);
}

/** Whether no header value holds a finding or an injected credential (values joined by newlines). */
function clean(all: readonly [string, string][], ctx: TransformContext): boolean {
  const joined = all
    .filter(([k, v]) => !SKIP.has(k) && v.length > 0)
    .map(([, v]) => v)
    .join('\n');
  if (joined.length === 0) return true;
  if (ctx.scanner && applyDlp(ctx.scanner, joined).findings.length > 0) return false;
  return ctx.scrubber.empty || ctx.scrubber.find(joined).length === 0;
}

/**
 * Scans every response header value (DLP when the tool runs it, the injected-credential scrub
 * always) and returns the mutation that replaces each changed header with its redacted values:
 * all values of that name are removed and re-added, so a redacted `Set-Cookie` among several
 * keeps the others. Throws `blocked_content` when a block rule fires in a header.
 */
export function inspectResponseHeaders(h: ProtoHttpHeaders | undefined, ctx: TransformContext): ProtoHeaderMutation {
  const all = entries(h);
  // Most responses carry nothing: one pass over all values together decides that.
  if (clean(all, ctx)) return {};
  const changed = new Set<string>();
  const values = new Map<string, string[]>();
  for (const [key, value] of all) {
    let out = value;
    if (!SKIP.has(key) && value.length > 0) {
      if (ctx.scanner) {
        const r = applyDlp(ctx.scanner, out);
        noteFindings(ctx.res.dlp, r.findings, r.blocked);
        if (r.blocked) throw responseBlocked(ctx, false);
        out = r.text;
      }
      out = scrubText(out, ctx);
    }
    if (out !== value) changed.add(key);
    const list = values.get(key);
    if (list) list.push(out);
    else values.set(key, [out]);
  }
  if (changed.size === 0) return {};
  const setHeaders: ProtoHeaderOption[] = [];
  for (const key of changed) {
    // Envoy reads the legacy `append` flag of an ext_proc mutation (unset means overwrite), so
    // every value after the first says append explicitly.
    values.get(key)!.forEach((v, i) => setHeaders.push({ header: { key, rawValue: Buffer.from(v, 'utf8') }, append: { value: i > 0 } }));
  }
  return { removeHeaders: [...changed], setHeaders };
}
