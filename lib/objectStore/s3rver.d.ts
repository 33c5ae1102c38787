// s3rver 3.7.1 ships no types: just what testS3Server.ts uses (node_modules/s3rver/lib/s3rver.js).
declare module 's3rver' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory?: string;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    serviceEndpoint?: string;
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>;
  }

  class S3rver {
    constructor(options?: S3rverOptions);
    /** Creates the configured buckets (run() does this before listening). */
    configureBuckets(): Promise<void>;
    /** The Koa request handler, to serve s3rver from one's own http.Server. */
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    /** winston logger; run()'s server closes it on close. */
    readonly logger: { close(): void };
  }

  export = S3rver;
}
