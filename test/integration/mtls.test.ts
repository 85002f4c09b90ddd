// TLS and client-certificate callers on the grpc-js port. Every key and
// certificate is made here with the openssl CLI in a temp dir and deleted after.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpcJs from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import {
  CreateSessionRequestSchema, CreateSessionResponseSchema, LogoutRequestSchema, LogoutResponseSchema, LogoutScope, RevocationReason,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { grpcJsCall, startTestAuthority, uniqueUser, type TestAuthority } from '../support/authority.js';
import { watchWithGrpcJs } from '../support/watch.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl) console.warn('mtls.test.ts skipped: the openssl CLI is not installed');

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

class TestPki {
  constructor(readonly dir: string) {}

  path = (file: string) => join(this.dir, file);
  read = (file: string) => readFileSync(this.path(file));

  private openssl(args: string[]) {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }

  ca(name: string) {
    this.openssl([
      'req', '-x509', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  }

  /** A leaf certificate `name.crt` / `name.key` issued by `ca`. */
  leaf(name: string, ca: string, cn: string, extensions: string[]) {
    this.openssl(['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
    writeFileSync(this.path(`${name}.ext`), [...extensions, 'basicConstraints=CA:FALSE'].join('\n'));
    this.openssl([
      'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
      '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`,
    ]);
  }
}

const CLIENT = 'extendedKeyUsage=clientAuth';

describe.skipIf(!hasOpenssl)('mutual TLS on the gRPC port', () => {
  let pki: TestPki;
  let t: TestAuthority;
  const clients: grpcJs.Client[] = [];

  beforeAll(async () => {
    pki = new TestPki(mkdtempSync(join(tmpdir(), 'sa-mtls-')));
    pki.ca('ca');
    pki.ca('other-ca');
    pki.leaf('server', 'ca', 'localhost', ['subjectAltName=DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage=serverAuth']);
    pki.leaf('login', 'ca', 'login-service', ['subjectAltName=URI:spiffe://test/login-service', CLIENT]);
    pki.leaf('reader', 'ca', 'reader-service', [CLIENT]);
    pki.leaf('stranger', 'ca', 'stranger', [CLIENT]);
    pki.leaf('both', 'ca', 'reader-service', ['subjectAltName=URI:spiffe://test/login-service', CLIENT]);
    // Names the mapped identities, but from a CA the authority does not trust.
    pki.leaf('impostor', 'other-ca', 'reader-service', ['subjectAltName=URI:spiffe://test/login-service', CLIENT]);

    t = await startTestAuthority({
      env: {
        SA_TLS_CERT_FILE: pki.path('server.crt'),
        SA_TLS_KEY_FILE: pki.path('server.key'),
        SA_TLS_CLIENT_CA_FILE: pki.path('ca.crt'),
        SA_MTLS_IDENTITIES: JSON.stringify([
          { subject: 'URI:spiffe://test/login-service', name: 'login-cert', scopes: ['sessions:create'] },
          { subject: 'CN=reader-service', name: 'reader-cert', scopes: ['sessions:read'] },
        ]),
      },
    });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await t?.stop();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  /** A grpc-js client trusting the test CA, presenting `cert` if given. */
  function client(cert?: string) {
    const credentials = cert
      ? grpcJs.credentials.createSsl(pki.read('ca.crt'), pki.read(`${cert}.key`), pki.read(`${cert}.crt`))
      : grpcJs.credentials.createSsl(pki.read('ca.crt'));
    // Dial the IP, check the certificate's DNS name: Node warns about an IP as TLS server name.
    const c = new grpcJs.Client(`127.0.0.1:${t.authority.grpcPort}`, credentials, { 'grpc.ssl_target_name_override': 'localhost' });
    clients.push(c);
    return c;
  }

  function createSession(c: grpcJs.Client, metadata = new grpcJs.Metadata()) {
    return grpcJsCall(c, 'CreateSession', CreateSessionRequestSchema, CreateSessionResponseSchema, { userId: uniqueUser('mtls') }, metadata);
  }

  const withAuthorization = (value: string) => {
    const m = new grpcJs.Metadata();
    m.set('authorization', value);
    return m;
  };

  function expectStatus(result: { error?: grpcJs.ServiceError }, code: grpcJs.status) {
    expect(result.error, 'the call should have failed').toBeDefined();
    expect({ code: grpcJs.status[result.error!.code], details: result.error!.details }).toMatchObject({ code: grpcJs.status[code] });
  }

  it('(a) a certificate mapped to sessions:create creates a session without an API key', async () => {
    const result = await createSession(client('login'));
    expect(result.error).toBeUndefined();
    expect(result.response!.sessionId).not.toBe('');
    expect(result.response!.tokens!.accessToken).not.toBe('');
  });

  it('(b) a certificate mapped to other scopes is PERMISSION_DENIED', async () => {
    const result = await createSession(client('reader'));
    expectStatus(result, grpcJs.status.PERMISSION_DENIED);
    expect(result.error!.details).toContain('client certificate "reader-cert" lacks scope sessions:create');
  });

  it('(c) a CA-valid certificate no identity lists, without an API key, is UNAUTHENTICATED', async () => {
    expectStatus(await createSession(client('stranger')), grpcJs.status.UNAUTHENTICATED);
  });

  it('a certificate matching two identities is refused rather than guessed', async () => {
    const result = await createSession(client('both'));
    expectStatus(result, grpcJs.status.UNAUTHENTICATED);
    expect(result.error!.details).toContain('several identities');
  });

  // Client certificates are optional, so Node completes the handshake and
  // grpc-js hides the unverified certificate: the call is judged as if none was
  // presented, and its mapped-looking names grant nothing.
  it('(d) a certificate from another CA identifies nobody', async () => {
    const impostor = client('impostor');
    const result = await createSession(impostor);
    expectStatus(result, grpcJs.status.UNAUTHENTICATED);
    expect(result.error!.details).toContain('needs a service API key or client certificate');
    const withKey = await createSession(impostor, withAuthorization(`ApiKey ${t.keys.reader}`));
    expectStatus(withKey, grpcJs.status.PERMISSION_DENIED);
    expect(withKey.error!.details).toContain('API key "reader"');
  });

  it('(e) an API key over TLS works without a client certificate', async () => {
    const result = await createSession(client(), withAuthorization(`ApiKey ${t.keys.login}`));
    expect(result.error).toBeUndefined();
    expect(result.response!.sessionId).not.toBe('');
    expectStatus(await createSession(client()), grpcJs.status.UNAUTHENTICATED);
  });

  it('an authorization header wins over a mapped certificate, and a bad one is not rescued by it', async () => {
    const login = client('login');
    const narrower = await createSession(login, withAuthorization(`ApiKey ${t.keys.reader}`));
    expectStatus(narrower, grpcJs.status.PERMISSION_DENIED);
    expect(narrower.error!.details).toContain('API key "reader"');
    expectStatus(await createSession(login, withAuthorization('ApiKey not-a-key')), grpcJs.status.UNAUTHENTICATED);

    // A user's own token still makes the call a user's call.
    const created = await createSession(login);
    const logout = await grpcJsCall(
      login, 'Logout', LogoutRequestSchema, LogoutResponseSchema, { scope: LogoutScope.CURRENT },
      withAuthorization(`Bearer ${created.response!.tokens!.accessToken}`),
    );
    expect(logout.error).toBeUndefined();
    expect(logout.response!.sessionsEnded).toBe(1);
  });

  it('(f) a plaintext client cannot call the TLS port', async () => {
    const plain = new grpcJs.Client(`127.0.0.1:${t.authority.grpcPort}`, grpcJs.credentials.createInsecure());
    clients.push(plain);
    expectStatus(await createSession(plain, withAuthorization(`ApiKey ${t.keys.login}`)), grpcJs.status.UNAVAILABLE);
  });

  it('WatchSession streams over TLS (grpc-js server): started, then ended when the session is logged out', async () => {
    const created = await createSession(client('login'));
    const access = created.response!.tokens!.accessToken;
    const w = watchWithGrpcJs(client(), access);
    expect((await w.next('started')).value.sessionId).toBe(created.response!.sessionId);
    const out = await grpcJsCall(client(), 'Logout', LogoutRequestSchema, LogoutResponseSchema, { scope: LogoutScope.CURRENT }, withAuthorization(`Bearer ${access}`));
    expect(out.response?.sessionsEnded).toBe(1);
    expect((await w.next('ended', 1000)).value).toMatchObject({ sessionId: created.response!.sessionId, reason: RevocationReason.USER_REQUEST });
    expect(await w.closed).toBeUndefined();

    const refused = (await watchWithGrpcJs(client(), 'bad').closed) as grpcJs.ServiceError;
    expect(refused.code).toBe(grpcJs.status.UNAUTHENTICATED);
    expect(refused.metadata.get('sa-error-code')).toEqual(['unauthenticated']);
  });

  describe('configuration', () => {
    const keyOf = (env: Record<string, string>): string => {
      try {
        loadConfig(env);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).key;
      }
      throw new Error('loadConfig should have failed');
    };
    const tls = () => ({ SA_TLS_CERT_FILE: pki.path('server.crt'), SA_TLS_KEY_FILE: pki.path('server.key') });
    const identities = JSON.stringify([{ subject: 'CN=reader-service', name: 'reader', scopes: ['sessions:read'] }]);

    it('needs the certificate and the key together', () => {
      expect(keyOf({ SA_TLS_CERT_FILE: pki.path('server.crt') })).toBe('SA_TLS_KEY_FILE');
      expect(keyOf({ SA_TLS_KEY_FILE: pki.path('server.key') })).toBe('SA_TLS_CERT_FILE');
    });

    it('names the key of a missing, unparsable or mismatched file', () => {
      expect(keyOf({ ...tls(), SA_TLS_CERT_FILE: pki.path('absent.crt') })).toBe('SA_TLS_CERT_FILE');
      expect(keyOf({ ...tls(), SA_TLS_KEY_FILE: pki.path('absent.key') })).toBe('SA_TLS_KEY_FILE');
      expect(keyOf({ ...tls(), SA_TLS_CLIENT_CA_FILE: pki.path('absent.crt') })).toBe('SA_TLS_CLIENT_CA_FILE');
      expect(keyOf({ ...tls(), SA_TLS_CLIENT_CA_FILE: pki.path('server.ext') })).toBe('SA_TLS_CLIENT_CA_FILE');
      expect(keyOf({ ...tls(), SA_TLS_KEY_FILE: pki.path('login.key') })).toBe('SA_TLS_KEY_FILE');
    });

    it('refuses a client CA without TLS and identities without a client CA', () => {
      expect(keyOf({ SA_TLS_CLIENT_CA_FILE: pki.path('ca.crt') })).toBe('SA_TLS_CLIENT_CA_FILE');
      expect(keyOf({ ...tls(), SA_MTLS_IDENTITIES: identities })).toBe('SA_MTLS_IDENTITIES');
    });

    it('checks SA_MTLS_IDENTITIES entries', () => {
      const withCa = { ...tls(), SA_TLS_CLIENT_CA_FILE: pki.path('ca.crt') };
      const entry = (e: object) => JSON.stringify([e]);
      expect(keyOf({ ...withCa, SA_MTLS_IDENTITIES: 'nope' })).toBe('SA_MTLS_IDENTITIES');
      expect(keyOf({ ...withCa, SA_MTLS_IDENTITIES: entry({ subject: 'reader-service', name: 'r', scopes: [] }) })).toBe('SA_MTLS_IDENTITIES[0]');
      expect(keyOf({ ...withCa, SA_MTLS_IDENTITIES: entry({ subject: 'CN=r', name: 'r', scopes: ['sessions:all'] }) })).toBe('SA_MTLS_IDENTITIES[0]');
      const config = loadConfig({ ...withCa, SA_MTLS_IDENTITIES: identities });
      expect(config.tls?.clientCa).toBeInstanceOf(Buffer);
      expect(config.mtlsIdentities).toEqual([{ subject: 'CN=reader-service', name: 'reader', scopes: ['sessions:read'] }]);
    });

    it('leaves the port plaintext by default', () => {
      expect(loadConfig({}).tls).toBeUndefined();
    });
  });
});
