import { createApiKey, listApiKeys, revokeApiKey } from '@pedigree/api';
import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { formatAgo, shortId, table } from '../format.ts';

const ACTIONS = ['create', 'list', 'revoke'] as const;

export const keysCommand: Command = {
  name: 'keys',
  summary: 'create, list and revoke API keys (one project each)',
  usage: 'keys create|list|revoke',
  description:
    'keys create --project NAME [--name LABEL] prints a new key; keys list [--project NAME] shows them; keys revoke <key id, id prefix or hint> ends one at once. An API key lets a client (a script, a notebook, the trainer) use one project through the server, and nothing else. Only a hash of the key is stored: `create` prints the key once. A server on PostgreSQL needs keys; the embedded store serves without them unless started with --auth keys.',
  options: [
    { name: 'project', type: 'string', value: 'NAME', description: 'the project (name or id)' },
    { name: 'name', type: 'string', value: 'LABEL', description: 'what the key is for (default: "default")' },
  ],
  args: [
    { name: 'action', optional: false },
    { name: 'key', optional: true },
  ],
  async run(ctx) {
    const [action, ref] = ctx.args;
    if (!ACTIONS.includes(action as (typeof ACTIONS)[number])) throw new UsageError(`keys: unknown action ${JSON.stringify(action)}; use ${ACTIONS.join(', ')}`);
    const projectRef = ctx.options.string('project');
    if (action === 'create' && !projectRef) throw new UsageError('keys create needs --project NAME');
    if (action === 'revoke' && !ref) throw new UsageError('keys revoke needs the key id (or its hint, as `keys list` shows it)');
    if (action !== 'revoke' && ref) throw new UsageError(`keys ${action} takes no argument (got ${JSON.stringify(ref)})`);
    const pd = await ctx.openStore();
    const db = pd.database.db;
    const project = projectRef ? await findProject(pd.lineage, projectRef) : undefined;
    const { term } = ctx;
    const { paint } = term;

    if (action === 'create') {
      const created = await createApiKey(db, project!.id, ctx.options.string('name') ?? 'default');
      if (ctx.json) return term.json({ ...created, project: project!.name });
      term.line(created.key);
      term.error(paint.dim(`API key "${created.name}" for project ${project!.name} (id ${created.id}). Shown once: store it now, e.g. export PEDIGREE_API_KEY=…`));
      return;
    }
    if (action === 'revoke') {
      const revoked = await revokeApiKey(db, ref!);
      if (ctx.json) return term.json(revoked);
      term.line(`revoked ${revoked.hint}… (${revoked.name}, id ${revoked.id})`);
      return;
    }
    const keys = await listApiKeys(db, project?.id);
    if (ctx.json) return term.json(keys);
    if (keys.length === 0) return term.line(project ? `No API keys for ${project.name}.` : 'No API keys. Create one with `pedigree keys create --project NAME`.');
    const names = new Map((await pd.lineage.projects()).map((p) => [p.id, p.name]));
    for (const line of table(
      keys,
      [
        { header: 'ID', cell: (k) => shortId(k.id), paint: (t) => paint.yellow(t) },
        { header: 'KEY', cell: (k) => `${k.hint}…` },
        { header: 'NAME', cell: (k) => k.name, shrink: true, paint: (t) => paint.bold(t) },
        { header: 'PROJECT', cell: (k) => names.get(k.projectId) ?? shortId(k.projectId), shrink: true },
        { header: 'CREATED', cell: (k) => formatAgo(k.createdAt), paint: (t) => paint.dim(t) },
        { header: 'LAST USED', cell: (k) => (k.lastUsedAt ? formatAgo(k.lastUsedAt) : 'never'), paint: (t) => paint.dim(t) },
        { header: 'STATUS', cell: (k) => (k.revokedAt ? 'revoked' : 'active'), paint: (t) => (t === 'revoked' ? paint.red(t) : paint.green(t)) },
      ],
      { width: term.width, paint },
    ))
      term.line(line);
  },
};

async function findProject(lineage: { projects(): Promise<{ id: string; name: string }[]> }, ref: string): Promise<{ id: string; name: string }> {
  const all = await lineage.projects();
  const found = all.find((p) => p.name === ref || p.id === ref.toLowerCase());
  if (!found) throw new UsageError(`no project ${JSON.stringify(ref)}${all.length ? ` (projects: ${all.map((p) => p.name).join(', ')})` : ''}; create it with \`pedigree projects create ${ref}\``);
  return found;
}
