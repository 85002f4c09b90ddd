// The hot-path encoder must write exactly toBinary's bytes for every message we
// define (and every scalar type protobuf has), and leave what it does not handle
// to toBinary, errors included.
import { create, createFileRegistry, toBinary, ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';
import {
  DescriptorProtoSchema, FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema, FileDescriptorSetSchema,
  StructSchema, file_google_protobuf_descriptor, file_google_protobuf_wrappers,
} from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { encodeMessage } from '../../src/transport/encode-message.js';
import { file_sessionauthority_v1_authority, RefreshResponseSchema } from '../../src/gen/sessionauthority/v1/authority_pb.js';
import { file_sessionauthority_v1_events } from '../../src/gen/sessionauthority/v1/events_pb.js';
import { file_grpc_health_v1_health } from '../../src/gen/grpc/health/v1/health_pb.js';
import { file_grpc_reflection_v1_reflection } from '../../src/gen/grpc/reflection/v1/reflection_pb.js';

// Every scalar type, singular (implicit and explicit presence) and repeated (packed, and not).
const T = FieldDescriptorProto_Type;
const scalarTypes = [T.DOUBLE, T.FLOAT, T.INT64, T.UINT64, T.INT32, T.FIXED64, T.FIXED32, T.BOOL, T.STRING, T.BYTES, T.UINT32, T.SFIXED32, T.SFIXED64, T.SINT32, T.SINT64];
const allScalars = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: 'encode_test.proto', package: 'encodetest', syntax: 'proto3',
    enumType: [{ name: 'Color', value: [{ name: 'COLOR_UNSPECIFIED', number: 0 }, { name: 'COLOR_RED', number: 1 }, { name: 'COLOR_NEG', number: -3 }] }],
    messageType: [{
      name: 'AllScalars',
      field: [
        ...scalarTypes.map((type, i) => ({ name: `s${i}`, number: i + 1, type, label: FieldDescriptorProto_Label.OPTIONAL })),
        ...scalarTypes.map((type, i) => ({ name: `o${i}`, number: 100 + i, type, label: FieldDescriptorProto_Label.OPTIONAL, proto3Optional: true, oneofIndex: i })),
        ...scalarTypes.map((type, i) => ({ name: `r${i}`, number: 200 + i, type, label: FieldDescriptorProto_Label.REPEATED })),
        ...scalarTypes.map((type, i) => ({ name: `u${i}`, number: 300 + i, type, label: FieldDescriptorProto_Label.REPEATED, options: { packed: false } })),
        { name: 'color', number: 400, type: T.ENUM, typeName: '.encodetest.Color', label: FieldDescriptorProto_Label.OPTIONAL },
        { name: 'colors', number: 401, type: T.ENUM, typeName: '.encodetest.Color', label: FieldDescriptorProto_Label.REPEATED },
        { name: 'child', number: 402, type: T.MESSAGE, typeName: '.encodetest.AllScalars', label: FieldDescriptorProto_Label.OPTIONAL },
        { name: 'children', number: 403, type: T.MESSAGE, typeName: '.encodetest.AllScalars', label: FieldDescriptorProto_Label.REPEATED },
        { name: 'pick_text', number: 500, type: T.STRING, label: FieldDescriptorProto_Label.OPTIONAL, oneofIndex: scalarTypes.length },
        { name: 'pick_child', number: 501, type: T.MESSAGE, typeName: '.encodetest.AllScalars', label: FieldDescriptorProto_Label.OPTIONAL, oneofIndex: scalarTypes.length },
        // Declared out of number order: the bytes follow field numbers.
        { name: 'late', number: 50, type: T.STRING, label: FieldDescriptorProto_Label.OPTIONAL },
      ],
      oneofDecl: [...scalarTypes.map((_, i) => ({ name: `_o${i}` })), { name: 'pick' }],
    }],
  }),
  () => undefined,
).getMessage('encodetest.AllScalars')!;

/** Deterministic pseudo-random numbers, so a failure names a reproducible seed. */
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32);
  return { next, pick: <V,>(values: readonly V[]): V => values[Math.floor(next() * values.length)]! };
}

