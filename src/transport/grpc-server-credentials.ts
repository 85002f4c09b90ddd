import * as grpc from "@grpc/grpc-js";
import type { TlsConfig } from "../config/config.js";

type CertificateProvider = grpc.experimental.CertificateProvider;

/**
 * Credentials of the grpc-js port: plaintext, TLS, or TLS that also asks for a
 * client certificate. A client certificate is optional: one that verifies
 * against the client CA can identify the caller, a connection without one (or
 * with one that does not verify) is still served and authenticated by its
 * `authorization` header.
 */
export function grpcServerCredentials(tls: TlsConfig | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const identity = { certificate: tls.certChain, privateKey: tls.privateKey };
  if (!tls.clientCa) return grpc.ServerCredentials.createSsl(null, [{ cert_chain: identity.certificate, private_key: identity.privateKey }], false);
  // createSsl(ca, pairs, true) leaves Node's rejectUnauthorized on, which makes
  // the certificate mandatory and turns away API-key and user-token callers.
  // These credentials request and verify it (requestCert) without requiring it;
  // grpc-js then shows handlers a peer certificate only when it verified.
  // One provider serves as both CA and identity provider because grpc-js 1.14's
  // declared parameter order differs from the order it uses.
  const provider = staticProvider(tls.clientCa, identity);
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

/** Files were read at start; nothing is watched or reloaded. */
function staticProvider(caCertificate: Buffer, identity: { certificate: Buffer; privateKey: Buffer }): CertificateProvider {
  // grpc-js adds its listeners before the watcher they feed, so updates must
  // arrive asynchronously, as its own file-watching provider delivers them.
  return {
    addCaCertificateListener: (listener) => process.nextTick(listener, { caCertificate }),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (listener) => process.nextTick(listener, identity),
    removeIdentityCertificateListener: () => {},
  };
}
