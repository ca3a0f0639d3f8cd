import { handleMlflowRequest } from '@pedigree/api';

// MLflow's tracking REST API (MLFLOW_TRACKING_URI=http://host:port): an adapter beside tRPC, over the same ledger.
export const GET = handleMlflowRequest;
export const POST = handleMlflowRequest;