const strings = ['', 'a', 'é', '🙂 ok', '\ud800', 'x'.repeat(200), 'ü'.repeat(9000)];
function scalarValue(type: ScalarType, r: ReturnType<typeof rng>): unknown {
  switch (type) {
    case ScalarType.DOUBLE: return r.pick([0, -0, 1.5, Math.PI, -1e308, NaN, Infinity, -Infinity, 5e-324]);
    case ScalarType.FLOAT: return r.pick([0, -0, 1.5, -2.25, 3.4028234663852886e38, NaN, -Infinity, 1e-45]);
    case ScalarType.INT32: case ScalarType.SINT32: case ScalarType.SFIXED32: return r.pick([0, 1, -1, 127, 128, -129, 2 ** 31 - 1, -(2 ** 31), Math.floor(r.next() * 1e6)]);
    case ScalarType.UINT32: case ScalarType.FIXED32: return r.pick([0, 1, 127, 128, 16384, 2 ** 31, 2 ** 32 - 1]);
    case ScalarType.INT64: case ScalarType.SINT64: case ScalarType.SFIXED64:
      return r.pick([0n, 1n, -1n, 2n ** 53n - 1n, 2n ** 53n, -(2n ** 53n) - 1n, 2n ** 63n - 1n, -(2n ** 63n), 1_700_000_000n]);
    case ScalarType.UINT64: case ScalarType.FIXED64: return r.pick([0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]);
    case ScalarType.BOOL: return r.pick([true, false]);
    case ScalarType.STRING: return r.pick(strings);
    case ScalarType.BYTES: return r.pick([new Uint8Array(0), new Uint8Array([0]), new Uint8Array(300).fill(7)]);
  }
}

/** A random message of `desc`: fields set or left out, oneofs chosen, lists of 0-3, nesting bounded. */
function randomMessage(desc: DescMessage, r: ReturnType<typeof rng>, depth = 0): any {
  const init: Record<string, unknown> = {};
  const value = (f: DescField): unknown => {
    if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) return depth < 3 ? randomMessage(f.message!, r, depth + 1) : undefined;
    if (f.fieldKind === 'enum' || (f.fieldKind === 'list' && f.listKind === 'enum')) return r.pick([...f.enum!.values.map((v) => v.number), 99, -7]);
    return scalarValue(f.scalar!, r);
  };
  for (const f of desc.fields) {
    if (r.next() < 0.3 || f.fieldKind === 'map') continue;
    if (f.oneof) {
      const v = value(f);
      if (v !== undefined) init[f.oneof.localName] = { case: f.localName, value: v };
    } else if (f.fieldKind === 'list') {
      const items = Array.from({ length: Math.floor(r.next() * 4) }, () => value(f)).filter((v) => v !== undefined);
      init[f.localName] = items;
    } else {
      const v = value(f);
      if (v !== undefined) init[f.localName] = v;
    }
  }
  return create(desc, init as never);
}

const files = [file_sessionauthority_v1_authority, file_sessionauthority_v1_events, file_grpc_health_v1_health, file_grpc_reflection_v1_reflection, file_google_protobuf_wrappers, file_google_protobuf_descriptor];
const ourMessages = files.flatMap((f) => collect(f.messages));
function collect(messages: readonly DescMessage[]): DescMessage[] {
  return messages.flatMap((m) => [m, ...collect(m.nestedMessages)]);
}

/** encodeMessage's answer is toBinary's: the same bytes, or the same error. */
function expectSame(desc: DescMessage, message: unknown, label: string) {
  let reference: Uint8Array | Error;
  try { reference = toBinary(desc, message as never); } catch (error) { reference = error as Error; }
  if (reference instanceof Error) expect(() => encodeMessage(desc, message as object), label).toThrow(reference.message);
  else expect(Buffer.from(encodeMessage(desc, message as object)).equals(Buffer.from(reference)), label).toBe(true);
  return reference;
}

