import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db } from '@pedigree/db';
import type { KeyIdentity } from './keys.ts';

/**
 * Live updates (SSE) cannot send headers from a browser, and whatever they
 * send goes in the URL, where proxies and browser histories keep it. So the
 * key never goes there: a client POSTs `system.ticket` with its key (in a
 * header) and opens the subscription with the ticket it gets back — valid
 * for subscriptions only, for a minute, and only while the key is not
 * revoked. Tickets are stateless: an HMAC over (key id, purpose, expiry) with
 * a secret of this server process, so a restart invalidates them (a client
 * asks for a new one on every connect anyway).
 */
export const TICKET_PREFIX = 'pdt_';
export const TICKET_TTL_MS = 60_000;
const PURPOSE = 'subscribe';
const SECRET = randomBytes(32);

const sign = (body: string) => createHmac('sha256', SECRET).update(body).digest('base64url');

export function issueTicket(key: KeyIdentity, now = Date.now()): { ticket: string; expiresAt: number } {
  const expiresAt = now + TICKET_TTL_MS;
  const body = `${key.keyId}.${PURPOSE}.${expiresAt}`;
  return { ticket: `${TICKET_PREFIX}${Buffer.from(body).toString('base64url')}.${sign(body)}`, expiresAt };
}

/** The key behind a ticket, or null when it is forged, expired, for another purpose, or its key was revoked since. */
export async function redeemTicket(db: Db, ticket: string, now = Date.now()): Promise<KeyIdentity | null> {
  if (!ticket.startsWith(TICKET_PREFIX) || ticket.length > 300) return null;
  const [encoded, mac] = ticket.slice(TICKET_PREFIX.length).split('.');
  if (!encoded || !mac) return null;
  const body = Buffer.from(encoded, 'base64url').toString('utf8');
  const expected = Buffer.from(sign(body));
  const given = Buffer.from(mac);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
  const [keyId, purpose, expires] = body.split('.');
  if (purpose !== PURPOSE || !(Number(expires) > now) || !keyId || !/^[0-9a-f-]{36}$/.test(keyId)) return null;
  const [row] = await db.query<{ id: string; project_id: string; name: string }>('SELECT id, project_id, name FROM api_keys WHERE id = $1 AND revoked_at IS NULL', [keyId]);
  return row ? { keyId: row.id, projectId: row.project_id, name: row.name } : null;
}
