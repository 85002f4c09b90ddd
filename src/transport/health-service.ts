import { create } from "@bufbuild/protobuf";
import { HealthCheckResponse_ServingStatus as ServingStatus, HealthCheckResponseSchema, type HealthCheckRequest } from "../gen/grpc/health/v1/health_pb.js";
import { AuthorityError } from "../shared/errors.js";
import type { UnaryHandler } from "./call-context.js";

/**
 * grpc.health.v1 for a server: "" is the server as a whole, plus one entry per
 * service it serves. Kubernetes gRPC probes and grpc-health-probe call Check.
 */
export class HealthStatus {
  private readonly serving = new Map<string, boolean>();

  constructor(services: string[]) {
    for (const s of ["", ...services]) this.serving.set(s, false);
  }

  /** Marks the server and all its services serving or not. */
  setAll(serving: boolean): void {
    for (const s of this.serving.keys()) this.serving.set(s, serving);
  }

  isServing(service = ""): boolean {
    return this.serving.get(service) === true;
  }

  handlers(): Record<string, UnaryHandler> {
    return {
      check: async (req: HealthCheckRequest) => {
        const serving = this.serving.get(req.service);
        if (serving === undefined) throw new AuthorityError("not_found", `unknown service "${req.service.slice(0, 100)}"`);
        return create(HealthCheckResponseSchema, { status: serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING });
      },
    };
  }
}
