import { jsonTextDepth, MAX_JSON_DEPTH } from '@pedigree/ledger';
import { apiKeyFromHeaders, createContext } from '../context.ts';
import { accessFor } from '../access.ts';
import { MAX_REQUEST_BYTES, readLimited, serverState } from '../http.ts';
import { MlflowError, toMlflowError } from './errors.ts';
import { TRACKING_ENDPOINTS, type Call } from './tracking.ts';
import { queryBody, type Body } from './wire.ts';

/** Where MLflow's clients find the tracking API (MLFLOW_TRACKING_URI=http://host:port). */
export const MLFLOW_PREFIX = '/api/2.0/mlflow/';

function errorResponse(err: MlflowError): Response {
  return Response.json({ error_code: err.code, message: err.message }, { status: err.status });
}

/**
 * The key an MLflow client sends: `Authorization: Bearer <key>` from
 * MLFLOW_TRACKING_TOKEN, or Basic auth (MLFLOW_TRACKING_USERNAME/PASSWORD)
 * with the key as the password.
 */
export function mlflowApiKey(headers: Headers): string | null {
  const auth = headers.get('authorization');
  const basic = auth && /^Basic\s+(\S+)\s*$/i.exec(auth);
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) : decoded;
  }
  return apiKeyFromHeaders(headers);
}

/** A request's context and access, checked like every other request; shared by the artifact and OpenLineage endpoints. */
export async function authenticate(req: Request, client: string): Promise<Pick<Call, 'ctx' | 'access'>> {
  const state = await serverState();
  const ctx = await createContext({ pedigree: state.pedigree, authMode: state.authMode, apiKey: mlflowApiKey(req.headers), client: req.headers.get('user-agent')?.slice(0, 60) ?? client });
  if (ctx.authError) throw ctx.authError;
  return { ctx, access: accessFor(ctx) };
}

/** Parses a JSON body (at most MAX_REQUEST_BYTES). */
export async function jsonBody(req: Request): Promise<Body> {
  const bytes = await readLimited(req, MAX_REQUEST_BYTES);
  if (!bytes) throw new MlflowError('BAD_REQUEST', `request body over ${MAX_REQUEST_BYTES} bytes; split the batch`, 413);
  const text = new TextDecoder().decode(bytes).trim();
  if (!text) return {};
  if (jsonTextDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new MlflowError('INVALID_PARAMETER_VALUE', `the body nests more than ${MAX_JSON_DEPTH} levels deep`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new MlflowError('MALFORMED_REQUEST', `Malformed request: the body is not JSON (${(err as Error).message})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new MlflowError('MALFORMED_REQUEST', 'Malformed request: the body must be a JSON object');
  return parsed as Body;
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
