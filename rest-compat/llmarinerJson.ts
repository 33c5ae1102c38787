/**
 * LLMariner's JSON as its servers write it (grpc-gateway's JSONPb with protojson `UseProtoNames` and
 * `EmitDefaultValues`, e.g. cluster-monitor server/cmd/run.go): fields by their snake_case proto names,
 * every field present, enums by their full proto value names (`MODEL_LOADING_STATUS_SUCCEEDED`), and
 * 64-bit integers as decimal strings (the proto3 JSON mapping: https://protobuf.dev/programming-guides/json/).
 *
 * The rule for a route both APIs define (docs/llmariner.md): on an OpenAI route the fields OpenAI
 * defines keep OpenAI's shape (`created` stays a number) and only LLMariner's extra fields take these
 * forms; on a route only LLMariner has, every field does.
 */

/** A proto int64/uint64 as protojson writes it: a decimal string. */
export function int64(value: number): string {
  return String(Math.trunc(value));
}

/** `SUCCEEDED` → `MODEL_LOADING_STATUS_SUCCEEDED`; an empty value is the enum's `_UNSPECIFIED`. */
function protoEnum(prefix: string, value: string | null | undefined): string {
  if (!value) return `${prefix}_UNSPECIFIED`;
  return value.startsWith(`${prefix}_`) ? value : `${prefix}_${value}`;
}

/** model-manager api/v1 `ModelLoadingStatus`. */
export const loadingStatusName = (value: string | null | undefined) => protoEnum('MODEL_LOADING_STATUS', value);

/**
 * model-manager api/v1 `SourceRepository`. Mariner's `FILE` has no LLMariner value: it goes out as
 * `SOURCE_REPOSITORY_FILE`, which LLMariner's clients (protojson with DiscardUnknown) read as unspecified.
 */
export const sourceRepositoryName = (value: string | null | undefined) => protoEnum('SOURCE_REPOSITORY', value);

/** model-manager api/v1 `ActivationStatus`. */
export const activationStatusName = (value: string | null | undefined) => protoEnum('ACTIVATION_STATUS', value);

/** model-manager api/v1 `ModelFormat` (Mariner's adapter and Whisper formats keep the same prefix; see sourceRepositoryName). */
export const modelFormatName = (value: string | null | undefined) => protoEnum('MODEL_FORMAT', value);

/** job-manager api/v1 `JobType`: Mariner's `FINE_TUNING`, `BATCH`, `NOTEBOOK`. */
export const jobTypeName = (value: string | null | undefined) => protoEnum('JOB_TYPE', value);

/** The short name of a proto enum value given in either form (`SOURCE_REPOSITORY_OLLAMA` or `OLLAMA`). */
export function shortEnumName(prefix: string, value: string): string {
  return value.startsWith(`${prefix}_`) ? value.slice(prefix.length + 1) : value;
}

/** Unix seconds of an ISO instant, truncated to a multiple of `intervalSeconds` (a time bucket's start). */
export function bucketStart(seconds: number, intervalSeconds: number): number {
  return Math.floor(seconds / intervalSeconds) * intervalSeconds;
}
