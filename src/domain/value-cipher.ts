import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * A value of a `sensitive` namespace as stored: still JSON, so it sits in the same jsonb columns as
 * every other value. `v1.<key id>.<base64url(iv ‖ ciphertext ‖ tag)>`.
 */
export interface SealedValue {
  $sealed: string;
}

const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A short public fingerprint of a key, stored with each value so that rotation knows which key opens it. */
const keyId = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 8);

export const isSealed = (value: unknown): value is SealedValue =>
  typeof value === 'object' && value !== null && typeof (value as SealedValue).$sealed === 'string' && Object.keys(value).length === 1;

/**
 * AES-256-GCM for the values of sensitive namespaces. Each value is bound to its place (tenant,
 * namespace, scope, key) as additional data, so a sealed value copied to another key does not open.
 * Values are sealed with the current key and opened with whichever configured key sealed them.
 */
export class ValueCipher {
  private readonly current: { id: string; key: Buffer };
  private readonly keys = new Map<string, Buffer>();

  constructor(currentHex: string, previousHex: readonly string[] = []) {
    const current = Buffer.from(currentHex, 'hex');
    this.current = { id: keyId(current), key: current };
    for (const key of [current, ...previousHex.map((hex) => Buffer.from(hex, 'hex'))]) this.keys.set(keyId(key), key);
  }

  /** The additional data that binds a value to its place. */
  static placeOf(tenantId: string, namespace: string, scope: string, key: string): string {
    return [tenantId, namespace, scope, key].join('\u001f');
  }

  /** Seals the JSON text of a value. */
  seal(json: string, place: string): SealedValue {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, this.current.key, iv);
    cipher.setAAD(Buffer.from(place));
    const body = Buffer.concat([iv, cipher.update(json, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return { $sealed: `v1.${this.current.id}.${body.toString('base64url')}` };
  }

  /** The value inside a sealed one; throws when no configured key opens it or it was tampered with. */
  open(sealed: SealedValue, place: string): unknown {
    const [version, id, encoded] = sealed.$sealed.split('.');
    const key = id === undefined ? undefined : this.keys.get(id);
    if (version !== 'v1' || key === undefined || encoded === undefined) {
      throw new Error(`No configured encryption key opens this value (key id ${id ?? '?'})`);
    }
    const body = Buffer.from(encoded, 'base64url');
    const decipher = createDecipheriv(ALGORITHM, key, body.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(place));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const json = Buffer.concat([decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    return JSON.parse(json);
  }

  /** The prefix of values sealed with the current key: anything else is re-sealed by `npm run rotate-key`. */
  get currentPrefix(): string {
    return `v1.${this.current.id}.`;
  }
}
