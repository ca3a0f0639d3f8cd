import { handleMlflowArtifactRequest } from '@pedigree/api';

// MLflow's artifact proxy (runs' artifact_uri is mlflow-artifacts:/<experiment>/<run>/artifacts): uploads stream into the content-addressed file store.
export const GET = handleMlflowArtifactRequest;
export const PUT = handleMlflowArtifactRequest;
export const DELETE = handleMlflowArtifactRequest;
