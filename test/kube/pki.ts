// Certificates and keys of the test cluster, made with the openssl CLI (Node cannot issue X.509).
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ClusterPki {
  caCertPath: string;
  caKeyPath: string;
  caPem: string;
  servingCertPath: string;
  servingKeyPath: string;
  /** Service-account token signing key pair (RSA, PEM). */
  serviceAccountKeyPath: string;
  serviceAccountPubPath: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
}

/**
 * Creates a CA, a serving certificate for 127.0.0.1/localhost signed by it, and the
 * service-account key pair, all in `dir`. Keys are EC P-256 where Kubernetes accepts it (fast).
 */
export function createClusterPki(dir: string): ClusterPki {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = (name: string): string => path.join(dir, name);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  openssl(
    ['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-subj', '/CN=archipel-test-ca', '-out', 'ca.crt'],
    dir,
  );
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'serving.key'], dir);
  openssl(['req', '-new', '-key', 'serving.key', '-subj', '/CN=kube-apiserver', '-out', 'serving.csr'], dir);
  fs.writeFileSync(
    p('serving.ext'),
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      // kubernetes.default.svc names let in-cluster style clients verify too.
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc',
      '',
    ].join('\n'),
  );
  openssl(
    ['x509', '-req', '-in', 'serving.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
      '-sha256', '-extfile', 'serving.ext', '-out', 'serving.crt'],
    dir,
  );
  // The token controller and apiserver accept RSA or EC keys; RSA keeps to the documented default.
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  fs.writeFileSync(p('sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  fs.writeFileSync(p('sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  return {
    caCertPath: p('ca.crt'),
    caKeyPath: p('ca.key'),
    caPem: fs.readFileSync(p('ca.crt'), 'utf8'),
    servingCertPath: p('serving.crt'),
    servingKeyPath: p('serving.key'),
    serviceAccountKeyPath: p('sa.key'),
    serviceAccountPubPath: p('sa.pub'),
  };
}

/** A random bearer token (static token file entries). */
export function randomToken(): string {
  return crypto.randomBytes(24).toString('hex');
}
