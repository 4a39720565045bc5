// One call for tests: a control plane plus a node agent with one node per site.
import * as path from 'node:path';
import { ControlPlane, ControlPlaneOptions } from './control-plane';
import { NodeAgent, NodeAgentOptions } from './node-agent';
import { aliveGroups } from './leak-check';
import { ImageCommands } from './pod-spec';

/** Image of the storage node as the operator deploys it. */
export const storageNodeImage = 'archipel/storage-node';

/**
 * The project's images as local commands: `archipel/storage-node` runs the compiled CLI of the same
 * build output as this file (dist/ or .build/NAME/), with `archipel` as its executable name.
 */
export function archipelImages(outDir = path.resolve(__dirname, '..', '..')): ImageCommands {
  const cli = [process.execPath, path.join(outDir, 'cli', 'archipel.js')];
  return { [storageNodeImage]: { entrypoint: cli, executables: { archipel: cli } } };
}

export interface KubeClusterOptions extends Omit<NodeAgentOptions, 'client'> {
  controlPlane?: ControlPlaneOptions;
}

export interface KubeCluster {
  controlPlane: ControlPlane;
  agent: NodeAgent;
  /** Stops the agent then the control plane; idempotent; throws if a process survived. */
  stop(): Promise<void>;
}

export async function startKubeCluster(options: KubeClusterOptions): Promise<KubeCluster> {
  const { controlPlane: cpOptions, ...agentOptions } = options;
  const controlPlane = await ControlPlane.start(cpOptions);
  let agent: NodeAgent;
  try {
    const url = new URL(controlPlane.server);
    agent = await NodeAgent.start({
      apiServer: { host: url.hostname, port: Number(url.port) },
      ...agentOptions,
      client: controlPlane.client,
    });
  } catch (err) {
    await controlPlane.stop();
    throw err;
  }
  const pgids = new Set<number>();
  const remember = (): void => {
    for (const pid of controlPlane.pids()) pgids.add(pid);
    for (const pod of agent.runningPods()) for (const pid of pod.pids) pgids.add(pid);
  };
  let stopping: Promise<void> | undefined;
  return {
    controlPlane,
    agent,
    stop(): Promise<void> {
      stopping ??= (async () => {
        remember();
        try {
          await agent.stop();
        } finally {
          await controlPlane.stop();
        }
        const left = aliveGroups([...pgids]);
        if (left.length > 0) throw new Error(`processes left after teardown: ${left.join(', ')}`);
      })();
      return stopping;
    },
  };
}