describe('encodeMessage', () => {
  it('writes toBinary\'s bytes for every scalar type, presence and list encoding', () => {
    for (let seed = 1; seed <= 400; seed++) {
      expect(expectSame(allScalars, randomMessage(allScalars, rng(seed)), `seed ${seed}`)).toBeInstanceOf(Uint8Array);
    }
  });

  it('writes toBinary\'s bytes for every message of our protos, the reflection ones and descriptor.proto (proto2)', () => {
    expect(ourMessages.length).toBeGreaterThan(40);
    let encoded = 0;
    for (const desc of ourMessages) {
      for (let seed = 1; seed <= 25; seed++) {
        // descriptor.proto has required fields deep down; a random one left out is toBinary's error, and must be ours.
        if (expectSame(desc, randomMessage(desc, rng(seed * 7919 + desc.typeName.length)), `${desc.typeName} seed ${seed}`) instanceof Uint8Array) encoded++;
      }
    }
    expect(encoded).toBeGreaterThan(ourMessages.length * 20);
  });

  it('leaves the requested headroom in front of the message', () => {
    const message = randomMessage(allScalars, rng(5));
    const out = encodeMessage(allScalars, message, 5);
    expect(out.subarray(5).equals(Buffer.from(toBinary(allScalars, message)))).toBe(true);
    expect(out.length).toBe(5 + toBinary(allScalars, message).length);
  });

  it('hands unknown fields, map fields and proto2 defaults to toBinary and matches it', () => {
    const withUnknown = create(allScalars, { s8: 'kept' } as never) as any;
    withUnknown.$unknown = [{ no: 999, wireType: 0, data: new Uint8Array([0xf8, 0x3e, 0x05]) }];
    expect(Buffer.from(encodeMessage(allScalars, withUnknown, 2)).subarray(2).equals(Buffer.from(toBinary(allScalars, withUnknown)))).toBe(true);

    const struct = create(StructSchema, { fields: { a: { kind: { case: 'numberValue', value: 1 } } } });
    expect(Buffer.from(encodeMessage(StructSchema, struct)).equals(Buffer.from(toBinary(StructSchema, struct)))).toBe(true);

    // A proto2 field left at its default is not written; set to the default value, it is.
    const proto = create(DescriptorProtoSchema, { name: 'X' });
    expect(encodeMessage(DescriptorProtoSchema, proto)).toEqual(Buffer.from(toBinary(DescriptorProtoSchema, proto)));
    const set = create(FileDescriptorSetSchema, { file: [file_sessionauthority_v1_authority.proto] });
    expect(Buffer.from(encodeMessage(FileDescriptorSetSchema, set)).equals(Buffer.from(toBinary(FileDescriptorSetSchema, set)))).toBe(true);
  });

  it('matches toBinary on odd shapes: a oneof selected without a value, plain objects for messages, a getter that encodes', () => {
    const selected = create(allScalars) as any;
    selected.pick = { case: 'pickChild', value: undefined };
    expectSame(allScalars, selected, 'oneof message member without a value');
    selected.pick = { case: 'pickText', value: undefined };
    expectSame(allScalars, selected, 'oneof scalar member without a value');

    const plainChild = create(allScalars) as any;
    plainChild.child = { s4: 300 }; // no $typeName: toBinary refuses it
    expectSame(allScalars, plainChild, 'plain object as a message field');
    expectSame(allScalars, { s4: 300 }, 'plain object as the message');
    const plainTimestamp = create(RefreshResponseSchema) as any;
    plainTimestamp.sessionExpiresAt = { seconds: 5n, nanos: 0 }; // every field there, but no $typeName
    expectSame(RefreshResponseSchema, plainTimestamp, 'plain object with every field as a message field');

    // Reading a field runs another encode in the middle of this one.
    const inner = create(allScalars, { s8: 'inner' } as never);
    const outer = create(allScalars, { child: create(allScalars, { s4: 300 } as never) } as never) as any;
    const child = outer.child;
    Object.defineProperty(outer, 's8', { enumerable: true, get: () => (encodeMessage(allScalars, inner), 'outer') });
    outer.child = child;
    expectSame(allScalars, outer, 'reentered from a getter');
  });

  it('rejects what toBinary rejects, with toBinary\'s error', () => {
    for (const [field, bad] of [['s4', 2 ** 31], ['s4', 1.5], ['s10', -1], ['s2', 2n ** 63n], ['s3', -1n], ['s1', 1e39]] as const) {
      const message = create(allScalars) as any;
      message[field] = bad;
      let expected: unknown;
      try { toBinary(allScalars, message); } catch (error) { expected = error; }
      expect(expected, `${field}=${String(bad)}`).toBeInstanceOf(Error);
      expect(() => encodeMessage(allScalars, message)).toThrow((expected as Error).message);
    }
  });
});
