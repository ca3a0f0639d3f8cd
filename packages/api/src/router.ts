import { artifactsRouter } from './routers/artifacts.ts';
import { eventsRouter } from './routers/events.ts';
import { lineageRouter } from './routers/lineage.ts';
import { metricsRouter } from './routers/metrics.ts';
import { projectsRouter } from './routers/projects.ts';
import { runsRouter } from './routers/runs.ts';
import { systemRouter } from './routers/system.ts';
import { createCallerFactory, router } from './trpc.ts';

export const appRouter = router({
  system: systemRouter,
  projects: projectsRouter,
  artifacts: artifactsRouter,
  runs: runsRouter,
  metrics: metricsRouter,
  events: eventsRouter,
  lineage: lineageRouter,
});

export type AppRouter = typeof appRouter;

export const createCaller = createCallerFactory(appRouter);
