// Pure mapping of a pod's container spec onto a local process: executable, arguments, env.
import * as path from 'node:path';
import { KubeObject } from './kube-client';

/** How an image runs locally: its ENTRYPOINT and CMD, and executables a `command` may name. */
export interface ImageCommand {
  /** Image ENTRYPOINT as a local command line, e.g. [process.execPath, '/repo/dist/cli/archipel.js']. */
  entrypoint: string[];
  /** Image CMD (default arguments); used only when the container sets neither command nor args. */
  cmd?: string[];
  /** Local command lines for executables a container `command[0]` names (full path or base name). */
  executables?: Record<string, string[]>;
}

/** image name (with or without tag) → local command; a plain array is the entrypoint. */
export type ImageCommands = Record<string, string[] | ImageCommand>;

export type Container = any;

/** Strips tag and digest: "reg:5000/archipel/storage-node:1.2@sha256:…" → "reg:5000/archipel/storage-node". */
export function imageName(image: string): string {
  const noDigest = image.split('@')[0];
  const lastSlash = noDigest.lastIndexOf('/');
  const lastColon = noDigest.lastIndexOf(':');
  return lastColon > lastSlash ? noDigest.slice(0, lastColon) : noDigest;
}

export function lookupImage(images: ImageCommands, image: string): ImageCommand | undefined {
  const found = images[image] ?? images[imageName(image)];
  if (!found) return undefined;
  return Array.isArray(found) ? { entrypoint: found } : found;
}

/**
 * Expands $(VAR) references like the kubelet: unknown references stay as written, $$ escapes.
 */
export function expandVars(text: string, vars: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '$' && text[i + 1] === '$') {
      out += '$';
      i++;
      continue;
    }
    if (c === '$' && text[i + 1] === '(') {
      const end = text.indexOf(')', i + 2);
      if (end > 0) {
        const name = text.slice(i + 2, end);
        if (Object.prototype.hasOwnProperty.call(vars, name)) {
          out += vars[name];
          i = end;
          continue;
        }
      }
    }
    out += c;
  }
  return out;
}

/**
 * Kubernetes command semantics: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces
 * CMD. Returns [executable, ...args] for spawning, or an error message for the pod status.
 */
export function resolveCommandLine(
  container: Container,
  images: ImageCommands,
  env: Record<string, string>,
): { argv: string[] } | { error: string } {
  const image = lookupImage(images, container.image ?? '');
  const command: string[] = (container.command ?? []).map((s: string) => expandVars(s, env));
  const args: string[] = (container.args ?? []).map((s: string) => expandVars(s, env));
  if (command.length > 0) {
    const exe = command[0];
    const mapped = image?.executables?.[exe] ?? image?.executables?.[path.posix.basename(exe)];
    if (mapped) return { argv: [...mapped, ...command.slice(1), ...args] };
    // Unmapped: a local absolute path or a PATH name (e.g. "sh") runs as is.
    return { argv: [...command, ...args] };
  }
  if (!image) return { error: `no local command for image ${container.image} (imageCommands)` };
  if (image.entrypoint.length === 0) return { error: `image ${container.image} has an empty entrypoint` };
  // An empty args list is the same as none (the API drops empty lists).
  return { argv: [...image.entrypoint, ...(args.length > 0 ? args : (image.cmd ?? []))] };
}

/** Value of a downward-API fieldRef, or undefined if the field is not supported. */
export function fieldRefValue(pod: KubeObject, fieldPath: string): string | undefined {
  const meta = pod.metadata;
  const keyed = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (keyed) {
    const map = (keyed[1] === 'labels' ? meta.labels : meta.annotations) ?? {};
    return map[keyed[2]] ?? '';
  }
  switch (fieldPath) {
    case 'metadata.name':
      return meta.name;
    case 'metadata.namespace':
      return meta.namespace ?? 'default';
    case 'metadata.uid':
      return meta.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.hostIP':
      return pod.status?.hostIP ?? '';
    case 'status.hostIPs':
      return (pod.status?.hostIPs ?? []).map((x: { ip: string }) => x.ip).join(',');
    case 'status.podIP':
      return pod.status?.podIP ?? '';
    case 'status.podIPs':
      return (pod.status?.podIPs ?? []).map((x: { ip: string }) => x.ip).join(',');
    default:
      return undefined;
  }
}

