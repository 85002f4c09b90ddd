// Bidirectional streams on the grpc-js transport (the authority's TLS port),
// served through grpcJsService exactly as there, here on an insecure port:
// answers interleave with requests, errors carry status and sa-error-code, a
// malformed request is INVALID_ARGUMENT, and a cancelled call stops its handler.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpcJs from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ServerReflection, ServerReflectionRequestSchema, ServerReflectionResponseSchema, type ServerReflectionRequest, type ServerReflectionResponse,
} from '../../src/gen/grpc/reflection/v1/reflection_pb.js';
import { AuthorityError } from '../../src/shared/errors.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { BidiStreamHandler } from '../../src/transport/call-context.js';
import { grpcJsService } from '../../src/transport/grpc-js-service.js';
import { until } from '../support/sidecars.js';

const BIDI = `/${ServerReflection.typeName}/ServerReflectionInfo`;
const runs = { started: 0, finished: 0 };

/** Answers each request with its host; "fail" throws a domain error. */
const echo: BidiStreamHandler<ServerReflectionRequest> = async function* (requests) {
  runs.started++;
  try {
    for await (const r of requests) {
      if (r.host === 'fail') throw new AuthorityError('permission_denied', 'no echo for you');
      yield create(ServerReflectionResponseSchema, { validHost: r.host });
    }
  } finally {
    runs.finished++;
  }
};

const encode = (host: string) => Buffer.from(toBinary(ServerReflectionRequestSchema, create(ServerReflectionRequestSchema, { host })));

describe('grpc-js transport: bidirectional streams', () => {
  let server: grpcJs.Server;
  let client: grpcJs.Client;
  beforeAll(async () => {
    server = new grpcJs.Server();
    const { definition, implementation } = grpcJsService(ServerReflection, { serverReflectionInfo: echo }, silentLogger);
    server.addService(definition, implementation);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpcJs.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    client = new grpcJs.Client(`127.0.0.1:${port}`, grpcJs.credentials.createInsecure());
  });
  afterAll(() => {
    client?.close();
    server?.forceShutdown();
  });

  function open() {
    const call = client.makeBidiStreamRequest(BIDI, (b: Buffer) => b, (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b));
    const got: string[] = [];
    call.on('data', (r: ServerReflectionResponse) => got.push(r.validHost));
    call.on('error', () => {});
    const status = new Promise<grpcJs.StatusObject>((resolve) => call.on('status', resolve));
    return { call, got, status };
  }

  it('answers each request before the next is sent; OK at half-close', async () => {
    const { call, got, status } = open();
    for (const host of ['one', 'two']) {
      const before = got.length;
      call.write(encode(host));
      await until(() => got.length > before, 2000, `answer to ${host}`);
    }
    call.end();
    expect((await status).code).toBe(grpcJs.status.OK);
    expect(got).toEqual(['one', 'two']);
  });

  it('a handler error and an undecodable request end the call with their status and sa-error-code', async () => {
    const failing = open();
    failing.call.write(encode('a'));
    failing.call.write(encode('fail'));
    const failed = await failing.status;
    expect({ code: grpcJs.status[failed.code], details: failed.details, domain: failed.metadata.get('sa-error-code') })
      .toEqual({ code: 'PERMISSION_DENIED', details: 'no echo for you', domain: ['permission_denied'] });
    expect(failing.got).toEqual(['a']);

    const garbage = open();
    garbage.call.write(Buffer.from([0xff, 0xff, 0xff]));
    const bad = await garbage.status;
    expect({ code: grpcJs.status[bad.code], domain: bad.metadata.get('sa-error-code') }).toEqual({ code: 'INVALID_ARGUMENT', domain: ['invalid_argument'] });
  });

  it('a cancelled call stops its handler, which was waiting for the next request', async () => {
    const before = { ...runs };
    const { call, got } = open();
    call.write(encode('a'));
    await until(() => got.length === 1, 2000, 'first answer');
    call.cancel();
    await until(() => runs.finished === before.finished + 1, 2000, 'handler finished');
    expect(runs.started).toBe(before.started + 1);
  });
});
