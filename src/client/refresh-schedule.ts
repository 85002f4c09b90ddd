/**
 * When to refresh a token that expires at `expiresAt` (both local epoch ms):
 * `expiresAt − lead ± jitter`, where `lead` is the margin, or half the remaining
 * lifetime for tokens shorter than twice the margin (so a short token is not
 * refreshed in a loop), and the jitter never exceeds half the lead (so it never
 * lands after expiry). The jitter spreads the refreshes of many clients that got
 * their tokens at the same moment (after an outage, say).
 *
 * @param random a number in [0, 1), as Math.random returns.
 */
export function plannedRefreshAt(now: number, expiresAt: number, marginMs: number, jitterMs: number, random: number): number {
  const remaining = expiresAt - now;
  if (remaining <= 0) return now;
  const lead = Math.min(marginMs, remaining / 2);
  const spread = Math.min(jitterMs, lead / 2);
  return Math.round(expiresAt - lead + (random * 2 - 1) * spread);
}

/**
 * Exponential backoff with jitter: attempt 0 waits `initialMs`·[0.5, 1), doubling per
 * attempt up to `maxMs`·[0.5, 1). Half-jitter keeps a floor, so a fleet of clients that
 * lost the authority together neither retries in lockstep nor hammers it.
 */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling * (0.5 + random / 2));
}
