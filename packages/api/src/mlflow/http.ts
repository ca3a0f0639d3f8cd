import { CLOSE_AFTER } from '../errors.ts';
import { authenticate, jsonBody } from './auth.ts';
import { MlflowError, toMlflowError } from './errors.ts';
import { TRACKING_ENDPOINTS } from './tracking.ts';
import { queryBody } from './wire.ts';

export { authenticate, jsonBody, mlflowApiKey } from './auth.ts';

/** Where MLflow's clients find the tracking API (MLFLOW_TRACKING_URI=http://host:port). */
export const MLFLOW_PREFIX = '/api/2.0/mlflow/';

function errorResponse(err: MlflowError): Response {
  return Response.json({ error_code: err.code, message: err.message }, { status: err.status, headers: err.status === 413 ? CLOSE_AFTER : undefined });
}

/** Serves MLflow's tracking REST API over the Fetch API: what the Next.js route handler exports. */
export async function handleMlflowRequest(req: Request): Promise<Response> {
  const url = new URL(req.url);
  const at = url.pathname.indexOf(MLFLOW_PREFIX);
  const path = at >= 0 ? url.pathname.slice(at + MLFLOW_PREFIX.length).replace(/\/+$/, '') : '';
  const endpoint = TRACKING_ENDPOINTS[path];
  try {
    if (!endpoint) throw new MlflowError('ENDPOINT_NOT_FOUND', `no MLflow endpoint ${req.method} ${url.pathname} (Pedigree serves the tracking API; see docs/mlflow.md)`);
    if (!endpoint.methods.includes(req.method)) {
      return Response.json({ error_code: 'BAD_REQUEST', message: `${req.method} is not allowed for ${path}; use ${endpoint.methods.join(' or ')}` }, { status: 405, headers: { allow: endpoint.methods.join(', ') } });
    }
    const body = req.method === 'GET' ? queryBody(url) : await jsonBody(req);
    const auth = await authenticate(req, 'mlflow');
    const result = await endpoint.handler({ ...auth, body });
    return Response.json(result);
  } catch (err) {
    const mapped = toMlflowError(err);
    if (mapped.code === 'INTERNAL_ERROR') console.error(`pedigree mlflow: ${req.method} ${path}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return errorResponse(mapped);
  }
}
