export { appRouter, createCaller, type AppRouter } from './router.ts';
export { createContext, apiKeyFromHeaders, type AuthMode, type Context } from './context.ts';
export { handleTrpcRequest, installServer, uninstallServer, defaultAuthMode, TRPC_ENDPOINT, MAX_REQUEST_BYTES, type ServerState } from './http.ts';
export { createApiKey, listApiKeys, revokeApiKey, authenticateApiKey, countApiKeys, KEY_PREFIX, type ApiKeyView, type KeyIdentity } from './keys.ts';
export { toTRPCError } from './errors.ts';
export type { RunUpdate } from './watch.ts';
export { default as superjson } from 'superjson';
export { handleMlflowRequest, MLFLOW_PREFIX } from './mlflow/http.ts';
