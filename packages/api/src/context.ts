import type { Pedigree } from '@pedigree/lineage';
import { TRPCError } from '@trpc/server';
import { authenticateApiKey, type KeyIdentity } from './keys.ts';
import { redeemTicket } from './tickets.ts';

/**
 * `open`: requests without a key act on every project (the embedded,
 * single-user default). `keys`: every request needs a key, and sees only its
 * project. A request that carries a key is held to that key's project in
 * either mode.
 */
export const AUTH_MODES = ['open', 'keys'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

export interface Context {
  pedigree: Pedigree;
  authMode: AuthMode;
  /** The key the request carried, once checked; null when it carried none. */
  key: KeyIdentity | null;
  /** Why the request may not touch any project (no key on a keys server, a bad key); raised by every procedure but health. */
  authError: TRPCError | null;
  /** Who is acting, for event metadata. */
  actor: string;
}

export interface CreateContextInput {
  pedigree: Pedigree;
  authMode: AuthMode;
  /** The raw key the request carried in a header: `Authorization: Bearer …` or `x-api-key`. */
  apiKey?: string | null;
  /** A subscription's ticket (see tickets.ts), from its connection params: never a key. */
  ticket?: string | null;
  /** Why the credentials the request carried are refused before they are looked at (a key in the URL). */
  refused?: string | null;
  client?: string | null;
}

export async function createContext({ pedigree, authMode, apiKey, ticket, refused, client }: CreateContextInput): Promise<Context> {
  let key: KeyIdentity | null = null;
  let authError: TRPCError | null = null;
  if (refused) {
    authError = new TRPCError({ code: 'UNAUTHORIZED', message: refused });
  } else if (ticket) {
    key = await redeemTicket(pedigree.database.db, ticket);
    if (!key) authError = new TRPCError({ code: 'UNAUTHORIZED', message: 'the live-update ticket is invalid or expired (or its key was revoked): POST system.ticket for a new one' });
  } else if (apiKey) {
    key = await authenticateApiKey(pedigree.database.db, apiKey);
    if (!key) authError = new TRPCError({ code: 'UNAUTHORIZED', message: 'unknown or revoked API key' });
  } else if (authMode === 'keys') {
    authError = new TRPCError({ code: 'UNAUTHORIZED', message: 'this server needs an API key: create one with `pedigree keys create --project <name>` and send it as `Authorization: Bearer <key>`' });
  }
  const actor = key ? `key:${key.name}` : 'local';
  return { pedigree, authMode, key, authError, actor: client ? `${actor} (${client.slice(0, 100)})` : actor };
}

/** The key from request headers. */
export function apiKeyFromHeaders(headers: Headers): string | null {
  const auth = headers.get('authorization');
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1]! : auth.trim();
  }
  return headers.get('x-api-key');
}
