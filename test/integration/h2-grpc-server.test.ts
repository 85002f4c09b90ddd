// The bare node:http2 gRPC server (the sidecar's gRPC port; unary, server and
// bidirectional streams) against real clients: a plain @grpc/grpc-js client, connect-node's gRPC transport, and raw
// node:http2 requests for the protocol edge cases no well-behaved client sends.
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { gzipSync } from 'node:zlib';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpcJs from '@grpc/grpc-js';
import { Code, createClient } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../../src/gen/grpc/health/v1/health_pb.js';
import {
  ServerReflection, ServerReflectionRequestSchema, ServerReflectionResponseSchema, type ServerReflectionRequest,
} from '../../src/gen/grpc/reflection/v1/reflection_pb.js';
import {
  SessionAuthorityService, ValidateTokenRequestSchema, ValidateTokenResponseSchema,
} from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { AuthorityError } from '../../src/shared/errors.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { BidiStreamHandler, UnaryHandler } from '../../src/transport/call-context.js';
import { HealthStatus } from '../../src/transport/health-service.js';
import { percentEncode, startH2GrpcServer, type H2GrpcServer } from '../../src/transport/h2-grpc-server.js';
import { expectRpcError, grpcJsCall, grpcJsRawCall, newGrpcJsClient, sleep, SERVICE_PATH } from '../support/authority.js';
import { until } from '../support/sidecars.js';

const VALIDATE = `${SERVICE_PATH}/ValidateToken`;
const MAX = 64 * 1024;
/** Printable ASCII, "%", non-ASCII and a control character: everything grpc-message encoding must handle. */
const DOMAIN_MESSAGE = 'token rejected: 100% sûre ✓\nsecond line';
const calls = { slowStarted: 0, slowFinished: 0 };

/**
 * ValidateToken by access_token: "slow:<ms>" answers after ms, "domain" throws
 * a domain error, "crash" an unexpected one; anything else is valid, echoing
 * the request id and the x-user header. Every other method is UNIMPLEMENTED.
 */
function testHandlers(): Record<string, UnaryHandler> {
  const handlers: Record<string, UnaryHandler> = {};
  for (const m of SessionAuthorityService.methods) {
    handlers[m.localName] = async () => {
      throw new AuthorityError('unimplemented', 'not here');
    };
  }
  handlers.validateToken = async (req: { accessToken: string }, ctx) => {
    const [kind, arg] = req.accessToken.split(':');
    if (kind === 'slow') {
      calls.slowStarted++;
      await sleep(Number(arg));
      calls.slowFinished++;
    }
    if (kind === 'domain') throw new AuthorityError('unauthenticated', DOMAIN_MESSAGE);
    if (kind === 'crash') throw new Error('a stack trace that must not leave the process');
    return create(ValidateTokenResponseSchema, { valid: true, message: ctx.requestId, principal: { userId: ctx.header('x-user') ?? '' } });
  };
  return handlers;
}

async function startTestServer(): Promise<H2GrpcServer> {
  const health = new HealthStatus([SessionAuthorityService.typeName]);
  health.setAll(true);
  return startH2GrpcServer({
    host: '127.0.0.1',
    port: 0,
    services: [{ service: SessionAuthorityService, handlers: testHandlers() }, { service: Health, handlers: health.handlers() }],
    logger: silentLogger,
    maxMessageBytes: MAX,
  });
}

/** A 5-byte-prefixed gRPC message. */
function frame(message: Uint8Array, flag = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

const validateRequest = (accessToken: string) => toBinary(ValidateTokenRequestSchema, create(ValidateTokenRequestSchema, { accessToken }));

interface RawResponse {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders;
  data: Buffer;
  /** grpc-status and grpc-message, from the trailers or a trailers-only response. */
  grpcStatus?: string;
  grpcMessage?: string;
}

/** One request on a raw HTTP/2 session; body chunks are written as given. */
function rawRequest(session: ClientHttp2Session, o: { path?: string; headers?: OutgoingHttpHeaders; body?: Buffer[] }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': 'POST', ':path': o.path ?? VALIDATE, 'content-type': 'application/grpc', te: 'trailers', ...o.headers,
    });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const data: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => data.push(c));
    stream.on('error', reject);
    stream.on('close', () => {
      const pick = (name: string) => (trailers[name] ?? headers[name]) as string | undefined;
      resolve({ headers, trailers, data: Buffer.concat(data), grpcStatus: pick('grpc-status'), grpcMessage: pick('grpc-message') });
    });
    for (const chunk of o.body ?? []) stream.write(chunk);
    stream.end();
  });
}

