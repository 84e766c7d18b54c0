/**
 * This release; part of every cache key, so a new release never reuses an old release's
 * artifacts. A literal (checked against package.json by a test) so the bundle does not embed
 * package.json, whose scripts change more often than the code.
 */
export const TOOL_VERSION = '0.1.0';
