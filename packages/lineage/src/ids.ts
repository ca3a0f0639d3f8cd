import { createHash, randomUUID } from 'node:crypto';
import { canonicalJson } from '@pedigree/ledger';

/** A stable UUID from a name (same idea as UUIDv5, over SHA-256). */
export function nameUuid(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * The event ids of a command's events: derived from one id the caller may
 * supply, so a retried command proposes exactly the same events.
 */
export function eventIds(base: string | undefined, n: number): string[] {
  const first = base ?? randomUUID();
  return Array.from({ length: n }, (_, i) => (i === 0 ? first : nameUuid(first, String(i))));
}

export function contentDigest(value: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(value)).digest('hex')}`;
}
