/** The agent's Kubernetes pieces that do not depend on the tunnel: manifests, cluster status, API proxy. */
export {
  DEVICE_PLUGIN_CONFIG_KEY,
  deviceConfigMap,
  type DeviceConfigMapOptions,
  InvalidManifestError,
  MANAGED_BY_LABELS,
  type ManifestProblem,
  VALIDATED_KINDS,
  validateManifest,
} from './manifests.js';
export { type ClusterNodeStatus, type ClusterStatusReport, collectClusterStatus, GPU_RESOURCE, gpusOfPod, parseQuantity } from './clusterStatus.js';
export { createKubeApiProxy, type KubeApiProxy, UPGRADE_HEADER, UPGRADE_HEADERS_HEADER, UPGRADE_METHOD_HEADER, UPGRADE_RESPONSE_HEADER } from './apiProxy.js';
export { createKubernetesRuntimeHost } from './runtimes.js';
