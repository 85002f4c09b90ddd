// Which origins count as the authority's own: https on its host name, plain http
// only on loopback (development); anything else must be listed.
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { CorsPolicy } from '../../src/authority/cors-policy.js';

const request = (origin: string | undefined, host: string) => ({ headers: { origin, host } }) as unknown as IncomingMessage;

describe('CorsPolicy.allows', () => {
  const policy = new CorsPolicy(['https://app.example.com', 'http://legacy.example.com']);

  it('takes requests without an Origin (curl, servers) and listed origins', () => {
    expect(policy.allows(request(undefined, 'auth.example.com'))).toBe(true);
    expect(policy.allows(request('https://app.example.com', 'auth.example.com'))).toBe(true);
    expect(policy.allows(request('http://legacy.example.com', 'auth.example.com'))).toBe(true);
  });

  it('takes its own host over https, and over plain http only on loopback', () => {
    expect(policy.allows(request('https://auth.example.com', 'auth.example.com'))).toBe(true);
    expect(policy.allows(request('http://localhost:8080', 'localhost:8080'))).toBe(true);
    expect(policy.allows(request('http://127.0.0.1:8080', '127.0.0.1:8080'))).toBe(true);
    expect(policy.allows(request('http://[::1]:8080', '[::1]:8080'))).toBe(true);
    // A plain-http page on the same public host name: anyone on the network path could have served it.
    expect(policy.allows(request('http://auth.example.com', 'auth.example.com'))).toBe(false);
  });

  it('refuses other hosts, other ports, lookalikes and garbage', () => {
    expect(policy.allows(request('https://evil.example.com', 'auth.example.com'))).toBe(false);
    expect(policy.allows(request('https://auth.example.com:8443', 'auth.example.com'))).toBe(false);
    expect(policy.allows(request('https://auth.example.com.evil.net', 'auth.example.com'))).toBe(false);
    expect(policy.allows(request('null', 'auth.example.com'))).toBe(false);
    expect(policy.allows(request('not a url', 'auth.example.com'))).toBe(false);
  });
});
