/** End-to-end test harness: tools, ports, Envoy config rendering, TLS material and the full stack. */
export { REPO_ROOT, repoPath, toolPath } from './paths.js';
export { freePort } from './ports.js';
export { loadEnvoyConfig, pointCluster, renderEnvoyConfig, spreadOverReplicas, type EnvoyPorts, type ListenerTls, type PortcullisChannel, type RenderOptions } from './envoyConfig.js';
export { startStack, type Stack, type StackOptions } from './stack.js';
export { generateTlsMaterial, generateUpstreamTls, REPORTER_SPIFFE_ID, STRANGER_SPIFFE_ID, type CertFiles, type TlsMaterial, type UpstreamTlsMaterial } from './tls.js';
export { documentedUpstreamTls, upstreamTlsSocket } from './upstreamTls.js';
export { readAuditFile } from './audit.js';
export { send, type Reply, type SendOptions } from './http.js';
