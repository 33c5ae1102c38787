import { describe, expect, it } from 'vitest';
import { createComponentMetrics } from './metrics.js';

describe('component metrics: inference runtimes', () => {
  it("exposes each runtime's desired and ready replicas, requests in flight, and the autoscaler's average, read once per scrape", async () => {
    const metrics = createComponentMetrics('sessions');
    let reads = 0;
    metrics.observeRuntimes(async () => {
      reads++;
      return [
        { cluster_id: 'c1', model_id: 'llama', desired_replicas: 3, ready_replicas: 2, in_flight_requests: 7, autoscaling: { averageInFlight: 5.5 } },
        { cluster_id: 'c2', model_id: 'llama', desired_replicas: 1, ready_replicas: 1, in_flight_requests: 0, autoscaling: null },
      ];
    });
    const text = await metrics.registry.metrics();
    expect(reads).toBe(1);
    expect(text).toMatch(/^mariner_runtime_replicas\{cluster="c1",model="llama",state="desired",component="sessions"\} 3$/m);
    expect(text).toMatch(/^mariner_runtime_replicas\{cluster="c1",model="llama",state="ready",component="sessions"\} 2$/m);
    expect(text).toMatch(/^mariner_runtime_requests_in_flight\{cluster="c1",model="llama",component="sessions"\} 7$/m);
    expect(text).toMatch(/^mariner_runtime_average_in_flight\{cluster="c1",model="llama",component="sessions"\} 5.5$/m);
    expect(text).not.toMatch(/^mariner_runtime_average_in_flight\{cluster="c2"/m);
    await metrics.registry.metrics();
    expect(reads).toBe(2);
  });
});

describe('component metrics: inference', () => {
  it('exposes time to first token, duration, requests and tokens per model from usage records', async () => {
    const metrics = createComponentMetrics('sessions');
    const observe = metrics.inferenceObserver();
    const record = { model_id: 'llama', status_code: 200, prompt_tokens: 12, completion_tokens: 30, time_to_first_token_ms: 80, latency_ms: 900 };
    observe(record);
    observe({ ...record, status_code: 429, prompt_tokens: 0, completion_tokens: 0, time_to_first_token_ms: null, latency_ms: 3 });
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^mariner_inference_requests_total\{model="llama",status="200",component="sessions"\} 1$/m);
    expect(text).toMatch(/^mariner_inference_requests_total\{model="llama",status="429",component="sessions"\} 1$/m);
    expect(text).toMatch(/^mariner_inference_tokens_total\{model="llama",type="prompt",component="sessions"\} 12$/m);
    expect(text).toMatch(/^mariner_inference_tokens_total\{model="llama",type="completion",component="sessions"\} 30$/m);
    // A refused request has no first token: one observation only.
    expect(text).toMatch(/^mariner_inference_time_to_first_token_seconds_count\{component="sessions",model="llama"\} 1$/m);
    expect(text).toMatch(/^mariner_inference_time_to_first_token_seconds_bucket\{le="0\.1",component="sessions",model="llama"\} 1$/m);
    expect(text).toMatch(/^mariner_inference_request_duration_seconds_count\{component="sessions",model="llama"\} 2$/m);
  });
});
