import { toBinary, type DescExtension, type DescFile, type DescService } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";

/**
 * The protobuf files behind a set of services, for server reflection: every
 * file they need (their own and, transitively, what those import, e.g.
 * google/protobuf/timestamp.proto) by path, and every symbol those files
 * declare by its full name. The descriptors are the ones protobuf-es generated,
 * so what reflection shows is exactly what the server decodes and encodes.
 * Built once at start; lookups are map reads.
 */
export class DescriptorIndex {
  /** Full names of the services, in the order given. */
  readonly services: string[];
  private readonly files = new Map<string, DescFile>();
  private readonly symbols = new Map<string, DescFile>();
  private readonly extensions: DescExtension[] = [];
  private readonly serialized = new Map<DescFile, Uint8Array>();

  constructor(services: DescService[]) {
    this.services = services.map((s) => s.typeName);
    for (const service of services) this.addFile(service.file);
  }

  /**
   * The file at `path` and everything it imports, transitively, each as a
   * serialized FileDescriptorProto, the file itself first. Sending the imports
   * along saves a client one round trip per import.
   */
  fileByPath(path: string): Uint8Array[] | undefined {
    const file = this.files.get(path);
    return file && this.withDependencies(file);
  }

  /** The file declaring `symbol` (a package-qualified service, method, message, field, enum, enum value or extension), with its imports. */
  fileContainingSymbol(symbol: string): Uint8Array[] | undefined {
    const file = this.symbols.get(symbol);
    return file && this.withDependencies(file);
  }

  /** The file declaring extension `number` of message `type`, with its imports. */
  fileContainingExtension(type: string, number: number): Uint8Array[] | undefined {
    const extension = this.extensions.find((e) => e.extendee.typeName === type && e.number === number);
    return extension && this.withDependencies(extension.file);
  }

  /** The extension numbers known for message `type` (none is an empty list); undefined if there is no such message. */
  extensionNumbersOf(type: string): number[] | undefined {
    if (!this.symbols.has(type)) return undefined;
    return this.extensions.filter((e) => e.extendee.typeName === type).map((e) => e.number);
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.proto.name)) return;
    this.files.set(file.proto.name, file);
    for (const type of nestedTypes(file)) {
      this.symbols.set(type.typeName, file);
      switch (type.kind) {
        case "service":
          for (const method of type.methods) this.symbols.set(`${type.typeName}.${method.name}`, file);
          break;
        case "message":
          for (const field of type.fields) this.symbols.set(`${type.typeName}.${field.name}`, file);
          for (const oneof of type.oneofs) this.symbols.set(`${type.typeName}.${oneof.name}`, file);
          break;
        case "enum": {
          // Enum values are scoped like C++ enumerators: siblings of their enum, not children.
          const scope = type.typeName.slice(0, type.typeName.length - type.name.length);
          for (const value of type.values) this.symbols.set(`${scope}${value.name}`, file);
          break;
        }
        case "extension":
          this.extensions.push(type);
          break;
      }
    }
    for (const dependency of file.dependencies) this.addFile(dependency);
  }

  private withDependencies(file: DescFile): Uint8Array[] {
    const out: DescFile[] = [];
    const visit = (f: DescFile) => {
      if (out.includes(f)) return;
      out.push(f);
      f.dependencies.forEach(visit);
    };
    visit(file);
    return out.map((f) => this.bytesOf(f));
  }

  private bytesOf(file: DescFile): Uint8Array {
    let bytes = this.serialized.get(file);
    if (!bytes) this.serialized.set(file, (bytes = toBinary(FileDescriptorProtoSchema, file.proto)));
    return bytes;
  }
}