describe('h2 gRPC server', () => {
  let server: H2GrpcServer;
  let target: string;
  let grpcJsClient: grpcJs.Client;
  let h2: Http2SessionManager;
  let connectClient: ReturnType<typeof createClient<typeof SessionAuthorityService>>;
  let healthClient: ReturnType<typeof createClient<typeof Health>>;
  let raw: ClientHttp2Session;

  beforeAll(async () => {
    server = await startTestServer();
    target = `127.0.0.1:${server.port}`;
    grpcJsClient = newGrpcJsClient(target);
    h2 = new Http2SessionManager(`http://${target}`);
    const transport = createGrpcTransport({ baseUrl: `http://${target}`, sessionManager: h2 });
    connectClient = createClient(SessionAuthorityService, transport);
    healthClient = createClient(Health, transport);
    raw = connect(`http://${target}`);
    raw.on('error', () => {});
  });
  afterAll(async () => {
    grpcJsClient?.close();
    h2?.abort();
    raw?.close();
    await server?.close();
  });

  const withUser = (user: string) => {
    const m = new grpcJs.Metadata();
    m.set('x-user', user);
    m.set('x-request-id', 'req-42');
    return m;
  };

  it('answers a plain grpc-js client, with request headers reaching the handler', async () => {
    const res = await grpcJsCall(grpcJsClient, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'ok' }, withUser('alice'));
    expect(res.error).toBeUndefined();
    expect(res.response).toMatchObject({ valid: true, message: 'req-42', principal: { userId: 'alice' } });
  });

  it('answers connect-node gRPC clients, including grpc.health.v1 Check', async () => {
    const res = await connectClient.validateToken({ accessToken: 'ok' }, { headers: { 'x-user': 'bob' } });
    expect(res).toMatchObject({ valid: true, principal: { userId: 'bob' } });
    expect(res.message).not.toBe(''); // a generated request id
    expect((await healthClient.check({ service: '' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await expectRpcError(healthClient.check({ service: 'nope' }), Code.NotFound, 'not_found');
  });

  it('sends headers, exactly one message and then the trailers', async () => {
    const res = await rawRequest(raw, { body: [frame(validateRequest('ok'))] });
    expect(res.headers).toMatchObject({ ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-accept-encoding': 'identity' });
    expect(res.headers['grpc-status']).toBeUndefined();
    expect(res.trailers).toMatchObject({ 'grpc-status': '0' });
    expect(res.data[0]).toBe(0);
    expect(res.data.readUInt32BE(1)).toBe(res.data.length - 5);
  });

  it('a domain error carries its status, its message and sa-error-code to every client', async () => {
    const viaGrpcJs = await grpcJsCall(grpcJsClient, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'domain' });
    expect(grpcJs.status[viaGrpcJs.error!.code]).toBe('UNAUTHENTICATED');
    expect(viaGrpcJs.error!.details).toBe(DOMAIN_MESSAGE);
    expect(viaGrpcJs.error!.metadata.get('sa-error-code')).toEqual(['unauthenticated']);

    const viaConnect = await expectRpcError(connectClient.validateToken({ accessToken: 'domain' }), Code.Unauthenticated, 'unauthenticated');
    expect(viaConnect.rawMessage).toBe(DOMAIN_MESSAGE);

    const viaRaw = await rawRequest(raw, { body: [frame(validateRequest('domain'))] });
    expect(viaRaw.headers[':status']).toBe(200);
    expect(viaRaw.data.length).toBe(0);
    expect(viaRaw.headers).toMatchObject({ 'grpc-status': '16', 'sa-error-code': 'unauthenticated' }); // trailers-only
    expect(viaRaw.grpcMessage).toBe('token rejected: 100%25 s%C3%BBre %E2%9C%93%0Asecond line');
  });

  it('an unexpected error is a bare INTERNAL', async () => {
    const res = await grpcJsCall(grpcJsClient, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'crash' });
    expect(grpcJs.status[res.error!.code]).toBe('INTERNAL');
    expect(res.error!.details).toBe('internal error');
    expect(res.error!.metadata.get('sa-error-code')).toEqual(['internal']);
  });

  it('unknown methods and streaming methods are UNIMPLEMENTED', async () => {
    const unknown = await grpcJsRawCall(grpcJsClient, 'NoSuchMethod', Buffer.alloc(0));
    expect(grpcJs.status[unknown.error!.code]).toBe('UNIMPLEMENTED');
    const otherService = await rawRequest(raw, { path: '/no.such.Service/Call', body: [frame(new Uint8Array())] });
    expect(otherService.grpcStatus).toBe(String(Code.Unimplemented));
    const watch = async () => {
      for await (const _ of healthClient.watch({ service: '' })) break;
    };
    await expectRpcError(watch(), Code.Unimplemented);
  });

  it('rejects non-gRPC requests at the HTTP level: 415 for another content-type, 405 for another method', async () => {
    for (const contentType of ['application/json', 'application/grpc+json', 'application/grpc-web', 'text/plain']) {
      const res = await rawRequest(raw, { headers: { 'content-type': contentType }, body: [frame(validateRequest('ok'))] });
      expect({ contentType, status: res.headers[':status'] }).toEqual({ contentType, status: 415 });
    }
    for (const contentType of ['application/grpc+proto', 'application/grpc; charset=utf-8', 'Application/GRPC']) {
      const res = await rawRequest(raw, { headers: { 'content-type': contentType }, body: [frame(validateRequest('ok'))] });
      expect({ contentType, status: res.grpcStatus }).toEqual({ contentType, status: '0' });
    }
    const get = await rawRequest(raw, { headers: { ':method': 'GET' } });
    expect(get.headers).toMatchObject({ ':status': 405, allow: 'POST' });
  });

  it('a compressed message is UNIMPLEMENTED and the answer advertises identity only', async () => {
    const res = await rawRequest(raw, { headers: { 'grpc-encoding': 'gzip' }, body: [frame(gzipSync(validateRequest('ok')), 1)] });
    expect(res.grpcStatus).toBe(String(Code.Unimplemented));
    expect(res.headers['grpc-accept-encoding']).toBe('identity');
    // The header alone is fine: only the per-message flag says a message is compressed.
    const flagless = await rawRequest(raw, { headers: { 'grpc-encoding': 'gzip' }, body: [frame(validateRequest('ok'))] });
    expect(flagless.grpcStatus).toBe('0');
  });

  it('a message over the limit is RESOURCE_EXHAUSTED, decided from its prefix', async () => {
    const big = await grpcJsCall(grpcJsClient, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'x'.repeat(MAX + 10) });
    expect(grpcJs.status[big.error!.code]).toBe('RESOURCE_EXHAUSTED');
    // Only the prefix is sent: the answer must not wait for a body that never comes.
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(MAX + 1, 1);
    const session = connect(`http://${target}`);
    const stream = session.request({ ':method': 'POST', ':path': VALIDATE, 'content-type': 'application/grpc' });
    stream.write(prefix);
    const headers = await new Promise<IncomingHttpHeaders>((resolve) => stream.on('response', resolve));
    expect(headers['grpc-status']).toBe(String(Code.ResourceExhausted));
    session.destroy();
    // Exactly at the limit is fine (tag, 3-byte length, MAX - 4 bytes).
    expect(validateRequest('x'.repeat(MAX - 4)).length).toBe(MAX);
    expect((await rawRequest(raw, { body: [frame(validateRequest('x'.repeat(MAX - 4)))] })).grpcStatus).toBe('0');
  });

  it('an undecodable message is INVALID_ARGUMENT with sa-error-code', async () => {
    const res = await grpcJsRawCall(grpcJsClient, 'ValidateToken', Buffer.from([0xff, 0xff, 0xff]));
    expect(grpcJs.status[res.error!.code]).toBe('INVALID_ARGUMENT');
    expect(res.error!.metadata.get('sa-error-code')).toEqual(['invalid_argument']);
  });

  it('a unary call with no message or with two is UNIMPLEMENTED; a truncated one INTERNAL', async () => {
    const none = await rawRequest(raw, {});
    expect(none.grpcStatus).toBe(String(Code.Unimplemented));
    const two = await rawRequest(raw, { body: [frame(validateRequest('ok')), frame(validateRequest('ok'))] });
    expect(two.grpcStatus).toBe(String(Code.Unimplemented));
    const oneAndAByte = await rawRequest(raw, { body: [Buffer.concat([frame(validateRequest('ok')), Buffer.from([0])])] });
    expect(oneAndAByte.grpcStatus).toBe(String(Code.Unimplemented));
    const truncated = await rawRequest(raw, { body: [frame(validateRequest('ok')).subarray(0, 7)] });
    expect(truncated.grpcStatus).toBe(String(Code.Internal));
    const prefixOnlyPart = await rawRequest(raw, { body: [Buffer.from([0, 0])] });
    expect(prefixOnlyPart.grpcStatus).toBe(String(Code.Internal));
    // A message split across many DATA frames is still one message.
    const bytes = frame(validateRequest('ok'));
    const split = await rawRequest(raw, { body: [...bytes].map((b) => Buffer.from([b])) });
    expect(split.grpcStatus).toBe('0');
  });

  it('honours grpc-timeout: DEADLINE_EXCEEDED when the handler outlives it', async () => {
    const started = Date.now();
    const res = await rawRequest(raw, { headers: { 'grpc-timeout': '100m' }, body: [frame(validateRequest('slow:600'))] });
    expect(res.grpcStatus).toBe(String(Code.DeadlineExceeded));
    expect(Date.now() - started).toBeLessThan(500);
    const inTime = await rawRequest(raw, { headers: { 'grpc-timeout': '2S' }, body: [frame(validateRequest('slow:10'))] });
    expect(inTime.grpcStatus).toBe('0');
    // Beyond what a timer can hold: no deadline (not one that fires at once).
    const huge = await rawRequest(raw, { headers: { 'grpc-timeout': '99999999H' }, body: [frame(validateRequest('slow:20'))] });
    expect(huge.grpcStatus).toBe('0');
    const invalid = await rawRequest(raw, { headers: { 'grpc-timeout': 'soon' }, body: [frame(validateRequest('ok'))] });
    expect(invalid.grpcStatus).toBe(String(Code.Internal));
    // grpc-js sends the header from its deadline option.
    const viaGrpcJs = await grpcJsCall(grpcJsClient, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'slow:600' }, undefined, 100);
    expect(grpcJs.status[viaGrpcJs.error!.code]).toBe('DEADLINE_EXCEEDED');
    await sleep(600); // let the slow handlers finish while the server has no one to answer
  });

  it('survives clients that cancel mid-call, and serves the next call', async () => {
    const before = { ...calls };
    // connect-node: abort signal (RST_STREAM CANCEL)
    const abort = new AbortController();
    const aborted = connectClient.validateToken({ accessToken: 'slow:300' }, { signal: abort.signal });
    await sleep(50);
    abort.abort();
    await expectRpcError(aborted, Code.Canceled);
    // grpc-js: call.cancel()
    const call = grpcJsClient.makeUnaryRequest(VALIDATE, (b: Buffer) => b, (b: Buffer) => b, frame(validateRequest('slow:300')).subarray(5), () => {});
    await sleep(50);
    call.cancel();
    // raw: RST_STREAM with an error code, and a session torn down mid-call
    const stream = raw.request({ ':method': 'POST', ':path': VALIDATE, 'content-type': 'application/grpc' });
    stream.on('error', () => {});
    stream.end(frame(validateRequest('slow:300')));
    const doomed = connect(`http://${target}`);
    doomed.on('error', () => {});
    const doomedStream = doomed.request({ ':method': 'POST', ':path': VALIDATE, 'content-type': 'application/grpc' });
    doomedStream.on('error', () => {});
    doomedStream.end(frame(validateRequest('slow:300')));
    await sleep(50);
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    doomed.destroy();

    expect((await connectClient.validateToken({ accessToken: 'ok' })).valid).toBe(true);
    // The cancelled handlers finish later, with nobody left to answer.
    await sleep(400);
    expect(calls.slowStarted - before.slowStarted).toBe(4);
    expect(calls.slowFinished - before.slowFinished).toBe(4);
    expect((await connectClient.validateToken({ accessToken: 'ok' })).valid).toBe(true);
    const after = await grpcJsCall(grpcJsClient, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'ok' });
    expect(after.response!.valid).toBe(true);
  });

  it('percent-encodes grpc-message as the spec says: printable ASCII but "%" stays as is', () => {
    expect(percentEncode('plain message (with) "quotes" & stuff')).toBe('plain message (with) "quotes" & stuff');
    expect(percentEncode('50%')).toBe('50%25');
    expect(percentEncode('tab\there é')).toBe('tab%09here %C3%A9');
  });
});

