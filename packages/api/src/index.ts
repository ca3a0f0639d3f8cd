export { appRouter, createCaller, type AppRouter, type RouterInputs, type RouterOutputs } from './router.ts';
export { createContext, apiKeyFromHeaders, AUTH_MODES, type AuthMode, type Context } from './context.ts';
export { readServerEnv, type ServerEnv } from './env.ts';
export { handleTrpcRequest, installServer, uninstallServer, defaultAuthMode, TRPC_ENDPOINT, MAX_REQUEST_BYTES, type ServerState } from './http.ts';
export { createApiKey, listApiKeys, revokeApiKey, authenticateApiKey, countApiKeys, KEY_PREFIX, type ApiKeyView, type KeyIdentity } from './keys.ts';
export { toTRPCError } from './errors.ts';
export type { RunUpdate } from './watch.ts';
export { default as superjson } from 'superjson';
export { handleMlflowRequest, MLFLOW_PREFIX } from './mlflow/http.ts';
export { handleMlflowArtifactRequest, listRunArtifacts } from './mlflow/artifacts.ts';
export { fileStoreSettings, DEFAULT_MAX_ARTIFACT_BYTES, type FileStoreSettings } from './files.ts';
// The vocabulary, for those that may import only the API (the dashboard): defined once, in the ledger.
export { ARTIFACT_KINDS, RUN_KINDS, type ArtifactKind, type RunKind } from '@pedigree/ledger';
export { accessFor, type Access } from './access.ts';
export { handleOpenLineageRequest, handleOpenLineageExportRequest, OPENLINEAGE_ENDPOINT, OPENLINEAGE_EXPORT_ENDPOINT } from './openlineage/http.ts';
export { handleReportRequest, REPORTS_ENDPOINT, REPORT_FORMATS, MAX_REPORT_BYTES, type ReportFormat } from './reports.ts';
export { exportOpenLineage, datasetNamespace, type OpenLineageRunEvent, type OpenLineageDataset, type OpenLineageFacet, type ExportOptions } from './openlineage/export.ts';
export { pedigreeRunId, datasetDigest } from './openlineage/ingest.ts';
export { CUSTOM_FACETS, STANDARD_FACETS, PRODUCER, RUN_EVENT_SCHEMA_URL } from './openlineage/spec.ts';
