export * from './canonical.ts';
export * from './errors.ts';
export * from './events.ts';
export * from './store.ts';
export * from './verify.ts';
export * from './subscribe.ts';
export * from './rebuild.ts';
