// The scale-out configuration: REDIS_CLUSTER_NODES and SA_NATS_STREAM_REPLICAS.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { describeRedis } from '../../src/store/create-store.js';

const KEK = randomBytes(32).toString('base64');

/** The key and message of the ConfigError loadConfig throws for env. */
function failure(env: Record<string, string>): { key: string; message: string } {
  try {
    loadConfig({ SA_KEY_ENCRYPTION_KEY: KEK, ...env });
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return { key: (e as ConfigError).key, message: (e as ConfigError).message };
  }
  throw new Error('loadConfig should have failed');
}

describe('REDIS_CLUSTER_NODES', () => {
  it('is off by default', () => {
    const config = loadConfig({});
    expect(config.redisCluster).toBeUndefined();
    expect(config.redisUrl).toBe('');
  });

  it('takes comma-separated seed URLs with shared credentials; the port defaults to 6379', () => {
    const config = loadConfig({
      SA_KEY_ENCRYPTION_KEY: KEK,
      REDIS_CLUSTER_NODES: ' rediss://app:s%3Acret@10.0.0.1:7000, rediss://app:s%3Acret@redis-b ,rediss://app:s%3Acret@[::1]:7002/0',
    });
    expect(config.redisUrl).toBe('');
    expect(config.redisCluster).toEqual({
      nodes: [{ host: '10.0.0.1', port: 7000 }, { host: 'redis-b', port: 6379 }, { host: '::1', port: 7002 }],
      username: 'app',
      password: 's:cret',
      tls: true,
    });
    // Logged without the credentials.
    const described = describeRedis(config);
    expect(described).toBe('cluster rediss://10.0.0.1:7000,rediss://redis-b:6379,rediss://[::1]:7002');
    expect(described).not.toContain('cret');
  });

  it('is refused with a message naming the key, and never echoing a password', () => {
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ REDIS_CLUSTER_NODES: 'redis://a:7000', REDIS_URL: 'redis://b:6379' }, 'REDIS_CLUSTER_NODES', /either REDIS_URL .* or REDIS_CLUSTER_NODES/],
      [{ REDIS_CLUSTER_NODES: 'a:7000' }, 'REDIS_CLUSTER_NODES', /entry 1 must start with redis:\/\/ or rediss:\/\//],
      [{ REDIS_CLUSTER_NODES: 'redis://a:7000,http://b:7001' }, 'REDIS_CLUSTER_NODES', /entry 2 must start with redis:\/\//],
      [{ REDIS_CLUSTER_NODES: 'redis://:hunter2@a:7000/2' }, 'REDIS_CLUSTER_NODES', /entry 1 names a database/],
      [{ REDIS_CLUSTER_NODES: 'redis://a:0' }, 'REDIS_CLUSTER_NODES', /entry 1 has port 0/],
      [{ REDIS_CLUSTER_NODES: 'redis://a:7000,rediss://b:7001' }, 'REDIS_CLUSTER_NODES', /mixes redis:\/\/ and rediss:\/\//],
      [{ REDIS_CLUSTER_NODES: 'redis://:hunter2@a:7000,redis://:hunter3@b:7001' }, 'REDIS_CLUSTER_NODES', /same credentials/],
      [{ REDIS_CLUSTER_NODES: 'redis://:hunter2@a:7000,redis://b:7001' }, 'REDIS_CLUSTER_NODES', /same credentials/],
    ];
    for (const [env, key, message] of cases) {
      const got = failure(env);
      expect({ env, key: got.key }).toEqual({ env, key });
      expect(got.message).toMatch(message);
      expect(got.message).not.toMatch(/hunter/);
    }
  });

  it('needs SA_KEY_ENCRYPTION_KEY, like REDIS_URL', () => {
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'redis://a:7000' })).toThrow(/SA_KEY_ENCRYPTION_KEY: is required with REDIS_CLUSTER_NODES/);
  });
});

describe('SA_NATS_STREAM_REPLICAS', () => {
  it('defaults to 1 and takes 1 to 5', () => {
    expect(loadConfig({}).natsStreamReplicas).toBe(1);
    expect(loadConfig({ SA_NATS_STREAM_REPLICAS: '3' }).natsStreamReplicas).toBe(3);
    expect(loadConfig({ SA_NATS_STREAM_REPLICAS: '5' }).natsStreamReplicas).toBe(5);
    for (const bad of ['0', '6', 'three', '2.5', '']) {
      expect(failure({ SA_NATS_STREAM_REPLICAS: bad }).key).toBe('SA_NATS_STREAM_REPLICAS');
    }
  });
});
