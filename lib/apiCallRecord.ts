/**
 * One API call as the gateway records it (gateway/usage.ts) and the inference component stores it
 * (subgraphs/inference/usageStore.ts, migration 006_api_calls): the wire shape of schema/inference.graphql's
 * ApiCallInput, shared here because the two layers may not import each other.
 */
export interface ApiCallRecord extends ApiCaller {
  occurredAt: string;
  requestId: string;
  protocol: 'graphql' | 'rest';
  method: string;
  route: string | null;
  operationType: string | null;
  operationName: string | null;
  statusCode: number;
  errorCode: string | null;
  latencyMs: number;
}

/** Who made a call, as a record holds it. */
export interface ApiCaller {
  tenantId: string | null;
  organizationId: string | null;
  projectId: string | null;
  userId: string | null;
  apiKeyId: string | null;
  modelId: string | null;
}

/**
 * Where the gateway writes its batches of records: the inference component's store, called in process
 * when that component runs beside the gateway (`mariner up`: the component host hands it over, as it does
 * the inference data plane), else its `recordApiCalls` over HTTP (`mariner serve`). Rejects when the
 * batch was not stored; the gateway then keeps it for its next write (gateway/usage.ts).
 */
export type ApiCallSink = (calls: ApiCallRecord[]) => Promise<void>;
