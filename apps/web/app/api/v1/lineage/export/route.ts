import { handleOpenLineageExportRequest } from '@pedigree/api';

// OpenLineage out: the lineage as RunEvents, one per line (NDJSON).
export const GET = handleOpenLineageExportRequest;
