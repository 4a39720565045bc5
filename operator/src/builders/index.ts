/**
 * Desired Kubernetes objects of the operator, built by pure functions of the custom resources
 * (and of the secret values the caller keeps): no I/O, same input → deep-equal output.
 */
export * from './common';
export * from './node-config';
export * from './resources';
export * from './statefulset';
export * from './services';
export * from './disruption-budget';
export * from './secrets';
export * from './grid';
