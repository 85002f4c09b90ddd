// The signing thread: signatures that verify, each for its own input, whatever the
// algorithm and key; one bad job fails alone; a lost thread fails what it owed and
// the next signature gets a new one.
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, verify, type KeyObject } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import type { SigningAlgorithm } from '../../src/config/config.js';
import { SigningWorker } from '../../src/authority/signing-worker.js';
import { AuthorityError } from '../../src/shared/errors.js';
import { silentLogger } from '../../src/shared/logger.js';
import { captureLogger } from '../support/capture-logger.js';

const pairs = {
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  EdDSA: generateKeyPairSync('ed25519'),
  RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
};

function verifies(alg: SigningAlgorithm, publicKey: KeyObject, input: string, signature: string): boolean {
  const data = Buffer.from(input);
  const sig = Buffer.from(signature, 'base64url');
  if (alg === 'EdDSA') return verify(null, data, publicKey, sig);
  return verify('sha256', data, alg === 'ES256' ? { key: publicKey, dsaEncoding: 'ieee-p1363' } : publicKey, sig);
}

/** Fault injection: the thread dies as an out-of-memory error would end it. */
const killThread = (signer: SigningWorker) => (signer as unknown as { thread: { worker: Worker } }).thread.worker.terminate();

let signer: SigningWorker;
afterEach(() => signer?.close());

describe('SigningWorker', () => {
  it.each(['ES256', 'EdDSA', 'RS256'] as const)('signs %s: every signature of a turn verifies for its own input', async (alg) => {
    signer = new SigningWorker(silentLogger);
    const inputs = Array.from({ length: alg === 'RS256' ? 20 : 200 }, (_, i) => `eyJhbGciOi.${'x'.repeat(i % 7)}${i}`);
    const signatures = await Promise.all(inputs.map((input) => signer.sign(`kid-${alg}`, alg, pairs[alg].privateKey, input)));
    signatures.forEach((signature, i) => expect(verifies(alg, pairs[alg].publicKey, inputs[i]!, signature)).toBe(true));
    expect(verifies(alg, pairs[alg].publicKey, inputs[1]!, signatures[0]!)).toBe(false);
  });

  it('signs with each key by its kid, a new kid taught to the running thread', async () => {
    signer = new SigningWorker(silentLogger);
    const first = await signer.sign('a', 'ES256', pairs.ES256.privateKey, 'one.two');
    const [ed, es] = await Promise.all([signer.sign('b', 'EdDSA', pairs.EdDSA.privateKey, 'three.four'), signer.sign('a', 'ES256', pairs.ES256.privateKey, 'five.six')]);
    expect(verifies('ES256', pairs.ES256.publicKey, 'one.two', first)).toBe(true);
    expect(verifies('EdDSA', pairs.EdDSA.publicKey, 'three.four', ed)).toBe(true);
    expect(verifies('ES256', pairs.ES256.publicKey, 'five.six', es)).toBe(true);
  });

  it('fails only the job whose key cannot make the signature', async () => {
    signer = new SigningWorker(silentLogger);
    const results = await Promise.allSettled([
      signer.sign('ok', 'ES256', pairs.ES256.privateKey, 'a.b'),
      signer.sign('wrong', 'ES256', pairs.EdDSA.privateKey, 'c.d'),
      signer.sign('ok', 'ES256', pairs.ES256.privateKey, 'e.f'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const refused = (results[1] as PromiseRejectedResult).reason as AuthorityError;
    expect(refused).toBeInstanceOf(AuthorityError);
    expect([refused.code, refused.message]).toEqual(['internal', 'the access token could not be signed']);
  });

  it('fails what a lost thread owed, says so, and signs again on a new thread that is taught the keys', async () => {
    const log = captureLogger();
    signer = new SigningWorker(log.logger);
    await signer.sign('k', 'ES256', pairs.ES256.privateKey, 'warm.up');
    // ~0.25 s of RSA signatures: still being made when the thread dies.
    const owed = Promise.allSettled(Array.from({ length: 1000 }, (_, i) => signer.sign('rsa', 'RS256', pairs.RS256.privateKey, `slow.${i}`)));
    await new Promise((r) => setImmediate(r)); // the batch is on the thread now
    await killThread(signer);
    // The thread answers a batch whole, so none of it arrived; the callers may retry.
    for (const r of await owed) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'unavailable', message: 'signing was interrupted; retry' });
    }
    expect(log.messages('error')).toEqual(['signing thread lost; the next signature starts another']);
    const again = await signer.sign('k', 'ES256', pairs.ES256.privateKey, 'after.loss');
    expect(verifies('ES256', pairs.ES256.publicKey, 'after.loss', again)).toBe(true);
  });

  it('refuses signatures owed at close, and any asked for after it', async () => {
    signer = new SigningWorker(silentLogger);
    const sent = signer.sign('k', 'RS256', pairs.RS256.privateKey, 'on.the.thread');
    await new Promise((r) => setImmediate(r));
    const queued = signer.sign('k', 'RS256', pairs.RS256.privateKey, 'not.yet.sent');
    const shuttingDown = { code: 'unavailable', message: 'the authority is shutting down' };
    const refused = [expect(sent).rejects.toMatchObject(shuttingDown), expect(queued).rejects.toMatchObject(shuttingDown)];
    await signer.close();
    await Promise.all(refused);
    await expect(signer.sign('k', 'ES256', pairs.ES256.privateKey, 'c.d')).rejects.toMatchObject(shuttingDown);
  });

  it('holds the process open while a signature is owed, and not after', () => {
    // Nothing else keeps this child alive: it must print the signature, then exit on its own.
    const program = `
      import { generateKeyPairSync } from "node:crypto";
      import { SigningWorker } from ${JSON.stringify(new URL('../../src/authority/signing-worker.ts', import.meta.url).href)};
      import { silentLogger } from ${JSON.stringify(new URL('../../src/shared/logger.ts', import.meta.url).href)};
      new SigningWorker(silentLogger).sign("k", "ES256", generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey, "a.b").then((s) => console.log(s.length));
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], { encoding: 'utf8', timeout: 15_000 });
    expect(child.error).toBeUndefined(); // a timeout: the idle thread kept it alive
    expect(child.stdout.trim()).toBe('86'); // 64 bytes (r||s) in base64url
    expect(child.status).toBe(0);
  });
});
