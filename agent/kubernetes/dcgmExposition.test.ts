import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseExposition } from './dcgmExposition.js';

const exporterText = readFileSync(new URL('./testdata/dcgm-exporter-node-a.metrics', import.meta.url), 'utf8');

describe('parseExposition (Prometheus text format 0.0.4)', () => {
  it("reads a DCGM exporter's answer: every sample with its labels, and the declared types", () => {
    const { samples, types, malformedLines } = parseExposition(exporterText);
    expect(malformedLines).toBe(0);
    expect(samples).toHaveLength(12);
    expect(types.get('DCGM_FI_DEV_GPU_UTIL')).toBe('gauge');
    expect(samples.find((s) => s.name === 'DCGM_FI_DEV_GPU_UTIL' && s.labels.gpu === '0')).toEqual({
      name: 'DCGM_FI_DEV_GPU_UTIL',
      labels: {
        gpu: '0',
        UUID: 'GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52',
        device: 'nvidia0',
        modelName: 'NVIDIA A100-SXM4-80GB',
        Hostname: 'gpu-a',
        DCGM_FI_DRIVER_VERSION: '535.104.05',
        container: 'vllm',
        namespace: 'team-a',
        pod: 'rt-llama-0',
      },
      value: 90,
      timestamp: null,
    });
    expect(samples.find((s) => s.name === 'DCGM_FI_DEV_POWER_USAGE' && s.labels.gpu === '1')?.value).toBeCloseTo(61.201);
  });

  it('reads label values with escapes, commas and braces, spaces between labels, a trailing comma, and timestamps', () => {
    const { samples, malformedLines } = parseExposition(
      ['m{a="x,y}z", b = "say \\"hi\\"\\n", c="back\\\\slash",} 1.5e3 1700000000000', 'plain 42', 'empty{} -7', '  indented_metric{le="+Inf"}\t3\r'].join('\n'),
    );
    expect(malformedLines).toBe(0);
    expect(samples).toEqual([
      { name: 'm', labels: { a: 'x,y}z', b: 'say "hi"\n', c: 'back\\slash' }, value: 1500, timestamp: 1700000000000 },
      { name: 'plain', labels: {}, value: 42, timestamp: null },
      { name: 'empty', labels: {}, value: -7, timestamp: null },
      { name: 'indented_metric', labels: { le: '+Inf' }, value: 3, timestamp: null },
    ]);
  });

  it('reads NaN and infinities as numbers', () => {
    const values = parseExposition('a NaN\nb +Inf\nc -Inf').samples.map((s) => s.value);
    expect(values[0]).toBeNaN();
    expect(values.slice(1)).toEqual([Infinity, -Infinity]);
  });

  it('counts and skips lines it cannot read, keeping the good ones', () => {
    const { samples, malformedLines } = parseExposition(
      [
        'good 1',
        'no_value',
        'bad{a="unterminated} 1',
        'bad{a=unquoted} 1',
        'bad{a="x"} one',
        'bad{a="\\q"} 1',
        '9starts_with_digit 1',
        'bad{a="x"} 1 12.5',
        'bad{a="x"} 1 2 3',
        'also_good{x="1"} 2',
      ].join('\n'),
    );
    expect(samples.map((s) => s.name)).toEqual(['good', 'also_good']);
    expect(malformedLines).toBe(8);
  });
});
