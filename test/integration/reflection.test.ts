// gRPC server reflection (grpc.reflection.v1 and v1alpha) and grpc.health.v1 on
// the gRPC ports a standard tool would point at: the authority's plaintext
// port (bare node:http2), its TLS port (grpc-js) and a sidecar's. A plain
// @grpc/grpc-js client plays grpcurl: it lists the services, fetches the
// descriptors and then calls an RPC built only from what reflection returned.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create, createFileRegistry, fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import type { FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import * as grpcJs from '@grpc/grpc-js';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from '../../src/gen/grpc/health/v1/health_pb.js';
import { SessionAuthorityService } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { startTestAuthority, type TestAuthority } from '../support/authority.js';
import { startNats, type NatsProcess } from '../support/nats-server.js';
import { filesOf, openReflection, type ReflectionVersion } from '../support/reflection.js';
import { servingStatus, startInProcessSidecar, until, type Sidecar } from '../support/sidecars.js';

const SERVICES = [
  'sessionauthority.v1.SessionAuthorityService',
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
];
const AUTHORITY_FILE = 'sessionauthority/v1/authority.proto';

/** Health Check with a plain grpc-js client: the status name, or the error's code name. */
function healthCheck(address: string, service: string, credentials = grpcJs.credentials.createInsecure(), options: grpcJs.ClientOptions = {}): Promise<string> {
  const client = new grpcJs.Client(address, credentials, options);
  return new Promise<string>((resolve) => {
    client.makeUnaryRequest(
      `/${Health.typeName}/Check`,
      (m: { service: string }) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, m))),
      (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
      { service }, new grpcJs.Metadata(), { deadline: Date.now() + 5000 },
      (error, response) => resolve(error ? `error:${grpcJs.status[error.code]}` : HealthCheckResponse_ServingStatus[response!.status]!),
    );
  }).finally(() => client.close());
}

/**
 * What every reflecting gRPC port must do, for each protocol version: list the
 * services, answer several lookups on one stream in order, send a file with its
 * imports, and answer unknown names with NOT_FOUND while the stream stays open.
 */