describe('h2 gRPC server under many calls in flight', () => {
  // Node's default per-connection memory cap refused streams somewhere past 10k
  // in flight on one connection; grpc-js (and so this server) lifts it.
  it('serves 20000 concurrent calls on one connection', async () => {
    const server = await startTestServer();
    const session = connect(`http://127.0.0.1:${server.port}`, { maxSessionMemory: 1000 });
    session.on('error', () => {});
    try {
      const body = [frame(validateRequest('slow:2000'))];
      const results = await Promise.all(Array.from({ length: 20_000 }, () => rawRequest(session, { body }).then((r) => r.grpcStatus, (e: Error & { code?: string }) => e.code)));
      const counts: Record<string, number> = {};
      for (const r of results) counts[String(r)] = (counts[String(r)] ?? 0) + 1;
      expect(counts).toEqual({ 0: 20_000 });
    } finally {
      session.destroy();
      await server.close();
    }
  });
});

describe('h2 gRPC server close()', () => {
  it('resolves promptly with an idle client still connected, and refuses calls afterwards', async () => {
    const server = await startTestServer();
    const client = newGrpcJsClient(`127.0.0.1:${server.port}`);
    const session = connect(`http://127.0.0.1:${server.port}`);
    session.on('error', () => {});
    try {
      const res = await grpcJsCall(client, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'ok' });
      expect(res.response!.valid).toBe(true);
      expect((await rawRequest(session, { body: [frame(validateRequest('ok'))] })).grpcStatus).toBe('0');
      const started = Date.now();
      await server.close();
      expect(Date.now() - started).toBeLessThan(500); // well inside the 2 s grace: idle sessions close at once
      const later = await grpcJsCall(client, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'ok' }, undefined, 1000);
      expect(grpcJs.status[later.error!.code]).toMatch(/UNAVAILABLE|DEADLINE_EXCEEDED/);
    } finally {
      client.close();
      session.destroy();
    }
  });

  it('lets a call in flight finish, and cuts one that outlives the grace period', async () => {
    const server = await startTestServer();
    const client = newGrpcJsClient(`127.0.0.1:${server.port}`);
    try {
      await grpcJsCall(client, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'ok' });
      const inFlight = grpcJsCall(client, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'slow:200' });
      const stuck = grpcJsCall(client, 'ValidateToken', ValidateTokenRequestSchema, ValidateTokenResponseSchema, { accessToken: 'slow:10000' }, undefined, 20_000);
      await sleep(50);
      const started = Date.now();
      await server.close();
      const took = Date.now() - started;
      expect((await inFlight).response!.valid).toBe(true);
      expect(grpcJs.status[(await stuck).error!.code]).toMatch(/UNAVAILABLE|CANCELLED|INTERNAL/);
      expect(took).toBeGreaterThanOrEqual(1900);
      expect(took).toBeLessThan(3000);
    } finally {
      client.close();
    }
  });
});

