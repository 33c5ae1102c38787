/**
 * An ISO 8601 timestamp (GraphQL's `DateTime`) as unix seconds, the form OpenAI's objects
 * (`created_at`, `finished_at`, ...) and LLMariner's int64 timestamps take. A missing timestamp is
 * what the caller's API says it is: `0` (proto default) or `null` (OpenAI).
 */
export function unixSeconds(iso: string): number;
export function unixSeconds<Absent>(iso: string | null | undefined, absent: Absent): number | Absent;
export function unixSeconds(iso: string | null | undefined, absent: unknown = null): unknown {
  return iso ? Math.floor(Date.parse(iso) / 1000) : absent;
}
