/**
 * The areas of the platform's store that Mariner writes itself (Security model: organizations are
 * isolated from each other). Every key Mariner chooses starts with one of these:
 * - `files/<tenant>/<project>/<file id>`: uploaded files (this subgraph, `objectKeyFor`);
 * - `models/<tenant>/<model id>/...`: a model's weights as its loader stored them (subgraphs/models
 *   loading.ts `destinationKey`, `mariner up --demo-model`);
 * - `models/<tenant>/fine-tuned/<job id>/...`: a fine-tuning job's output (subgraphs/jobs `outputPrefix`).
 * (`.tmp/` is the filesystem driver's, and no valid key: lib/objectStore/keys.ts.)
 * What lies there belongs to one project or to the tenant's catalog, so a caller naming such an object
 * by its path could read another organization's file or private model: those objects are reached
 * through their File or Model, whose owners are checked, never by path. Anything else in the store is
 * what an operator put there, shared by everyone.
 */
export const PLATFORM_AREAS = ['files', 'models'] as const;

/**
 * The platform area a key lies in, or null. Takes a key as `ObjectStore.keyFromUri` returns it (a
 * checked key: no `.`, `..` or empty segments, percent-escapes of `file://` URIs decoded), so
 * `./models/...`, `a/../models/...`, `//models/...` or `%6Dodels` cannot name an area another way.
 * The first segment is compared without case: on a case-insensitive filesystem `Models/` is `models/`.
 */
export function platformAreaOf(key: string): (typeof PLATFORM_AREAS)[number] | null {
  const first = key.split('/', 1)[0]!.toLowerCase();
  return (PLATFORM_AREAS as readonly string[]).includes(first) ? (first as (typeof PLATFORM_AREAS)[number]) : null;
}
