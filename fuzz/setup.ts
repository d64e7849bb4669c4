/**
 * The world before fuzzing: operator tokens minted through the API with the bootstrap
 * admin token, enrollment tokens, and executors registered through the real /register.
 * Also keeps the pool of live executors topped up when the fuzzer revokes some.
 */
import type { Role } from "../shared/wire/operator.ts";
import { sourceAddress } from "./context.ts";
import { serialize, type Header, type HttpResponse } from "./http1.ts";
import type { Material } from "./material.ts";
import { Rng } from "./rng.ts";
import type { Identity, Transport } from "./transport.ts";
import { thumbprint, type World } from "./world.ts";

async function call(t: Transport, world: World, method: string, target: string, opts: { token?: string; body?: unknown; identity?: Identity } = {}): Promise<HttpResponse> {
  const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
  const headers: Header[] = [...(opts.token ? [["authorization", `Bearer ${opts.token}`] as Header] : []), ...(body ? [["content-type", "application/json"] as Header] : [])];
  const bytes = serialize({ method, target, headers, body }, `${world.host}:${world.port}`);
  const out = await t.exchange(opts.identity ?? { key: "setup", localAddress: "127.0.0.1" }, bytes, { head: false, timeoutMs: 30_000 });
  if (out.kind !== "responses" || out.responses.length === 0) throw new Error(`setup: ${method} ${target}: no response (${JSON.stringify(out)})`);
  return out.responses[0]!;
}

function json(res: HttpResponse, what: string, status: number): Record<string, any> {
  if (res.status !== status) throw new Error(`setup: ${what}: ${res.status} ${res.body.toString("utf8").slice(0, 300)}`);
  return JSON.parse(res.body.toString("utf8"));
}

export async function setupWorld(t: Transport, world: World, material: Material, adminToken: string, executors: number): Promise<{ jwksX: string }> {
  world.operatorTokens.push({ id: "bootstrap", token: adminToken, role: "admin", protected: true });
  const who = json(await call(t, world, "GET", "/api/v1/whoami", { token: adminToken }), "whoami", 200);
  world.operatorTokens[0]!.id = who.id;
  const mint = async (role: Role, isProtected: boolean, ttl?: number) => {
    const r = json(await call(t, world, "POST", "/api/v1/tokens", { token: adminToken, body: { name: `fuzz-${role}`, role, ...(ttl ? { ttl_s: ttl } : {}) } }), "mint token", 201);
    world.operatorTokens.push({ id: r.id, token: r.token, role, protected: isProtected, expiresAt: r.expires_at ? Date.parse(r.expires_at) : undefined });
  };
  await mint("operator", true);
  await mint("viewer", true);
  for (const role of ["admin", "operator", "viewer"] as const) await mint(role, false);
  await mint("viewer", false, 2);
  const enroll = async (maxUses: number, ttl: number, isProtected: boolean) => {
    const r = json(await call(t, world, "POST", "/api/v1/enrollment-tokens", { token: adminToken, body: { max_uses: maxUses, ttl_s: ttl } }), "enrollment token", 201);
    world.enrollmentTokens.push({ id: r.id, token: r.token, maxUses, registered: 0, expiresAt: Date.parse(r.expires_at), protected: isProtected });
  };
  await enroll(1_000_000, 365 * 86400, true);
  await enroll(1, 3600, false);
  await enroll(3, 3600, false);
  await enroll(2, 2, false);
  for (let i = 0; i < 10; i++) {
    const r = json(await call(t, world, "POST", "/api/v1/tasks", { token: adminToken, body: { kind: "fuzz.noop", payload: { i }, selector: { fuzz: "1" } } }), "task", 201);
    world.taskIds.push(r.id);
  }
  const jwks = json(await call(t, world, "GET", "/.well-known/jwks.json"), "jwks", 200);
  for (let i = 0; i < executors; i++) await registerExecutor(t, world, material, new Rng(`setup/${i}`));
  return { jwksX: jwks.keys[0].x };
}

/** Registers one executor with the protected enrollment token, from its own source address. */
export async function registerExecutor(t: Transport, world: World, material: Material, rng: Rng): Promise<void> {
  const key = material.csrs[world.executors.size % material.csrs.length]!;
  const token = world.enrollmentTokens.find((x) => x.protected)!;
  const res = await call(t, world, "POST", "/v1/executors/register", {
    body: { enrollment_token: token.token, csr_pem: key.csrPem, name: `fuzz-${world.executors.size}`, labels: { fuzz: "1" }, capacity: 4 },
    identity: { key: "register", localAddress: sourceAddress(rng, true) },
  });
  const reg = json(res, "register", 201);
  token.registered++;
  const certPem: string = reg.certificate_pem;
  world.executors.set(reg.executor_id, {
    id: reg.executor_id, epoch: reg.epoch, jwt: reg.jwt, hmacKey: Buffer.from(reg.hmac_key, "base64url"), certPem, keyPem: key.keyPem,
    identity: { key: `ex:${reg.executor_id}:${thumbprint(certPem)}`, cert: { certPem, keyPem: key.keyPem } },
    staleJwts: [], retiredCerts: [], leases: [], lock: Promise.resolve(), lost: false, spare: false,
  });
}

/** Keeps `target` live executors (one registration at a time) and work queued for them to lease. */
export class Replenisher {
  private running: Promise<void> | undefined;
  private feeding: Promise<void> | undefined;
  private count = 0;
  private pokes = 0;
  constructor(
    private readonly t: Transport,
    private readonly world: World,
    private readonly material: Material,
    private readonly target: number,
    private readonly adminToken: string,
  ) {}

  poke(): void {
    if (this.pokes++ % 50 === 0 && !this.feeding) this.feeding = this.feed().catch(() => undefined).finally(() => (this.feeding = undefined));
    if (this.running || this.world.liveExecutors().length >= this.target) return;
    this.running = registerExecutor(this.t, this.world, this.material, new Rng(`replenish/${this.count++}`))
      .catch(() => undefined)
      .finally(() => (this.running = undefined));
  }

  private async feed(): Promise<void> {
    for (let i = 0; i < 4; i++) {
      const res = await call(this.t, this.world, "POST", "/api/v1/tasks", { token: this.adminToken, body: { kind: "fuzz.noop", payload: { i }, selector: { fuzz: "1" } } });
      if (res.status === 201) this.world.remember(this.world.taskIds, String(JSON.parse(res.body.toString("utf8")).id), 500);
    }
  }

  async settle(): Promise<void> {
    await Promise.all([this.running, this.feeding]);
  }
}
