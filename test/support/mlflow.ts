/**
 * Raw MLflow REST calls shaped as MLflow's official Python client sends them
 * (mlflow/utils/rest_utils.py): GET with the fields in the query string, POST
 * with a JSON body, `Authorization: Bearer <MLFLOW_TRACKING_TOKEN>`.
 */
export interface MlflowReply {
  status: number;
  body: Record<string, any>;
}

export function mlflowCaller(base: string, token?: string) {
  return async function call(method: 'GET' | 'POST', endpoint: string, fields: Record<string, unknown> = {}, opts: { token?: string | null; raw?: string } = {}): Promise<MlflowReply> {
    const key = opts.token === undefined ? token : opts.token;
    const headers: Record<string, string> = { 'user-agent': 'mlflow-python-client/2.17.0' };
    if (key) headers.authorization = `Bearer ${key}`;
    let url = `${base}/api/2.0/mlflow/${endpoint}`;
    let body: string | undefined;
    if (method === 'GET') {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one));
      }
      if ([...q].length) url += `?${q}`;
    } else {
      headers['content-type'] = 'application/json';
      body = opts.raw ?? JSON.stringify(fields);
    }
    const res = await fetch(url, { method, headers, body });
    const text = await res.text();
    let parsed: Record<string, any>;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { text };
    }
    return { status: res.status, body: parsed };
  };
}
