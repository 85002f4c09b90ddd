// The deployment kit (deploy/), checked without Docker or a cluster: every file
// parses; every variable the compose file and the manifests set is a key the
// program reads, and the configuration each container gets actually loads;
// ports, probes and URLs agree with the ports that configuration listens on;
// the Dockerfiles run what the build produces, as a non-root user; promtool
// accepts the alert rules and their unit tests pass.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEFAULTS, loadConfig, loadSidecarConfig, type Config, type SidecarConfig } from '../../src/config/config.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const KNOWN_KEYS = new Set([...Object.keys(DEFAULTS), 'SA_CONFIG_FILE']);
/** A valid key-encryption key in place of the templates' placeholders. */
const TEST_KEK = Buffer.alloc(32, 7).toString('base64');

const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** Every document of a YAML file, as plain data; fails on any parse error or warning. */
function yamlDocs(path: string): any[] {
  const docs = parseAllDocuments(read(path), { merge: true });
  if (!Array.isArray(docs)) return [];
  for (const doc of docs) {
    expect([...doc.errors, ...doc.warnings].map((e) => e.message), path).toEqual([]);
  }
  return docs.map((doc) => doc.toJS()).filter((d) => d !== null);
}

/** KEY=VALUE lines of an env file; comments and blank lines skipped. */
function envFile(path: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of read(path).split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
    else expect(line.trim() === '' || line.trim().startsWith('#'), `${path}: ${line}`).toBe(true);
  }
  return env;
}

/** The variables deploy/sample-service/server.mjs reads. */
const SAMPLE_KEYS = new Set([...read('deploy/sample-service/server.mjs').matchAll(/process\.env\.([A-Z0-9_]+)/g)].map((m) => m[1]!));

const portOf = (url: string) => Number(new URL(url).port || (url.startsWith('https:') ? 443 : 80));

describe('deploy/: every file parses', () => {
  it('every YAML and JSON file', () => {
    const files = filesUnder(DEPLOY);
    const yamls = files.filter((f) => /\.ya?ml$/.test(f));
    const jsons = files.filter((f) => f.endsWith('.json'));
    expect(yamls.length).toBeGreaterThanOrEqual(10);
    expect(jsons.length).toBeGreaterThanOrEqual(1);
    for (const f of yamls) expect(yamlDocs(relative(ROOT, f)).length, f).toBeGreaterThan(0);
    for (const f of jsons) expect(() => JSON.parse(readFileSync(f, 'utf8')), f).not.toThrow();
  });
});

