import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Signed checkpoints of the audit chain. The hash chain shows an edit, a removal or a reordering
 * inside the file, but not a cut at its end, nor a writer who recomputes the whole chain. A
 * checkpoint is a chain line of its own that signs (Ed25519) the position and hash of the line
 * before it:
 *
 *   {"record_type":"checkpoint","time":T,"checkpoint":{"seq":S,"head_hash":H,"key_id":K,
 *    "public_key":P,"signature":G},"seq":S+1,"prev_hash":H,"hash":...}
 *
 * `signature` is over {@link checkpointPayload} (version tag, seq, head hash, time, key id);
 * `public_key` is the signer's SPKI DER in base64, and `key_id` its fingerprint
 * ({@link keyIdOf}), so a verifier pinning the key id can check every signature. Forging a
 * rewritten chain then needs the private key; cutting the end of the file is seen against a
 * checkpoint kept elsewhere (an anchor).
 */

/** The signed part of a checkpoint line. */
export interface CheckpointBody {
  /** Sequence number of the last line the checkpoint covers. */
  readonly seq: number;
  /** The `hash` of that line (what the checkpoint line's own `prev_hash` carries). */
  readonly head_hash: string;
  /** {@link keyIdOf} the signing key. */
  readonly key_id: string;
  /** The signer's public key: SPKI DER, base64. */
  readonly public_key: string;
  /** Ed25519 signature of {@link checkpointPayload}, base64. */
  readonly signature: string;
}

/** A checkpoint line's record (the chain fields are added when it is sealed). */
export interface CheckpointRecord {
  readonly record_type: 'checkpoint';
  readonly time: string;
  readonly checkpoint: CheckpointBody;
}

const PAYLOAD_TAG = 'portcullis-audit-checkpoint-v1';

/** The exact bytes a checkpoint signature covers. */
export function checkpointPayload(seq: number, headHash: string, time: string, keyId: string): Buffer {
  return Buffer.from(JSON.stringify([PAYLOAD_TAG, seq, headHash, time, keyId]), 'utf8');
}

/** Fingerprint of a public key: `ed25519:` + hex SHA-256 of its SPKI DER, first 32 digits. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return `ed25519:${createHash('sha256').update(der).digest('hex').slice(0, 32)}`;
}

/** Reads a PEM public key (SPKI) or derives it from a PEM private key (PKCS8); Ed25519 only. */
export function publicKeyFromPem(pem: string): KeyObject {
  const key = pem.includes('PRIVATE KEY') ? createPublicKey(createPrivateKey(pem)) : createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'unknown'}`);
  return key;
}

/** Signs checkpoints with one Ed25519 private key. */
export class CheckpointSigner {
  /** Fingerprint of the public key (see {@link keyIdOf}). */
  readonly keyId: string;
  private readonly publicDer: string;

  private constructor(private readonly key: KeyObject) {
    const pub = createPublicKey(key);
    this.keyId = keyIdOf(pub);
    this.publicDer = pub.export({ type: 'spki', format: 'der' }).toString('base64');
  }

  /** From a PEM PKCS8 Ed25519 private key. Throws with a message that never quotes the key. */
  static fromPem(pem: string): CheckpointSigner {
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch {
      throw new Error('not a PEM (PKCS8) private key');
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 private key, got ${key.asymmetricKeyType ?? 'unknown'}`);
    return new CheckpointSigner(key);
  }

  /** The checkpoint record covering the chain up to `seq`/`headHash`. */
  checkpoint(seq: number, headHash: string, time: Date = new Date()): CheckpointRecord {
    const t = time.toISOString();
    const signature = sign(null, checkpointPayload(seq, headHash, t, this.keyId), this.key).toString('base64');
    return { record_type: 'checkpoint', time: t, checkpoint: { seq, head_hash: headHash, key_id: this.keyId, public_key: this.publicDer, signature } };
  }
}

/**
 * Checks a checkpoint's signature with the public key it carries, and that the key matches its
 * `key_id`. Whether that key is trusted is the caller's question. Returns a reason, or null.
 */
export function checkpointSignatureProblem(time: string, cp: CheckpointBody): string | null {
  let pub: KeyObject;
  try {
    pub = createPublicKey({ key: Buffer.from(cp.public_key, 'base64'), format: 'der', type: 'spki' });
  } catch {
    return 'checkpoint public key is unreadable';
  }
  if (pub.asymmetricKeyType !== 'ed25519' || keyIdOf(pub) !== cp.key_id) return 'checkpoint key_id does not match its public key';
  const ok = verify(null, checkpointPayload(cp.seq, cp.head_hash, time, cp.key_id), pub, Buffer.from(cp.signature, 'base64'));
  return ok ? null : 'checkpoint signature does not verify (chain rewritten)';
}

/** Reads the checkpoint of a parsed line, or null when the line is not a well-formed checkpoint. */
export function checkpointOf(obj: Readonly<Record<string, unknown>>): { time: string; checkpoint: CheckpointBody } | null {
  if (obj.record_type !== 'checkpoint' || typeof obj.time !== 'string') return null;
  const c = obj.checkpoint as Record<string, unknown> | null | undefined;
  if (typeof c !== 'object' || c === null) return null;
  const { seq, head_hash: headHash, key_id: keyId, public_key: publicKey, signature } = c;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return null;
  if (typeof headHash !== 'string' || typeof keyId !== 'string' || typeof publicKey !== 'string' || typeof signature !== 'string') return null;
  return { time: obj.time, checkpoint: { seq, head_hash: headHash, key_id: keyId, public_key: publicKey, signature } };
}

/** A new Ed25519 key pair as PEM (private PKCS8, public SPKI) and its key id. */
export function generateCheckpointKeys(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}
