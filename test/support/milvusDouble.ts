import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/**
 * A test double of Milvus' gRPC API, served with the SDK's own service description
 * (@zilliz/milvus2-sdk-node ships Milvus' .proto files compiled to protobufjs JSON, which is what the
 * SDK itself loads), so requests and responses cross a real gRPC connection in Milvus' wire format.
 *
 * It implements only the calls Mariner's Milvus index makes (Connect, Has/Create/Describe/Drop
 * collection, CreateIndex, LoadCollection + GetLoadingProgress, Insert, Delete, Search) over an
 * in-memory brute-force store.
 *
 * What it does NOT prove: that a real Milvus accepts our schema, index parameters (HNSW M /
 * efConstruction, ef) and expressions; Milvus' consistency levels (a real Milvus may not show an insert
 * to a search at once; this double always does), segment sealing, flushing, compaction, persistence,
 * approximate-search recall, authentication and TLS, or behaviour under load. Expressions are parsed
 * for the two forms Mariner sends (`file_id == "x"`, `file_id in ["a", ...]`) and nothing else.
 */
export interface MilvusDouble {
  address: string;
  /** Calls received, by method name (what the SDK actually sent). */
  calls: string[];
  collections(): string[];
  close(): Promise<void>;
}

const require = createRequire(import.meta.url);
const sdkProto = (require('@zilliz/milvus2-sdk-node/dist/milvus/proto-json/milvus') as { default: Record<string, unknown> }).default;
/** The SDK's own loader options (grpc/GrpcClient.js LOADER_OPTIONS). */
const LOADER = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

interface Field {
  name: string;
  data_type: string;
  is_primary_key?: boolean;
  autoID?: boolean;
  type_params?: { key: string; value: string }[];
}

interface Row {
  id: number;
  values: Record<string, unknown>;
}

interface Collection {
  name: string;
  schema: { name: string; fields: Field[]; enable_dynamic_field?: boolean };
  metric: string;
  loaded: boolean;
  rows: Row[];
  nextId: number;
}

const ok = () => ({ error_code: 'Success', reason: '', code: 0 });
const failed = (reason: string) => ({ error_code: 'UnexpectedError', reason, code: 1 });

/** `file_id == "x"` and `file_id in ["a", "b"]`: the expressions Mariner sends. */
function parseExpr(expr: string): ((row: Row) => boolean) | null {
  const trimmed = expr.trim();
  if (trimmed === '') return () => true;
  const eq = /^(\w+)\s*==\s*"([^"]*)"$/.exec(trimmed);
  if (eq) return (row) => row.values[eq[1]!] === eq[2];
  const inList = /^(\w+)\s+in\s+\[(.*)\]$/.exec(trimmed);
  if (inList) {
    const values = new Set([...inList[2]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]));
    return (row) => values.has(String(row.values[inList[1]!]));
  }
  return null;
}

function columnOf(fieldData: Record<string, any>): unknown[] {
  if (fieldData['scalars']) {
    const scalars = fieldData['scalars'];
    if (scalars.long_data?.data?.length) return scalars.long_data.data.map(Number);
    if (scalars.int_data?.data?.length) return scalars.int_data.data.map(Number);
    if (scalars.string_data?.data?.length) return scalars.string_data.data;
    return [];
  }
  const vectors = fieldData['vectors'];
  const dim = Number(vectors.dim);
  const flat: number[] = vectors.float_vector.data;
  const out: number[][] = [];
  for (let i = 0; i < flat.length; i += dim) out.push(flat.slice(i, i + dim));
  return out;
}

function fieldData(field: Field, values: unknown[]): Record<string, unknown> {
  if (field.data_type === 'VarChar') return { type: 'VarChar', field_name: field.name, scalars: { string_data: { data: values } } };
  return { type: 'Int64', field_name: field.name, scalars: { long_data: { data: values.map(String) } } };
}

