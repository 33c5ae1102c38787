import { createHash } from 'node:crypto';
import { badInput } from '../../lib/errors.js';
import { isId } from '../../lib/ids.js';
import type { Assignment } from './store.js';

const CONTROL = /[\u0000-\u001f\u007f]/;

/** Titles and names: trimmed, 1–100 characters, no control characters. */
export function validTitle(value: string, field: string): string {
  const title = value.trim();
  if (title.length === 0) throw badInput(`${field} must not be empty`, field);
  if (title.length > 100) throw badInput(`${field} must be at most 100 characters`, field);
  if (CONTROL.test(title)) throw badInput(`${field} must not contain control characters`, field);
  return title;
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

/** Users are identified by their normalised email (LLMariner pkg/userid/normalize.go). */
export function normalizeUserId(value: string, field = 'userId'): string {
  const id = value.trim().toLowerCase();
  if (!EMAIL.test(id)) throw badInput(`${field}: "${value.slice(0, 80)}" is not an email address`, field);
  return id;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

export interface AssignmentInput {
  clusterId?: string | null | undefined;
  namespace: string;
  kueueQueueName?: string | null | undefined;
  nodeSelector?: { key: string; value: string }[] | null | undefined;
}

/** Namespaces no project may be assigned: Kubernetes' own. */
const SYSTEM_NAMESPACES = new Set(['kube-system', 'kube-public', 'kube-node-lease']);

/**
 * Project assignments: Kubernetes names validated as Kubernetes would (RFC 1123 labels). `reserved`
 * (MARINER_RESERVED_NAMESPACES: the chart's release and runtimes namespaces) are refused like the
 * system ones: the agent holds rights there that a project member would borrow through /v1/sessions.
 */
export function validAssignments(inputs: AssignmentInput[], field: string, reserved: readonly string[] = []): Assignment[] {
  if (inputs.length > 50) throw badInput(`${field}: at most 50 assignments`, field);
  const seen = new Set<string>();
  return inputs.map((input, i) => {
    const at = `${field}[${i}]`;
    if (input.clusterId != null && !isId('cluster', input.clusterId)) {
      throw badInput(`${at}.clusterId: "${input.clusterId.slice(0, 80)}" is not a cluster id`, `${at}.clusterId`);
    }
    if (!DNS_LABEL.test(input.namespace)) {
      throw badInput(`${at}.namespace: "${input.namespace.slice(0, 80)}" is not a valid Kubernetes namespace (RFC 1123 label)`, `${at}.namespace`);
    }
    if (SYSTEM_NAMESPACES.has(input.namespace)) {
      throw badInput(`${at}.namespace: "${input.namespace}" is a Kubernetes system namespace; it cannot be assigned to a project`, `${at}.namespace`);
    }
    if (reserved.includes(input.namespace)) {
      throw badInput(
        `${at}.namespace: "${input.namespace}" is reserved for the platform (Mariner's own or its runtimes' namespace, MARINER_RESERVED_NAMESPACES); it cannot be assigned to a project`,
        `${at}.namespace`,
      );
    }
    if (input.kueueQueueName != null && !DNS_LABEL.test(input.kueueQueueName)) {
      throw badInput(`${at}.kueueQueueName: not a valid Kueue queue name`, `${at}.kueueQueueName`);
    }
    const nodeSelector = (input.nodeSelector ?? []).map((term, j) => {
      if (!LABEL_NAME.test(term.key) || term.key.length > 317) throw badInput(`${at}.nodeSelector[${j}].key: not a valid label key`, `${at}.nodeSelector`);
      if (!LABEL_VALUE.test(term.value)) throw badInput(`${at}.nodeSelector[${j}].value: not a valid label value`, `${at}.nodeSelector`);
      return { key: term.key, value: term.value };
    });
    const key = `${input.clusterId ?? '*'}/${input.namespace}`;
    if (seen.has(key)) throw badInput(`${at}: namespace ${input.namespace} is assigned twice on the same cluster`, at);
    seen.add(key);
    return { clusterId: input.clusterId ?? null, namespace: input.namespace, kueueQueueName: input.kueueQueueName ?? null, nodeSelector };
  });
}

const SUFFIX_LENGTH = 8;

/**
 * The namespace a project gets when created without assignments: its title as a DNS label, then a
 * suffix derived from the project id (`acme-research-k3x9q0ab`), so that two projects with the same
 * title, in any organizations, never get the same namespace; still one label of at most 63 characters.
 */
export function defaultNamespace(title: string, projectId: string): string {
  const slug =
    title
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63 - 1 - SUFFIX_LENGTH)
      .replace(/-+$/g, '') || 'project';
  const digest = createHash('sha256').update(projectId).digest();
  const suffix = digest.readBigUInt64BE(0).toString(36).padStart(SUFFIX_LENGTH, '0').slice(-SUFFIX_LENGTH);
  return `${slug}-${suffix}`;
}