function reflectionSuite(target: () => { address: string; credentials?: grpcJs.ChannelCredentials; options?: grpcJs.ClientOptions }) {
  const open = (version: ReflectionVersion) => {
    const t = target();
    return openReflection(t.address, version, t.credentials, t.options);
  };

  for (const version of ['v1', 'v1alpha'] as const) {
    it(`${version}: lists the services, then answers several lookups on one stream`, async () => {
      const stream = open(version);
      try {
        const listed = await stream.ask({ host: 'reflection-test', messageRequest: { case: 'listServices', value: '*' } });
        expect(listed.validHost).toBe('reflection-test');
        expect(listed.originalRequest?.messageRequest).toEqual({ case: 'listServices', value: '*' });
        expect(listed.messageResponse.case).toBe('listServicesResponse');
        const names = listed.messageResponse.case === 'listServicesResponse' ? listed.messageResponse.value.service.map((s) => s.name) : [];
        expect(names.sort()).toEqual([...SERVICES].sort());

        // The service's file, with its imports (google/protobuf/timestamp.proto, …) along.
        const byService = filesOf(await stream.ask({ messageRequest: { case: 'fileContainingSymbol', value: SessionAuthorityService.typeName } }));
        const authorityFile = byService[0]!;
        expect(authorityFile.name).toBe(AUTHORITY_FILE);
        expect(authorityFile.package).toBe('sessionauthority.v1');
        expect(authorityFile.dependency).toContain('google/protobuf/timestamp.proto');
        // Every import comes along (authority.proto imports only well-known types, which import nothing).
        expect(byService.map((f) => f.name).sort()).toEqual([AUTHORITY_FILE, ...authorityFile.dependency].sort());
        const service = authorityFile.service.find((s) => s.name === 'SessionAuthorityService')!;
        expect(service.method.map((m) => m.name)).toEqual(SessionAuthorityService.methods.map((m) => m.name));
        const refresh = service.method.find((m) => m.name === 'Refresh')!;
        expect(refresh).toMatchObject({ inputType: '.sessionauthority.v1.RefreshRequest', outputType: '.sessionauthority.v1.RefreshResponse' });
        expect(service.method.find((m) => m.name === 'WatchSession')).toMatchObject({ serverStreaming: true, clientStreaming: false });
        // Field names and numbers, as a client needs them to encode a request.
        const createRequest = authorityFile.messageType.find((m) => m.name === 'CreateSessionRequest')!;
        expect(createRequest.field.find((f) => f.name === 'user_id')).toMatchObject({ number: 1, jsonName: 'userId' });

        // A method, a message and an enum value resolve to the same file.
        for (const symbol of [
          'sessionauthority.v1.SessionAuthorityService.ValidateToken',
          'sessionauthority.v1.ValidateTokenResponse',
          'sessionauthority.v1.LogoutRequest.scope',
        ]) {
          expect(filesOf(await stream.ask({ messageRequest: { case: 'fileContainingSymbol', value: symbol } }))[0]!.name, symbol).toBe(AUTHORITY_FILE);
        }

        // An unknown symbol: an error response with NOT_FOUND, and the stream goes on.
        const unknown = await stream.ask({ messageRequest: { case: 'fileContainingSymbol', value: 'sessionauthority.v1.NoSuchThing' } });
        expect(unknown.messageResponse).toEqual({
          case: 'errorResponse',
          value: expect.objectContaining({ errorCode: Code.NotFound, errorMessage: 'symbol "sessionauthority.v1.NoSuchThing" not found' }),
        });
        const missingFile = await stream.ask({ messageRequest: { case: 'fileByFilename', value: 'no/such/file.proto' } });
        expect(missingFile.messageResponse.case === 'errorResponse' && missingFile.messageResponse.value.errorCode).toBe(Code.NotFound);

        // A file by name, here one the services only import.
        const timestamp = filesOf(await stream.ask({ messageRequest: { case: 'fileByFilename', value: 'google/protobuf/timestamp.proto' } }));
        expect(timestamp.map((f) => f.name)).toEqual(['google/protobuf/timestamp.proto']);
        expect(timestamp[0]!.messageType.map((m) => m.name)).toEqual(['Timestamp']);

        // The health and reflection services describe themselves too.
        const health = filesOf(await stream.ask({ messageRequest: { case: 'fileContainingSymbol', value: 'grpc.health.v1.Health' } }));
        expect(health[0]!.service[0]!.method.map((m) => m.name)).toEqual(['Check', 'Watch']);
        const reflection = filesOf(await stream.ask({ messageRequest: { case: 'fileContainingSymbol', value: `grpc.reflection.${version}.ServerReflection` } }));
        expect(reflection[0]!.name).toBe(`grpc/reflection/${version}/reflection.proto`);
        expect(reflection[0]!.service[0]!.method[0]).toMatchObject({ name: 'ServerReflectionInfo', clientStreaming: true, serverStreaming: true });

        // No extensions here: known type, empty list; unknown type, NOT_FOUND; no request at all, INVALID_ARGUMENT.
        const numbers = await stream.ask({ messageRequest: { case: 'allExtensionNumbersOfType', value: 'sessionauthority.v1.RefreshRequest' } });
        expect(numbers.messageResponse).toEqual({
          case: 'allExtensionNumbersResponse', value: expect.objectContaining({ baseTypeName: 'sessionauthority.v1.RefreshRequest', extensionNumber: [] }),
        });
        const extension = await stream.ask({ messageRequest: { case: 'fileContainingExtension', value: { containingType: 'sessionauthority.v1.RefreshRequest', extensionNumber: 100 } } });
        expect(extension.messageResponse.case === 'errorResponse' && extension.messageResponse.value.errorCode).toBe(Code.NotFound);
        const empty = await stream.ask({});
        expect(empty.messageResponse.case === 'errorResponse' && empty.messageResponse.value.errorCode).toBe(Code.InvalidArgument);

        // Half-closing ends the call with OK.
        expect((await stream.end()).code).toBe(grpcJs.status.OK);
      } finally {
        stream.close();
      }
    });
  }

  it('an RPC built only from the reflected descriptors works (what grpcurl does)', async () => {
    const stream = open('v1');
    let files: FileDescriptorProto[];
    try {
      files = filesOf(await stream.ask({ messageRequest: { case: 'fileContainingSymbol', value: SessionAuthorityService.typeName } }));
    } finally {
      stream.close();
    }
    // Resolve imports by name from the same answer, as a client does: the order of the files is not a contract.
    const byName = new Map(files.map((f) => [f.name, f]));
    const registry = createFileRegistry(files[0]!, (name) => byName.get(name));
    const service = registry.getService(SessionAuthorityService.typeName)!;
    const method = service.methods.find((m) => m.name === 'ValidateToken')!;
    const t = target();
    const client = new grpcJs.Client(t.address, t.credentials ?? grpcJs.credentials.createInsecure(), t.options);
    try {
      const response = await new Promise<Record<string, unknown>>((resolve, reject) => {
        client.makeUnaryRequest(
          `/${service.typeName}/${method.name}`,
          (m: Record<string, unknown>) => Buffer.from(toBinary(method.input as DescMessage, create(method.input as DescMessage, m))),
          (b: Buffer) => fromBinary(method.output as DescMessage, b) as unknown as Record<string, unknown>,
          { accessToken: 'not-a-jwt' } as Record<string, unknown>, new grpcJs.Metadata(), { deadline: Date.now() + 5000 },
          (error, res) => (error ? reject(error) : resolve(res!)),
        );
      });
      const reasons = registry.getEnum('sessionauthority.v1.TokenInvalidReason')!;
      expect(response.valid).toBe(false);
      expect(reasons.value[response.reason as number]?.name).toBe('TOKEN_INVALID_REASON_MALFORMED');
    } finally {
      client.close();
    }
  });
}

