'use client';
import type { AppRouter } from '@pedigree/api';
export type { RunUpdate } from '@pedigree/api';
import type { inferRouterOutputs } from '@trpc/server';
import { createTRPCContext } from '@trpc/tanstack-react-query';

/** Typed hooks for the whole API: `const trpc = useTRPC(); useQuery(trpc.runs.get.queryOptions({ runId }))`. */
export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

export type Outputs = inferRouterOutputs<AppRouter>;
export type RunView = Outputs['runs']['get'];
export type LineageDiff = Outputs['lineage']['diff'];

/** Where the dashboard keeps an API key for servers in `keys` mode (open mode needs none). */
export const API_KEY_STORAGE = 'pedigree.apiKey';
