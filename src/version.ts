import pkg from '../package.json';

/** This release; part of every cache key, so a new release never reuses an old release's artifacts. */
export const TOOL_VERSION: string = pkg.version;