export async function startMilvusDouble(): Promise<MilvusDouble> {
  const root = protobuf.Root.fromJSON(sdkProto as protobuf.INamespace);
  const CollectionSchema = root.lookupType('milvus.proto.schema.CollectionSchema');
  const PlaceholderGroup = root.lookupType('milvus.proto.common.PlaceholderGroup');
  const definition = grpc.loadPackageDefinition(fromJSON(sdkProto, LOADER)) as any;
  const service = definition.milvus.proto.milvus.MilvusService.service as grpc.ServiceDefinition;
  const collections = new Map<string, Collection>();
  const calls: string[] = [];

  const handlers: Record<string, (request: any) => unknown> = {
    // identifier 0: the SDK then skips its telemetry heartbeats (an older Milvus answers the same).
    Connect: () => ({ status: ok(), server_info: { build_tags: 'mariner-test-double' }, identifier: '0' }),
    HasCollection: (r) => ({ status: ok(), value: collections.has(r.collection_name) }),
    CreateCollection: (r) => {
      if (collections.has(r.collection_name)) return failed(`collection ${r.collection_name} already exists`);
      const schema = CollectionSchema.toObject(CollectionSchema.decode(r.schema), { enums: String, longs: String, defaults: true }) as Collection['schema'];
      collections.set(r.collection_name, { name: r.collection_name, schema, metric: 'COSINE', loaded: false, rows: [], nextId: 1 });
      return ok();
    },
    DescribeCollection: (r) => {
      const c = collections.get(r.collection_name);
      if (!c) return { status: { ...failed(`collection not found[collection=${r.collection_name}]`), error_code: 'CollectionNotExists', code: 100 } };
      return {
        status: ok(),
        schema: c.schema,
        collectionID: '1',
        collection_name: c.name,
        consistency_level: 'Bounded',
        properties: [],
        shards_num: 1,
        update_timestamp: '1',
      };
    },
    CreateIndex: (r) => {
      const c = collections.get(r.collection_name);
      if (!c) return failed('collection not found');
      const metric = (r.extra_params as { key: string; value: string }[]).find((p) => p.key === 'metric_type')?.value;
      if (metric !== 'COSINE' && metric !== 'L2') return failed(`metric_type ${metric} is not supported by this double`);
      c.metric = metric;
      return ok();
    },
    LoadCollection: (r) => {
      const c = collections.get(r.collection_name);
      if (!c) return failed('collection not found');
      c.loaded = true;
      return ok();
    },
    GetLoadingProgress: (r) => ({ status: ok(), progress: collections.get(r.collection_name)?.loaded ? '100' : '0', refresh_progress: '100' }),
    DropCollection: (r) => (collections.delete(r.collection_name) ? ok() : failed('collection not found')),
    Insert: (r) => {
      const c = collections.get(r.collection_name);
      if (!c) return { status: failed('collection not found') };
      const columns = new Map<string, unknown[]>((r.fields_data as Record<string, any>[]).map((f) => [f.field_name as string, columnOf(f)]));
      const n = Number(r.num_rows);
      for (const field of c.schema.fields) {
        if (field.autoID) continue;
        if (columns.get(field.name)?.length !== n)
          return { status: failed(`field ${field.name}: ${columns.get(field.name)?.length ?? 0} values for ${n} rows`) };
      }
      const ids: string[] = [];
      for (let i = 0; i < n; i++) {
        const values: Record<string, unknown> = {};
        for (const [name, column] of columns) values[name] = column[i];
        const id = c.nextId++;
        c.rows.push({ id, values });
        ids.push(String(id));
      }
      return { status: ok(), IDs: { int_id: { data: ids } }, insert_cnt: String(n), succ_index: [], err_index: [] };
    },
    Delete: (r) => {
      const c = collections.get(r.collection_name);
      if (!c) return { status: failed('collection not found') };
      const match = parseExpr(r.expr);
      if (!match) return { status: failed(`expression not understood by this double: ${r.expr}`) };
      const before = c.rows.length;
      c.rows = c.rows.filter((row) => !match(row));
      return { status: ok(), IDs: { int_id: { data: [] } }, delete_cnt: String(before - c.rows.length) };
    },
    Search: (r) => {
      const c = collections.get(r.collection_name);
      if (!c) return { status: failed('collection not found') };
      if (!c.loaded) return { status: failed('collection not loaded') };
      const params = new Map((r.search_params as { key: string; value: string }[]).map((p) => [p.key, p.value]));
      const topK = Number(params.get('topk') ?? params.get('limit') ?? 10);
      const match = parseExpr(r.dsl ?? '');
      if (!match) return { status: failed(`expression not understood by this double: ${r.dsl}`) };
      const group = PlaceholderGroup.decode(r.placeholder_group) as unknown as { placeholders: { values: Uint8Array[] }[] };
      const vectorField = c.schema.fields.find((f) => f.data_type === 'FloatVector')!;
      const outputs = (r.output_fields as string[]).filter((name) => name !== '*');
      const scores: number[] = [];
      const ids: string[] = [];
      const topks: string[] = [];
      const columns = new Map<string, unknown[]>(outputs.map((name) => [name, []]));
      for (const raw of group.placeholders[0]!.values) {
        const bytes = Buffer.from(raw);
        const query = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
        const scored = c.rows.filter(match).map((row) => {
          const v = row.values[vectorField.name] as number[];
          let dot = 0;
          let qq = 0;
          let vv = 0;
          let l2 = 0;
          for (let i = 0; i < v.length; i++) {
            dot += v[i]! * query[i]!;
            qq += query[i]! ** 2;
            vv += v[i]! ** 2;
            l2 += (v[i]! - query[i]!) ** 2;
          }
          // Milvus: COSINE is a similarity (higher is better), L2 a squared distance (lower is better).
          return { row, score: c.metric === 'COSINE' ? dot / (Math.sqrt(qq * vv) || 1) : l2 };
        });
        scored.sort((a, b) => (c.metric === 'COSINE' ? b.score - a.score : a.score - b.score));
        const hits = scored.slice(0, topK);
        topks.push(String(hits.length));
        for (const hit of hits) {
          scores.push(hit.score);
          ids.push(String(hit.row.id));
          for (const name of outputs) columns.get(name)!.push(hit.row.values[name]);
        }
      }
      const fields = outputs.map((name) =>
        fieldData(
          c.schema.fields.find((f) => f.name === name)!,
          columns.get(name)!,
        ),
      );
      return {
        status: ok(),
        results: {
          num_queries: String(group.placeholders[0]!.values.length),
          top_k: String(topK),
          fields_data: fields,
          scores,
          ids: { int_id: { data: ids } },
          topks,
          output_fields: outputs,
        },
        collection_name: c.name,
      };
    },
  };

  const implementation: grpc.UntypedServiceImplementation = {};
  for (const name of Object.keys(service)) {
    implementation[name] = (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
      calls.push(name);
      const handler = handlers[name];
      if (!handler) return callback({ code: grpc.status.UNIMPLEMENTED, details: `${name} is not implemented by the Milvus test double` });
      try {
        callback(null, handler(call.request));
      } catch (error) {
        callback({ code: grpc.status.INTERNAL, details: (error as Error).message });
      }
    };
  }
  const server = new grpc.Server();
  server.addService(service, implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    collections: () => [...collections.keys()],
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
