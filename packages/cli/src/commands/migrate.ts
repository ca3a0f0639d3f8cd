import { migrate, openPglite, openPostgres } from '@pedigree/db';
import type { Command } from '../command.ts';
import { assertStoreFree } from '../server.ts';
import { describeStore } from '../store.ts';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'apply pending database migrations (needed for a PostgreSQL server)',
  usage: 'migrate',
  description:
    'Applies the migrations in prisma/migrations that the database does not have yet, each in its own transaction. An embedded store migrates itself when opened; a server is migrated only by this command, so that deploying a new version never changes a shared database by surprise.',
  async run(ctx) {
    // The migration runner itself rather than openPedigree({ migrate: true }): the same
    // step, but it reports which migrations it applied. So the checks of ctx.openStore are made here.
    assertStoreFree('migrate', ctx.target, ctx.options.string('server'));
    const db = 'url' in ctx.target ? await openPostgres(ctx.target.url) : await openPglite(ctx.target.dir);
    try {
      const result = await migrate(db);
      if (ctx.json) return ctx.term.json({ store: db.location, kind: db.kind, ...result });
      const { paint } = ctx.term;
      ctx.term.line(`Store: ${describeStore(db)}`);
      for (const name of result.applied) ctx.term.line(`  ${paint.green('applied')}          ${name}`);
      for (const name of result.alreadyApplied) ctx.term.line(`  ${paint.dim('already applied')}  ${name}`);
      ctx.term.line(result.applied.length ? `Applied ${result.applied.length} migration(s).` : 'Already up to date.');
    } finally {
      await db.close();
    }
  },
};
