import { jsonTextDepth, MAX_JSON_DEPTH } from '@pedigree/ledger';
import { accessFor, type Access } from '../access.ts';
import { apiKeyFromHeaders, createContext, type Context } from '../context.ts';
import { MAX_REQUEST_BYTES, readLimited, serverState } from '../http.ts';
import { MlflowError } from './errors.ts';
import type { Body } from './wire.ts';

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
export async function authenticate(req: Request, client: string): Promise<{ ctx: Context; access: Access }> {
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

