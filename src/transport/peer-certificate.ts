import type { PeerCertificate } from "node:tls";
import type { ClientCertificate } from "./call-context.js";

/** The identifying names of a peer certificate Node's TLS layer has already verified. */
export function clientCertificateOf(peer: PeerCertificate): ClientCertificate {
  // Node gives an array when the subject repeats CN; which one is "the" name is
  // ambiguous, so such a certificate is not identified by CN at all.
  const cn: unknown = peer.subject?.CN;
  return { commonName: typeof cn === "string" && cn ? cn : undefined, altNames: altNames(peer.subjectaltname ?? "") };
}

// One entry of Node's subjectaltname text: `KIND:value`, entries joined by ", ".
// Node writes a value holding a comma, quote or control character as a JSON
// string, so "URI:a, DNS:b" inside one URI cannot pass for a second entry.
const ENTRY = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,"]*)(?:, |$)/y;

function altNames(text: string): string[] {
  const names: string[] = [];
  const entry = new RegExp(ENTRY);
  while (entry.lastIndex < text.length) {
    const m = entry.exec(text);
    // Text we cannot read is not trusted in part: no SAN identifies the caller.
    if (!m) return [];
    const kind = m[1]!;
    if (kind !== "DNS" && kind !== "URI") continue;
    let value = m[2]!;
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        return [];
      }
    }
    names.push(`${kind}:${value}`);
  }
  return names;
}
