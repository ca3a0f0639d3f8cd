import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { handleMlflowArtifactRequest, handleMlflowRequest, handleOpenLineageExportRequest, handleOpenLineageRequest, handleTrpcRequest, installServer, uninstallServer, type AuthMode, type FileStoreSettings, type ReadRouting } from '@pedigree/api';

/** The HTTP endpoints the web app mounts (apps/web/app/api/…/route.ts), by path prefix: the first match serves. */
const ROUTES: [prefix: string, handler: (req: Request) => Promise<Response>][] = [
  ['/api/2.0/mlflow/', handleMlflowRequest],
  ['/api/v1/lineage/export', handleOpenLineageExportRequest],
  ['/api/v1/lineage', handleOpenLineageRequest],
  ['/api/2.0/mlflow-artifacts/artifacts', handleMlflowArtifactRequest],
  ['/api/trpc', handleTrpcRequest],
];
import type { Pedigree } from '@pedigree/lineage';

/**
 * The API's fetch handler (what the Next.js route exports) behind a plain
 * node:http server in the test's process: real HTTP, without starting Next.
 * Tests about what the API decides (auth, validation) use this; tests about
 * the server a user runs use test/support/server.ts.
 */
export async function serveInProcess(pedigree: Pedigree, authMode: AuthMode, opts: { files?: FileStoreSettings; reads?: ReadRouting; /** Default: a free one; a fixed one lets a server come back at the same address. */ port?: number } = {}): Promise<{ url: string; close(): Promise<void> }> {
  installServer({ pedigree, authMode, files: opts.files, reads: opts.reads });
  const server = http.createServer(async (req, res) => {
    try {
      const controller = new AbortController();
      res.on('close', () => controller.abort());
      // The body streams, handed over as Next hands it to a route (the node request as the body, pulled as it is read): uploads are never whole in memory, and a client that goes away mid-body errors the stream.
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
      const request = new Request(`http://${req.headers.host}${req.url}`, {
        method: req.method,
        headers: req.headers as Record<string, string>,
        body: hasBody ? (req as unknown as ReadableStream<Uint8Array>) : undefined,
        duplex: 'half',
        signal: controller.signal,
      } as RequestInit);
      const route = ROUTES.find(([prefix]) => (req.url ?? '').startsWith(prefix));
      const response = route ? await route[1](request) : new Response('not found', { status: 404 });
      res.writeHead(response.status, Object.fromEntries(response.headers));
      if (response.body) {
        for await (const chunk of response.body) res.write(chunk);
      }
      res.end();
    } catch (err) {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    }
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      uninstallServer();
    },
  };
}
