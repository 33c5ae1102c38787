// Types of scripts/build.mjs for the TypeScript that imports it (test/build.test.ts, test/embedded.test.ts).
/** The folders the runtime is made of, compiled to dist/ with the same layout. */
export declare const SOURCE_DIRS: readonly string[];
/** Whether `root`/dist was built from the current sources. */
export declare function isUpToDate(root?: string): boolean;
/** Builds `root`/dist (sources transpiled, assets copied); resolves when the new dist/ is in place. */
export declare function build(root?: string): Promise<{ files: number; assets: number; ms: number }>;
/** Builds when a source changed since the last build (what `npm start` does); resolves with what was built, if anything. */
export declare function buildIfNeeded(root?: string): Promise<{ files: number; assets: number; ms: number } | undefined>;