describe('deploy/docker-compose.yml', () => {
  const compose = yamlDocs('deploy/docker-compose.yml')[0];
  const services: Record<string, any> = compose.services;
  const secrets = envFile('deploy/authority.env.example');
  const envOf = (name: string): Record<string, string> => ({ ...(services[name].environment ?? {}) });
  const authorities = Object.keys(services).filter((n) => services[n].image === 'session-authority:local' && services[n].command?.[0] === 'serve');

  it('Redis keeps an append-only file on a volume; NATS runs JetStream on a volume; both have healthchecks', () => {
    const redis = services.redis;
    expect(redis.command.join(' ')).toMatch(/--appendonly yes/);
    expect(redis.volumes).toEqual(['redis-data:/data']);
    const nats = services.nats;
    expect(nats.command).toContain('--jetstream');
    expect(nats.command[nats.command.indexOf('--store_dir') + 1]).toBe('/data');
    expect(nats.volumes).toEqual(['nats-data:/data']);
    expect(Object.keys(compose.volumes).sort()).toEqual(['nats-data', 'redis-data']);
    for (const name of ['redis', 'nats', 'sidecar']) expect(services[name].healthcheck?.test, name).toBeDefined();
  });

  it('two authority replicas share Redis, NATS and the secrets file, and answer to one name', () => {
    expect(authorities.sort()).toEqual(['authority-1', 'authority-2']);
    for (const name of authorities) {
      const s = services[name];
      expect(s.env_file).toBe('authority.env');
      expect(envOf(name)).toMatchObject({ REDIS_URL: 'redis://redis:6379', NATS_URL: 'nats://nats:4222' });
      expect(s.networks.default.aliases).toContain('authority');
      expect(s.depends_on).toMatchObject({ redis: { condition: 'service_healthy' }, nats: { condition: 'service_healthy' } });
      expect(s.build).toEqual({ context: '..', dockerfile: 'deploy/Dockerfile' });
    }
    // The secrets file's template names the key-encryption key, and ships no value for it.
    expect(secrets).toHaveProperty('SA_KEY_ENCRYPTION_KEY', '');
    expect(read('.gitignore')).toMatch(/^deploy\/authority\.env$/m);
  });

  it('every variable it sets is one the program reads, and each configuration loads', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.image === 'session-authority:local') {
        const env = { ...(s.env_file ? secrets : {}), ...envOf(name) };
        for (const key of Object.keys(env)) expect(KNOWN_KEYS, `${name}: ${key}`).toContain(key);
        if (s.command[0] === 'serve') expect(() => loadConfig({ ...env, SA_KEY_ENCRYPTION_KEY: TEST_KEK }), name).not.toThrow();
        else expect(() => loadSidecarConfig(env), name).not.toThrow();
      } else if (name === 'sample-service') {
        for (const key of Object.keys(envOf(name))) expect(SAMPLE_KEYS, `${name}: ${key}`).toContain(key);
      } else {
        expect(['redis', 'nats', 'prometheus', 'grafana'], `${name} is a third-party image`).toContain(name);
      }
    }
  });

  it('published ports, healthchecks and URLs match where each program listens', () => {
    for (const name of authorities) {
      const config: Config = loadConfig({ ...secrets, ...envOf(name), SA_KEY_ENCRYPTION_KEY: TEST_KEK });
      const containerPorts = services[name].ports.map((p: string) => Number(p.split(':')[1]));
      expect(containerPorts.sort(), name).toEqual([config.grpcPort, config.httpPort].sort());
    }
    const sidecar: SidecarConfig = loadSidecarConfig(envOf('sidecar'));
    expect(services.sidecar.command).toEqual(['sidecar']);
    expect(services.sidecar.healthcheck.test.join(' ')).toContain(`http://127.0.0.1:${sidecar.httpPort}/readyz`);
    // The sidecar asks the authorities' shared name on their HTTP port.
    const authorityConfig = loadConfig({ ...secrets, ...envOf('authority-1'), SA_KEY_ENCRYPTION_KEY: TEST_KEK });
    expect(new URL(sidecar.authorityUrl).hostname).toBe('authority');
    expect(portOf(sidecar.authorityUrl)).toBe(authorityConfig.httpPort);
    expect(new URL(sidecar.natsUrl).hostname).toBe('nats');
    // The sample service shares the sidecar's network namespace and calls it on loopback.
    const sample = envOf('sample-service');
    expect(services['sample-service'].network_mode).toBe('service:sidecar');
    expect(new URL(sample.SIDECAR_URL!).hostname).toBe('127.0.0.1');
    expect(portOf(sample.SIDECAR_URL!)).toBe(sidecar.httpPort);
    expect(services.sidecar.ports).toEqual([`${sample.SAMPLE_PORT}:${sample.SAMPLE_PORT}`]);
    // Prometheus scrapes the HTTP ports.
    const prometheus = yamlDocs('deploy/prometheus/prometheus.yml')[0];
    const targets = prometheus.scrape_configs.flatMap((c: any) => c.static_configs.flatMap((s: any) => s.targets));
    expect(targets.sort()).toEqual([...authorities.map((a) => `${a}:${authorityConfig.httpPort}`), `sidecar:${sidecar.httpPort}`].sort());
    expect(prometheus.rule_files).toEqual(['alerts.yml']);
  });
});

