'use client';
import type { AppRouter } from '@pedigree/api';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { createTRPCClient, httpBatchLink, httpSubscriptionLink, splitLink } from '@trpc/client';
import { useState, type ReactNode } from 'react';
import superjson from 'superjson';
import { API_KEY_STORAGE, TRPCProvider } from './_lib/trpc';

const url = '/api/trpc';

/** In `keys` mode the server wants `Authorization: Bearer <key>`; the key the user entered lives in localStorage. */
const storedKey = () => (typeof window === 'undefined' ? null : window.localStorage.getItem(API_KEY_STORAGE));

function authHeaders(): Record<string, string> {
  const key = storedKey();
  return key ? { authorization: `Bearer ${key}` } : {};
}

function makeClients() {
  const queryClient = new QueryClient({ defaultOptions: { queries: { staleTime: 5_000, retry: 1, refetchOnWindowFocus: false } } });
  const trpcClient = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        // EventSource cannot send headers: in keys mode the subscription falls back to polling the queries (see RunPage).
        // EventSource cannot set headers: the key travels as a connection parameter (in the URL; same origin only).
        true: httpSubscriptionLink({
          url,
          transformer: superjson,
          connectionParams: () => {
            const apiKey = storedKey();
            return apiKey ? { apiKey } : null;
          },
        }),
        // Pages that ask for many small things at once (the artifacts page: one edges query per run) split into several requests, not one huge URL.
        false: httpBatchLink({ url, transformer: superjson, headers: authHeaders, maxURLLength: 6000 }),
      }),
    ],
  });
  return { queryClient, trpcClient };
}

export function Providers({ children }: { children: ReactNode }) {
  const [{ queryClient, trpcClient }] = useState(makeClients);
  return (
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
        {children}
      </TRPCProvider>
    </QueryClientProvider>
  );
}
