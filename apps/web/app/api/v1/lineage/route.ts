import { handleOpenLineageRequest } from '@pedigree/api';

// OpenLineage in: producers (Airflow, Spark, dbt) POST RunEvents here; an adapter beside tRPC, over the same ledger.
export const POST = handleOpenLineageRequest;