describe('deploy/k8s', () => {
  const kustomization = yamlDocs('deploy/k8s/kustomization.yaml')[0];
  const resources: any[] = [...kustomization.resources, 'monitoring.yaml', 'secret.example.yaml'].flatMap((f: string) => yamlDocs(`deploy/k8s/${f}`));
  const find = (kind: string, name: string) => {
    const found = resources.find((r) => r.kind === kind && r.metadata.name === name);
    expect(found, `${kind}/${name}`).toBeDefined();
    return found;
  };
  const authority = find('Deployment', 'session-authority');
  const authorityPod = authority.spec.template;
  const authorityContainer = authorityPod.spec.containers[0];
  const configMap = find('ConfigMap', 'session-authority');
  const secret = find('Secret', 'session-authority');
  const sample = find('Deployment', 'sample-service');
  const container = (name: string) => sample.spec.template.spec.containers.find((c: any) => c.name === name);
  const envList = (c: any) => Object.fromEntries((c.env ?? []).map((e: any) => [e.name, e.value]));
  const authorityEnv = () => ({ ...configMap.data, ...secret.stringData, ...envList(authorityContainer) });
  /** A probe's or port reference's number: a named port is looked up in the container. */
  const portNumber = (c: any, port: number | string) => (typeof port === 'number' ? port : c.ports.find((p: any) => p.name === port)?.containerPort);

  it('the kustomization lists files that exist; every object has an apiVersion, a kind and a name', () => {
    for (const f of kustomization.resources) expect(existsSync(join(DEPLOY, 'k8s', f)), f).toBe(true);
    for (const r of resources) expect([typeof r.apiVersion, typeof r.kind, typeof r.metadata?.name]).toEqual(['string', 'string', 'string']);
    expect(resources.map((r) => r.kind).sort()).toEqual(
      ['ConfigMap', 'Deployment', 'Deployment', 'Namespace', 'PodDisruptionBudget', 'PodMonitor', 'Secret', 'Service', 'Service', 'Service', 'ServiceMonitor'].sort(),
    );
  });

  it('the authority: 2+ replicas, non-root and read-only, with resources and native gRPC health probes on its gRPC port', () => {
    const config = loadConfig({ ...authorityEnv(), SA_KEY_ENCRYPTION_KEY: TEST_KEK });
    expect(authority.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(authorityContainer.args).toEqual(['serve']);
    expect(authorityPod.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    expect(authorityContainer.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(authorityContainer.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(authorityContainer.resources.limits.memory).toBeDefined();
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      expect(authorityContainer[probe].grpc, probe).toEqual({ port: config.grpcPort });
    }
    expect(portNumber(authorityContainer, 'grpc')).toBe(config.grpcPort);
    expect(portNumber(authorityContainer, 'http')).toBe(config.httpPort);
    expect(config.host).toBe('0.0.0.0');
    expect(Number(authorityPod.metadata.annotations['prometheus.io/port'])).toBe(config.httpPort);
    expect(authorityContainer.envFrom).toEqual([{ configMapRef: { name: configMap.metadata.name } }, { secretRef: { name: secret.metadata.name } }]);
  });

  it('Services, the PDB and the monitors select the authority pods, on ports the pod names', () => {
    const labels = authorityPod.metadata.labels;
    expect(authority.spec.selector.matchLabels).toEqual(labels);
    const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
    const services = resources.filter((r) => r.kind === 'Service' && r.metadata.name.startsWith('session-authority'));
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['session-authority', 'session-authority-headless']);
    for (const s of services) {
      expect(selects(s.spec.selector), s.metadata.name).toBe(true);
      for (const p of s.spec.ports) expect(portNumber(authorityContainer, p.targetPort), `${s.metadata.name} ${p.name}`).toBe(p.port);
    }
    const pdb = find('PodDisruptionBudget', 'session-authority');
    expect(selects(pdb.spec.selector.matchLabels)).toBe(true);
    expect(pdb.spec.minAvailable).toBeLessThan(authority.spec.replicas);
    const monitor = find('ServiceMonitor', 'session-authority');
    expect(selects(monitor.spec.selector.matchLabels)).toBe(true);
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'http', path: '/metrics' })]);
    const podMonitor = find('PodMonitor', 'session-verifier');
    expect(portNumber(container('session-verifier'), podMonitor.spec.podMetricsEndpoints[0].port)).toBeDefined();
  });

  it('every variable set is a key the program reads; the Secret is a template without a real key', () => {
    for (const key of Object.keys(authorityEnv())) expect(KNOWN_KEYS, key).toContain(key);
    for (const key of Object.keys(envList(container('session-verifier')))) expect(KNOWN_KEYS, key).toContain(key);
    for (const key of Object.keys(envList(container('sample-service')))) expect(SAMPLE_KEYS, key).toContain(key);
    // The placeholder is no usable key: applying the template unchanged fails loudly.
    expect(() => loadConfig(authorityEnv())).toThrow(/SA_KEY_ENCRYPTION_KEY/);
  });

  it('the sample pod: its sidecar is `session-authority sidecar`, probed on grpc.health.v1, sized for 100k revocations, on the authority and NATS', () => {
    const verifier = container('session-verifier');
    const config = loadSidecarConfig(envList(verifier));
    expect(verifier.image).toBe(authorityContainer.image);
    expect(verifier.args).toEqual(['sidecar']);
    expect(config.host).toBe('0.0.0.0'); // kubelet probes the pod IP
    expect(verifier.startupProbe.grpc).toEqual({ port: config.grpcPort });
    expect(verifier.readinessProbe.grpc).toEqual({ port: config.grpcPort });
    expect(verifier.livenessProbe.httpGet.path).toBe('/healthz');
    expect(portNumber(verifier, verifier.livenessProbe.httpGet.port)).toBe(config.httpPort);
    expect(portNumber(verifier, 'verifier-grpc')).toBe(config.grpcPort);
    expect(Number(sample.spec.template.metadata.annotations['prometheus.io/port'])).toBe(config.httpPort);
    // ~100 MB RSS measured with 100k revocations: the limit leaves room above that.
    const mib = (q: string) => Number(/^(\d+)Mi$/.exec(q)![1]);
    expect(mib(verifier.resources.requests.memory)).toBeGreaterThanOrEqual(100);
    expect(mib(verifier.resources.limits.memory)).toBeGreaterThanOrEqual(2 * 100);
    expect(verifier.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    // The authority's Service and HTTP port; the issuer and audience the authority signs with.
    const authorityConfig = loadConfig({ ...authorityEnv(), SA_KEY_ENCRYPTION_KEY: TEST_KEK });
    expect(new URL(config.authorityUrl).hostname.split('.')[0]).toBe('session-authority');
    expect(portOf(config.authorityUrl)).toBe(authorityConfig.httpPort);
    expect({ issuer: config.issuer, audience: config.audience }).toEqual({ issuer: authorityConfig.issuer, audience: authorityConfig.audience });
    expect(new URL(config.natsUrl).hostname.split('.')[0]).toBe(new URL(authorityConfig.natsUrl).hostname);
    // The service calls its sidecar on loopback, on the sidecar's HTTP port.
    const app = container('sample-service');
    const appEnv = envList(app);
    expect(new URL(appEnv.SIDECAR_URL).hostname).toBe('127.0.0.1');
    expect(portOf(appEnv.SIDECAR_URL)).toBe(config.httpPort);
    expect(portNumber(app, 'http')).toBe(Number(appEnv.SAMPLE_PORT));
    const service = find('Service', 'sample-service');
    expect(portNumber(app, service.spec.ports[0].targetPort)).toBe(Number(appEnv.SAMPLE_PORT));
    expect(sample.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true });
  });
});

