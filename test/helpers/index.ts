/** End-to-end test harness: tools, ports, Envoy config rendering and the full stack. */
export { REPO_ROOT, repoPath, toolPath } from './paths.js';
export { freePort } from './ports.js';
export { loadEnvoyConfig, renderEnvoyConfig, type EnvoyPorts } from './envoyConfig.js';
export { startStack, type Stack, type StackOptions } from './stack.js';
