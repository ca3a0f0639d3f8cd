import type { AppRouter } from '@pedigree/api';
import { MIN_POSITION_HEADER, POSITION_HEADER } from '@pedigree/api/headers';
import { createTRPCClient, httpLink, httpSubscriptionLink, splitLink, unstable_localLink, type TRPCClient } from '@trpc/client';
import superjson from 'superjson';

export type Api = TRPCClient<AppRouter>;

export const CLIENT_NAME = 'pedigree-client/0.1';

/** The typed tRPC client over HTTP; subscriptions over SSE. */
export async function remoteApi(url: string, apiKey: string | undefined): Promise<Api> {
  const endpoint = `${url.replace(/\/+$/, '')}/api/trpc`;
  const headers: Record<string, string> = { 'x-pedigree-client': CLIENT_NAME };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  // Read-your-writes: every read carries the highest position this client's writes were answered with, so a
  // server that reads from replicas serves it from one that has it (or from the primary).
  let written = 0;
  const noteWrites: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    const position = Number(res.headers.get(POSITION_HEADER));
    if (position > written) written = position;
    return res;
  };
  const readHeaders = () => (written ? { ...headers, [MIN_POSITION_HEADER]: String(written) } : headers);
  // Node 20 has no EventSource: the `eventsource` package, which can send the key as a header.
  // Deno and browsers have one, which cannot, and whatever it sends is in the URL: never the key, but a
  // short-lived ticket the server gives for it (system.ticket), asked anew at every (re)connect.
  const native = (globalThis as { EventSource?: typeof EventSource }).EventSource;
  const plain = createTRPCClient<AppRouter>({ links: [httpLink({ url: endpoint, transformer: superjson, headers })] });
  const subscriptions = native
    ? httpSubscriptionLink({
        url: endpoint,
        transformer: superjson,
        connectionParams: apiKey ? async () => ({ ticket: (await plain.system.ticket.mutate()).ticket ?? '' }) : undefined,
      })
    : httpSubscriptionLink({
        url: endpoint,
        transformer: superjson,
        EventSource: (await import('eventsource')).EventSource,
        eventSourceOptions: {
          fetch: (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), ...readHeaders() } }),
        },
      });
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: subscriptions,
        false: httpLink({ url: endpoint, transformer: superjson, headers: readHeaders, fetch: noteWrites }),
      }),
    ],
  });
}

/** The same client, calling the router in this process against a store it opens itself (a directory, or a PostgreSQL URL): no server. */
export async function embeddedApi(store: string | undefined): Promise<{ api: Api; close: () => Promise<void> }> {
  const [{ openPedigree, defaultHome }, api] = await Promise.all([import('@pedigree/lineage'), import('@pedigree/api')]);
  const pedigree = await openPedigree(store && /^postgres(ql)?:\/\//.test(store) ? { url: store } : { dir: store ?? defaultHome() });
  const client = createTRPCClient<AppRouter>({
    links: [
      unstable_localLink({
        router: api.appRouter,
        transformer: superjson,
        createContext: () => api.createContext({ pedigree, authMode: 'open', client: CLIENT_NAME }),
      }),
    ],
  });
  return { api: client, close: () => pedigree.close() };
}