/** The instructions of a Dockerfile, continuation lines joined, comments dropped, split into stages. */
function dockerStages(path: string): { from: string; instructions: { op: string; args: string }[] }[] {
  const text = read(path).replace(/\\\n/g, ' ');
  const stages: { from: string; instructions: { op: string; args: string }[] }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m || line.trim().startsWith('#')) continue;
    const [, op, args] = m;
    if (op === 'FROM') stages.push({ from: args!.trim(), instructions: [] });
    else stages.at(-1)!.instructions.push({ op: op!, args: args!.trim() });
  }
  return stages;
}

const execForm = (args: string): string[] => JSON.parse(args);

describe('Dockerfiles', () => {
  it('deploy/Dockerfile: multi-stage, production dependencies only, runs the compiled CLI as a non-root user', () => {
    const stages = dockerStages('deploy/Dockerfile');
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const final = stages.at(-1)!;
    const ops = (stage: typeof final, op: string) => stage.instructions.filter((i) => i.op === op).map((i) => i.args);
    // Not root in the image that runs.
    const user = ops(final, 'USER').at(-1);
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user!.split(':')[0]);
    // The runtime's node_modules come from `npm ci --omit=dev`, its code from the build stage's `npm run build`.
    const stageNamed = (name: string) => stages.find((s) => s.from.endsWith(` AS ${name}`) || s.from.endsWith(` as ${name}`));
    const copies = ops(final, 'COPY');
    const nodeModulesFrom = /--from=(\S+) \/app\/node_modules /.exec(copies.find((c) => c.includes('node_modules'))!)![1]!;
    expect(ops(stageNamed(nodeModulesFrom)!, 'RUN').join(' ')).toMatch(/npm ci --omit=dev/);
    const distFrom = /--from=(\S+) \/app\/dist /.exec(copies.find((c) => c.includes('/app/dist'))!)![1]!;
    expect(ops(stageNamed(distFrom)!, 'RUN').join(' ')).toMatch(/npm run build/);
    // ENTRYPOINT + CMD: node on the file the build emits for src/cli/main.ts.
    const command = [...execForm(ops(final, 'ENTRYPOINT').at(-1)!), ...execForm(ops(final, 'CMD').at(-1)!)];
    expect(command[0]).toBe('node');
    const build = JSON.parse(read('tsconfig.build.json')).compilerOptions;
    const script = command[1]!;
    expect(script.startsWith(`${build.outDir}/`)).toBe(true);
    expect(existsSync(join(ROOT, build.rootDir, script.slice(build.outDir.length + 1).replace(/\.js$/, '.ts')))).toBe(true);
    expect(JSON.parse(read('package.json')).scripts.build).toMatch(/tsc -p tsconfig\.build\.json/);
    expect(command[2]).toBe('serve');
    // What the build stage copies exists, and .dockerignore keeps it in the context.
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const stage of stages) {
      for (const copy of ops(stage, 'COPY').filter((c) => !c.startsWith('--from'))) {
        for (const source of copy.split(/\s+/).slice(0, -1)) {
          expect(existsSync(join(ROOT, source)), source).toBe(true);
          expect(ignored, source).not.toContain(source.split('/')[0]);
        }
      }
    }
    // Ports and the health check are the configuration's defaults.
    const defaults = loadConfig({});
    expect(ops(final, 'EXPOSE').join(' ').split(/\s+/).map(Number).sort()).toEqual([defaults.grpcPort, defaults.httpPort].sort());
    expect(ops(final, 'HEALTHCHECK').join(' ')).toContain(`process.env.SA_HTTP_PORT || ${defaults.httpPort}) + '/healthz'`);
    expect(ops(final, 'ENV').join(' ')).toMatch(/SA_HOST=0\.0\.0\.0/);
  });

  it('deploy/sample-service/Dockerfile runs server.mjs as a non-root user', () => {
    const [stage] = dockerStages('deploy/sample-service/Dockerfile');
    const user = stage!.instructions.filter((i) => i.op === 'USER').at(-1)?.args;
    expect(user).toBe('node');
    const cmd = execForm(stage!.instructions.find((i) => i.op === 'CMD')!.args);
    expect(cmd).toEqual(['node', 'server.mjs']);
    expect(existsSync(join(DEPLOY, 'sample-service', cmd[1]!))).toBe(true);
  });
});

