'use client';
import type { AppRouter } from '@pedigree/api';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { createTRPCClient, httpBatchLink, httpSubscriptionLink, splitLink } from '@trpc/client';
import { useState, type ReactNode } from 'react';
import superjson from 'superjson';
import { authHeaders, storedKey } from './_lib/auth';
import { TRPCProvider } from './_lib/trpc';

const url = '/api/trpc';

function makeClients() {
  const queryClient = new QueryClient({ defaultOptions: { queries: { staleTime: 5_000, retry: 1, refetchOnWindowFocus: false } } });
  const trpcClient = createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        // EventSource cannot set headers, and what it sends is in the URL (proxy logs, history): never the key.
        // In keys mode each (re)connect first POSTs the key for a short-lived ticket, and sends that.
        true: httpSubscriptionLink({
          url,
          transformer: superjson,
          connectionParams: async () => {
            const apiKey = storedKey();
            if (!apiKey) return null;
            const res = await fetch(`${url}/system.ticket`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` }, body: '{}' });
            const body = (await res.json()) as { result?: { data?: { json?: { ticket?: string | null } } } };
            const ticket = body.result?.data?.json?.ticket;
            return ticket ? { ticket } : null;
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
