/** The HTTP status of a failed @kubernetes/client-node call (its ApiException's `code`). */
export function statusCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** For `.catch`: an object that is not there (404) is no failure (deleting what is gone already). */
export function ignoreNotFound(error: unknown): void {
  if (statusCode(error) !== 404) throw error;
}

/** A call's result, or null when what it reads is not there (404); other failures stay failures. */
export async function orNotFound<T>(call: Promise<T>): Promise<T | null> {
  try {
    return await call;
  } catch (error) {
    if (statusCode(error) === 404) return null;
    throw error;
  }
}