const hasPromtool = spawnSync('promtool', ['--version']).status === 0;

describe.skipIf(!hasPromtool)('deploy/prometheus/alerts.yml with promtool', () => {
  const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: join(DEPLOY, 'prometheus'), encoding: 'utf8' });

  it('is valid, and every alert has a severity, a summary and a description', () => {
    const check = promtool('check', 'rules', 'alerts.yml');
    expect(check.stdout + check.stderr).toMatch(/SUCCESS/);
    expect(check.status).toBe(0);
    const rules = yamlDocs('deploy/prometheus/alerts.yml')[0].groups.flatMap((g: any) => g.rules);
    const names = rules.map((r: any) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(['critical', 'warning', 'info'], r.alert).toContain(r.labels.severity);
      expect(r.annotations, r.alert).toMatchObject({ summary: expect.any(String), description: expect.any(String) });
    }
  });

  it('its unit tests pass, and every alert has one that fires', () => {
    const run = promtool('test', 'rules', 'alerts.test.yml');
    expect(run.stdout + run.stderr).toMatch(/SUCCESS/);
    expect(run.status).toBe(0);
    const alerts = yamlDocs('deploy/prometheus/alerts.yml')[0].groups.flatMap((g: any) => g.rules.map((r: any) => r.alert));
    const fired = new Set(
      yamlDocs('deploy/prometheus/alerts.test.yml')[0].tests.flatMap((t: any) => t.alert_rule_test.filter((a: any) => a.exp_alerts.length > 0).map((a: any) => a.alertname)),
    );
    expect(alerts.filter((a: string) => !fired.has(a))).toEqual([]);
  });
});
