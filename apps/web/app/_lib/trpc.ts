'use client';
import type { AppRouter, RouterInputs, RouterOutputs } from '@pedigree/api';
export type { ArtifactKind, RunKind, RunUpdate } from '@pedigree/api';
import { createTRPCContext } from '@trpc/tanstack-react-query';

/** Typed hooks for the whole API: `const trpc = useTRPC(); useQuery(trpc.runs.get.queryOptions({ runId }))`. */
export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

/** What each procedure takes and returns: the API's own types (`Inputs['runs']['list']`, `Outputs['runs']['get']`). */
export type Inputs = RouterInputs;
export type Outputs = RouterOutputs;
export type RunView = Outputs['runs']['get'];
export type LineageDiff = Outputs['lineage']['diff'];

/** Where the dashboard keeps an API key for servers in `keys` mode (open mode needs none). */
export const API_KEY_STORAGE = 'pedigree.apiKey';