describe('the authority on its plaintext gRPC port (node:http2)', () => {
  let t: TestAuthority;
  beforeAll(async () => {
    t = await startTestAuthority();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('serves grpc.health.v1: SERVING for the server and its service, NOT_FOUND for others, NOT_SERVING once stopping', async () => {
    expect(await healthCheck(t.grpcAddress, '')).toBe('SERVING');
    expect(await healthCheck(t.grpcAddress, SessionAuthorityService.typeName)).toBe('SERVING');
    expect(await healthCheck(t.grpcAddress, 'no.such.Service')).toBe('error:NOT_FOUND');
    // Over Connect on the HTTP port too.
    const res = await fetch(`${t.httpUrl}/grpc.health.v1.Health/Check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(await res.json()).toEqual({ status: 'SERVING' });
    t.authority.health.setAll(false); // what stop() does first
    expect(await healthCheck(t.grpcAddress, '')).toBe('NOT_SERVING');
    t.authority.health.setAll(true);
  });

  reflectionSuite(() => ({ address: t.grpcAddress }));
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!hasOpenssl) console.warn('reflection over TLS skipped: the openssl CLI is not installed');

describe.skipIf(!hasOpenssl)('the authority on its TLS gRPC port (grpc-js)', () => {
  let t: TestAuthority;
  let dir: string;
  let credentials: grpcJs.ChannelCredentials;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sa-reflection-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.crt',
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ], { cwd: dir, stdio: 'pipe' });
    t = await startTestAuthority({ env: { SA_TLS_CERT_FILE: join(dir, 'server.crt'), SA_TLS_KEY_FILE: join(dir, 'server.key') } });
    credentials = grpcJs.credentials.createSsl(readFileSync(join(dir, 'server.crt')));
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves grpc.health.v1', async () => {
    expect(await healthCheck(t.grpcAddress, '', credentials)).toBe('SERVING');
    expect(await healthCheck(t.grpcAddress, 'no.such.Service', credentials)).toBe('error:NOT_FOUND');
  });

  reflectionSuite(() => ({ address: t.grpcAddress, credentials }));
});

describe('a verifier sidecar on its gRPC port', () => {
  let nats: NatsProcess;
  let t: TestAuthority;
  let sidecar: Sidecar;
  beforeAll(async () => {
    nats = await startNats();
    t = await startTestAuthority({ env: { NATS_URL: nats.url } });
    sidecar = await startInProcessSidecar({ name: 'reflection', authorityUrl: t.httpUrl, natsUrl: nats.url });
    await until(async () => (await servingStatus(sidecar)) === 'SERVING', 15_000, 'sidecar SERVING');
  });
  afterAll(async () => {
    await sidecar?.stop();
    await t?.stop();
    await nats?.stop();
  });

  it('serves grpc.health.v1 (its readiness: NOT_SERVING while loading or stale is tested in sidecars and sidecar-feed-loss)', async () => {
    const address = `127.0.0.1:${sidecar.grpcPort}`;
    expect(await healthCheck(address, '')).toBe('SERVING');
    expect(await healthCheck(address, SessionAuthorityService.typeName)).toBe('SERVING');
  });

  reflectionSuite(() => ({ address: `127.0.0.1:${sidecar.grpcPort}` }));
});
