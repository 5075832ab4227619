import type { Readable } from 'node:stream';

/**
 * Output of worker processes, written by the primary. Workers write JSON lines (logs and stdout
 * audit records) in batches; two processes writing batches larger than PIPE_BUF (4 KiB) to one
 * pipe may have their bytes interleaved mid-line. Relayed through the primary, every line
 * reaches the primary's stdout whole, between other whole lines.
 */

/** Copies complete lines of `from` to `write`; resolves once `from` has ended (the rest flushed). */
export function relayLines(from: Readable, write: (text: string) => void): Promise<void> {
  let partial = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const text = partial + chunk;
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      partial = text;
      return;
    }
    partial = text.slice(end + 1);
    write(text.slice(0, end + 1));
  });
  return new Promise((resolve) => {
    const done = (): void => {
      // What a killed worker left unterminated still ends as a line of its own.
      if (partial) write(`${partial}\n`);
      partial = '';
      resolve();
    };
    from.once('end', done);
    from.once('close', done);
    from.once('error', done);
  });
}
