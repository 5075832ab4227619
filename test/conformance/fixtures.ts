/**
 * Fixed payloads the conformance target returns. The suite checks shapes and MIME types, not
 * pixels or samples, so the smallest valid files do.
 */

/** A 1x1 RGB PNG (one teal pixel), base64. */
export const PNG_BASE64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGOQz98CAAHzAUMBh4NgAAAAAElFTkSuQmCC';

/** A valid mono 8 kHz 16-bit PCM WAV file holding one silent sample, base64. */
export const WAV_BASE64 = wav();

function wav(): string {
  const samples = Buffer.alloc(2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + samples.length, 4);
  header.write('WAVEfmt ', 8, 'ascii');
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // channels
  header.writeUInt32LE(8000, 24); // sample rate
  header.writeUInt32LE(8000 * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(samples.length, 40);
  return Buffer.concat([header, samples]).toString('base64');
}