/** Sources for env resolution: ConfigMaps and Secrets of the pod's namespace by name. */
export interface EnvSources {
  configMap(name: string): Record<string, string> | undefined;
  /** Secret data, already base64-decoded. */
  secret(name: string): Record<string, string> | undefined;
}

/**
 * Resolves a container's envFrom and env (in that order, later wins, $(VAR) expands against
 * earlier entries) like the kubelet. Missing non-optional references give an error.
 */
export function resolveEnv(
  pod: KubeObject,
  container: Container,
  sources: EnvSources,
): { env: Record<string, string> } | { error: string } {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const prefix: string = from.prefix ?? '';
    const ref = from.configMapRef ?? from.secretRef;
    if (!ref) continue;
    const data = from.configMapRef ? sources.configMap(ref.name) : sources.secret(ref.name);
    if (!data) {
      if (ref.optional) continue;
      return { error: `${from.configMapRef ? 'configmap' : 'secret'} "${ref.name}" not found` };
    }
    for (const [k, v] of Object.entries(data)) env[prefix + k] = v;
  }
  for (const item of container.env ?? []) {
    const name: string = item.name;
    if (item.valueFrom === undefined) {
      env[name] = expandVars(item.value ?? '', env);
      continue;
    }
    const vf = item.valueFrom;
    if (vf.fieldRef) {
      const value = fieldRefValue(pod, vf.fieldRef.fieldPath);
      if (value === undefined) return { error: `unsupported fieldRef ${vf.fieldRef.fieldPath}` };
      env[name] = value;
    } else if (vf.secretKeyRef || vf.configMapKeyRef) {
      const ref = vf.secretKeyRef ?? vf.configMapKeyRef;
      const kind = vf.secretKeyRef ? 'secret' : 'configmap';
      const data = vf.secretKeyRef ? sources.secret(ref.name) : sources.configMap(ref.name);
      const value = data?.[ref.key];
      if (value === undefined) {
        if (ref.optional) continue;
        return { error: data ? `key "${ref.key}" not found in ${kind} "${ref.name}"` : `${kind} "${ref.name}" not found` };
      }
      env[name] = value;
    } else if (vf.resourceFieldRef) {
      // No cgroups here: report the declared limit (or request), "0" if none.
      const res: string = vf.resourceFieldRef.resource;
      const [kind, key] = res.split('.');
      env[name] = String(container.resources?.[kind === 'limits' ? 'limits' : 'requests']?.[key] ?? '0');
    } else {
      return { error: `unsupported valueFrom for env ${name}` };
    }
  }
  return { env };
}

/**
 * Rewrites container paths under a volume mount to the local folder backing it, for each
 * argument and env value (a process cannot see the container's filesystem layout).
 * Longest mount path wins.
 */
export function mapMountPaths(value: string, mounts: Array<{ mountPath: string; hostPath: string }>): string {
  const sorted = [...mounts].sort((a, b) => b.mountPath.length - a.mountPath.length);
  for (const m of sorted) {
    const mp = m.mountPath.replace(/\/+$/, '');
    if (value === mp) return m.hostPath;
    if (value.startsWith(mp + '/')) return m.hostPath + value.slice(mp.length);
    // --flag=/path forms
    const eq = value.indexOf('=');
    if (eq > 0) {
      const rest = value.slice(eq + 1);
      if (rest === mp || rest.startsWith(mp + '/')) return value.slice(0, eq + 1) + m.hostPath + rest.slice(mp.length);
    }
  }
  return value;
}