describe('h2 gRPC server: bidirectional streams', () => {
  // grpc.reflection.v1's ServerReflectionInfo stands in for any bidi method; the
  // test handler answers each request by its host: "fail" throws a domain
  // error, "slow:<ms>" answers after ms, "twice" answers two messages, anything
  // else one message echoing the host and the x-user header.
  const BIDI = `/${ServerReflection.typeName}/ServerReflectionInfo`;
  const handlerRuns = { started: 0, finished: 0 };
  const echo: BidiStreamHandler<ServerReflectionRequest> = async function* (requests, ctx) {
    handlerRuns.started++;
    try {
      for await (const r of requests) {
        const [kind, arg] = r.host.split(':');
        if (kind === 'fail') throw new AuthorityError('permission_denied', 'no echo for you');
        if (kind === 'slow') await sleep(Number(arg));
        const reply = create(ServerReflectionResponseSchema, { validHost: `${r.host}/${ctx.header('x-user') ?? ''}` });
        yield reply;
        if (kind === 'twice') yield reply;
      }
    } finally {
      handlerRuns.finished++;
    }
  };
  const request = (host: string) => toBinary(ServerReflectionRequestSchema, create(ServerReflectionRequestSchema, { host }));
  /** The hosts of the responses in a raw body of 5-byte-prefixed messages. */
  const hostsIn = (data: Buffer) => {
    const hosts: string[] = [];
    for (let at = 0; at < data.length; ) {
      const length = data.readUInt32BE(at + 1);
      hosts.push(fromBinary(ServerReflectionResponseSchema, data.subarray(at + 5, at + 5 + length)).validHost);
      at += 5 + length;
    }
    return hosts;
  };
  /**
   * A bidi call the client never half-closes: resolves with the status the
   * server sent (in a trailers-only response or the trailers), or "closed" if
   * the stream closed without one.
   */
  const openCall = (session: ClientHttp2Session, headers: OutgoingHttpHeaders = {}) => {
    const stream = session.request({ ':method': 'POST', ':path': BIDI, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    stream.on('error', () => {});
    const status = new Promise<string>((resolve) => {
      const look = (h: IncomingHttpHeaders) => h['grpc-status'] !== undefined && resolve(h['grpc-status'] as string);
      stream.on('response', look);
      stream.on('trailers', look);
      stream.on('close', () => resolve('closed'));
      stream.resume();
    });
    return { stream, status };
  };

  let server: H2GrpcServer;
  let target: string;
  let raw: ClientHttp2Session;
  beforeAll(async () => {
    server = await startH2GrpcServer({
      host: '127.0.0.1', port: 0, logger: silentLogger, maxMessageBytes: MAX,
      services: [{ service: ServerReflection, handlers: { serverReflectionInfo: echo } }],
    });
    target = `127.0.0.1:${server.port}`;
    raw = connect(`http://${target}`);
    raw.on('error', () => {});
  });
  afterAll(async () => {
    raw?.close();
    await server?.close();
  });

  it('answers each request before the client sends the next, and ends OK when the client half-closes', async () => {
    const m = new grpcJs.Metadata();
    m.set('x-user', 'carol');
    const client = newGrpcJsClient(target);
    const call = client.makeBidiStreamRequest(BIDI, (b: Buffer) => b, (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b), m);
    const got: string[] = [];
    call.on('data', (r: { validHost: string }) => got.push(r.validHost));
    const status = new Promise<grpcJs.StatusObject>((resolve) => call.on('status', resolve));
    try {
      for (const host of ['one', 'two', 'twice']) {
        const before = got.length;
        call.write(Buffer.from(request(host)));
        await until(() => got.length > before, 2000, `answer to ${host}`);
      }
      expect(got).toEqual(['one/carol', 'two/carol', 'twice/carol', 'twice/carol']);
      call.end();
      expect((await status).code).toBe(grpcJs.status.OK);
    } finally {
      client.close();
    }
  });

  it('takes messages however they are framed: several in one DATA frame, one across many', async () => {
    const split = frame(request('split'));
    const res = await rawRequest(raw, {
      path: BIDI,
      body: [Buffer.concat([frame(request('a')), frame(request('b'))]), ...[...split].map((b) => Buffer.from([b]))],
    });
    expect(res.grpcStatus).toBe('0');
    expect(hostsIn(res.data)).toEqual(['a/', 'b/', 'split/']);
    // No request at all is fine for a stream: OK, no message.
    const none = await rawRequest(raw, { path: BIDI });
    expect({ status: none.grpcStatus, bytes: none.data.length }).toEqual({ status: '0', bytes: 0 });
  });

  it('a handler error ends the stream after the messages already sent, with its status and sa-error-code', async () => {
    const res = await rawRequest(raw, { path: BIDI, body: [frame(request('a')), frame(request('fail')), frame(request('never'))] });
    expect(hostsIn(res.data)).toEqual(['a/']);
    expect(res.trailers).toMatchObject({ 'grpc-status': String(Code.PermissionDenied), 'grpc-message': 'no echo for you', 'sa-error-code': 'permission_denied' });
  });

  it('protocol errors: oversized (from the prefix alone), compressed, truncated; an undecodable message is INVALID_ARGUMENT', async () => {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(MAX + 1, 1);
    const big = openCall(raw);
    big.stream.write(Buffer.concat([frame(request('a')), prefix]));
    expect(await big.status).toBe(String(Code.ResourceExhausted));
    big.stream.close();

    const compressed = await rawRequest(raw, { path: BIDI, body: [frame(gzipSync(request('a')), 1)] });
    expect(compressed.grpcStatus).toBe(String(Code.Unimplemented));
    const truncated = await rawRequest(raw, { path: BIDI, body: [frame(request('a')).subarray(0, 6)] });
    expect(truncated.grpcStatus).toBe(String(Code.Internal));
    const garbage = await rawRequest(raw, { path: BIDI, body: [frame(request('a')), frame(Buffer.from([0xff, 0xff, 0xff]))] });
    expect(hostsIn(garbage.data)).toEqual(['a/']);
    expect(garbage.trailers).toMatchObject({ 'grpc-status': String(Code.InvalidArgument), 'sa-error-code': 'invalid_argument' });
  });

  it('a deadline, a cancelling client and close() each end the call and stop the handler', async () => {
    const before = { ...handlerRuns };
    // Deadline: the client keeps its side open and sends nothing.
    const started = Date.now();
    const late = openCall(raw, { 'grpc-timeout': '100m' });
    late.stream.write(frame(request('a')));
    expect(await late.status).toBe(String(Code.DeadlineExceeded));
    expect(Date.now() - started).toBeLessThan(1000);
    // Its handler stops although the client still holds its side of the stream open.
    await until(() => handlerRuns.finished >= before.finished + 1, 2000, 'handler of the expired call finished');
    late.stream.close();

    // grpc-js cancel while the handler waits for the next request.
    const client = newGrpcJsClient(target);
    const call = client.makeBidiStreamRequest(BIDI, (b: Buffer) => b, (b: Buffer) => b);
    call.on('error', () => {});
    call.on('data', () => {});
    call.write(Buffer.from(request('a')));
    await until(() => handlerRuns.started >= before.started + 2, 2000, 'second handler started');
    call.cancel();
    await until(() => handlerRuns.finished >= before.finished + 2, 2000, 'handlers of the deadline and the cancel finished');
    client.close();

    // close(): an open stream ends with UNAVAILABLE at once, not after the grace period.
    const own = await startH2GrpcServer({
      host: '127.0.0.1', port: 0, logger: silentLogger, maxMessageBytes: MAX, services: [{ service: ServerReflection, handlers: { serverReflectionInfo: echo } }],
    });
    const session = connect(`http://127.0.0.1:${own.port}`);
    session.on('error', () => {});
    try {
      const open = openCall(session);
      open.stream.write(frame(request('a')));
      await until(() => handlerRuns.started >= before.started + 3, 2000, 'third handler started');
      const closing = Date.now();
      const closed = own.close();
      expect(await open.status).toBe(String(Code.Unavailable));
      expect(Date.now() - closing).toBeLessThan(1000);
      await until(() => handlerRuns.finished === handlerRuns.started, 2000, 'every handler finished');
      // This client never half-closes, so close() would wait out its grace period for it.
      session.destroy();
      await closed;
    } finally {
      session.destroy();
    }
  });
});
