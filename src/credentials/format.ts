/**
 * Credential header templates such as `Bearer {secret}`, split once at load into the literal text
 * around each `{secret}`. Filling one in is plain concatenation: the secret is data, never a
 * pattern or a replacement string, so characters such as `$&`, `$'` or `$1` in it stay as they are.
 */

/** Placeholder a credential `format` must contain. */
export const SECRET_PLACEHOLDER = '{secret}';

/** A compiled template: the literal parts between placeholders (one more part than placeholders). */
export type CredentialTemplate = readonly string[];

/** Splits `format` at every `{secret}`; throws when there is none (the schema also requires one). */
export function compileTemplate(format: string): CredentialTemplate {
  const parts = format.split(SECRET_PLACEHOLDER);
  if (parts.length < 2) throw new Error(`credential format ${JSON.stringify(format)} has no ${SECRET_PLACEHOLDER} placeholder`);
  return Object.freeze(parts);
}

/** The header value for `secret`: every placeholder replaced by the secret, verbatim. */
export function fillTemplate(template: CredentialTemplate, secret: string): string {
  return template.join(secret);
}
