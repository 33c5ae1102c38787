import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { deviceConfigMap, InvalidManifestError, validateManifest } from './manifests.js';

function inferenceDeployment() {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'vllm-llama',
      namespace: 'mariner-proj',
      labels: { 'app.kubernetes.io/managed-by': 'mariner', 'mariner.dev/model': 'llama-3-8b', 'example.com/any key': 'x' },
      annotations: { 'mariner.dev/anything': '{"free":"form"}' },
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'vllm-llama' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: 'vllm-llama' } },
        spec: {
          nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB' },
          tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
          containers: [
            {
              name: 'runtime',
              image: 'vllm/vllm-openai:v0.6.0',
              imagePullPolicy: 'IfNotPresent',
              args: ['--model', '/models/llama'],
              env: [
                { name: 'A', value: '1' },
                { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'hf', key: 'token' } } },
              ],
              ports: [{ name: 'http', containerPort: 8000 }],
              readinessProbe: { httpGet: { path: '/health', port: 'http' }, periodSeconds: 5 },
              resources: { limits: { 'nvidia.com/gpu': 1, memory: '16Gi' }, requests: { cpu: '500m' } },
              volumeMounts: [{ name: 'models', mountPath: '/models' }],
            },
          ],
          volumes: [{ name: 'models', persistentVolumeClaim: { claimName: 'models' } }],
        },
      },
    },
  };
}

function fineTuningJob() {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'ftjob-abc', namespace: 'mariner-proj' },
    spec: {
      backoffLimit: 0,
      ttlSecondsAfterFinished: 3600,
      template: {
        spec: {
          restartPolicy: 'Never',
          containers: [{ name: 'trainer', image: 'mariner/trainer:1', imagePullPolicy: 'Always', command: ['python', 'train.py'] }],
        },
      },
    },
  };
}

function problemsOf(manifest: object) {
  try {
    validateManifest(manifest);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidManifestError);
    return (error as InvalidManifestError).problems;
  }
  throw new Error('the manifest was accepted');
}

describe('validateManifest', () => {
  it('accepts the manifests the agent produces, with arbitrary label and annotation keys', () => {
    const deployment = inferenceDeployment();
    expect(validateManifest(deployment)).toBe(deployment);
    expect(validateManifest(fineTuningJob())).toBeTruthy();
    expect(
      validateManifest({
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'notebook', labels: { 'a.b/c': 'd' } },
        spec: {
          serviceName: 'notebook',
          replicas: 1,
          selector: { matchLabels: { app: 'nb' } },
          template: { metadata: { labels: { app: 'nb' } }, spec: { containers: [{ name: 'jupyter', image: 'jupyter/base' }] } },
          volumeClaimTemplates: [{ metadata: { name: 'home' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } } } }],
        },
      }),
    ).toBeTruthy();
    expect(
      validateManifest({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'vllm-llama' },
        spec: { selector: { app: 'vllm-llama' }, ports: [{ port: 80, targetPort: 'http' }] },
      }),
    ).toBeTruthy();
    expect(validateManifest({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, type: 'Opaque', stringData: { 'any.key': 'v' } })).toBeTruthy();
    expect(validateManifest(Object.freeze({ apiVersion: 'v1', kind: 'Namespace', metadata: Object.freeze({ name: 'n' }) }))).toBeTruthy();
  });

  it('rejects a typo in a Deployment container field, naming its path', () => {
    const deployment = inferenceDeployment();
    const container = deployment.spec.template.spec.containers[0] as Record<string, unknown>;
    delete container.imagePullPolicy;
    container.imagePullPolcy = 'Always';
    expect(() => validateManifest(deployment)).toThrow('spec.template.spec.containers[0].imagePullPolcy: unknown field');
    expect(problemsOf(deployment)).toEqual([{ path: 'spec.template.spec.containers[0].imagePullPolcy', message: 'unknown field' }]);
  });

  it('rejects a typo in a Job, at any depth, and lists every unknown field', () => {
    const job = fineTuningJob() as ReturnType<typeof fineTuningJob> & { spec: Record<string, unknown> };
    (job.spec.template.spec.containers[0] as Record<string, unknown>).imagePullPolcy = 'Never';
    job.spec.backofLimit = 3;
    (job.metadata as Record<string, unknown>).label = { a: 'b' };
    expect(
      problemsOf(job)
        .map((p) => p.path)
        .sort(),
    ).toEqual(['metadata.label', 'spec.backofLimit', 'spec.template.spec.containers[0].imagePullPolcy']);
  });

  it('rejects a value of the wrong type', () => {
    const deployment = inferenceDeployment() as { spec: Record<string, unknown> };
    deployment.spec.replicas = 'two';
    expect(problemsOf(deployment)).toEqual([{ path: 'spec.replicas', message: 'must be integer' }]);
    expect(() => validateManifest(deployment)).toThrow(/Invalid Deployment "vllm-llama": spec\.replicas: must be integer/);
  });

  it('rejects a label value that is not a string, naming the label', () => {
    const deployment = inferenceDeployment() as { metadata: { labels: Record<string, unknown> } };
    deployment.metadata.labels['example.com/gpus'] = 2;
    expect(problemsOf(deployment)).toEqual([{ path: 'metadata.labels["example.com/gpus"]', message: 'must be string' }]);
  });

  it('refuses a kind it has no schema for', () => {
    expect(() => validateManifest({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } })).toThrow(
      /no schema for apiVersion "example.com\/v1" kind "Widget"/,
    );
  });
});

describe('deviceConfigMap', () => {
  it('turns time slicing into the NVIDIA device plugin config, as a valid ConfigMap', () => {
    const configMap = deviceConfigMap({ timeSlicingGpus: 4 });
    expect(validateManifest(configMap)).toBe(configMap);
    expect(configMap.metadata).toEqual({
      name: 'mariner-device-plugin-config',
      namespace: 'nvidia-gpu-operator',
      labels: { 'app.kubernetes.io/managed-by': 'mariner' },
    });
    expect(Object.keys(configMap.data ?? {})).toEqual(['any']);
    expect(parse(configMap.data!.any)).toEqual({
      version: 'v1',
      sharing: { timeSlicing: { resources: [{ name: 'nvidia.com/gpu', replicas: 4 }] } },
    });
  });

  it('has no sharing section when time slicing is off, and honours namespace and name', () => {
    const configMap = deviceConfigMap({ namespace: 'gpu-operator', name: 'dp', timeSlicingGpus: null });
    expect(configMap.metadata?.namespace).toBe('gpu-operator');
    expect(configMap.metadata?.name).toBe('dp');
    expect(parse(configMap.data!.any)).toEqual({ version: 'v1' });
  });

  it('refuses a replica count the device plugin would reject', () => {
    expect(() => deviceConfigMap({ timeSlicingGpus: 0 })).toThrow(RangeError);
    expect(() => deviceConfigMap({ timeSlicingGpus: 1.5 })).toThrow(RangeError);
  });
});
