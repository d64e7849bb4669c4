/**
 * What every store backend must do, stated once. A backend's test file calls
 * `storeContract` with a factory for fresh, empty backends; each one can be opened
 * several times, and handles opened on one backend stand for separate processes
 * (or replicas) sharing its data — the races here run across two of them.
 *
 * Times are synthetic unix ms: every store method takes `now` from its caller.
 */
import { createHash, randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StoreHandle } from "../../controller/store/open-store.ts";
import type { LeaseRequest, NewTask, TaskStore } from "../../controller/store/task-types.ts";
import type { ApiTokenRecord, Store } from "../../controller/store/types.ts";
import type { CaFingerprint, CertThumbprint } from "../../shared/fingerprint.ts";
import type { NewCa, NewJwtKey } from "../../controller/store/trust-types.ts";
import { executorLiveness, notSuspectSince, offlineBefore } from "../../controller/domain/liveness.ts";
/** Stores keep certificate thumbprints opaque; short stand-ins keep these tests readable. */
const tp = (s: string) => s as CertThumbprint;

export interface ContractBackend {
  /** Opens one more handle on this backend's data. */
  open(): Promise<StoreHandle>;
  /** Removes the backend's data once every handle is closed. */
  destroy(): Promise<void>;
}

export const T0 = 1_767_225_600_000;
const MIN = 60_000;

export function storeContract(name: string, freshBackend: () => Promise<ContractBackend>): void {
  describe(`store contract: ${name}`, () => {
    let backend: ContractBackend;
    let handles: StoreHandle[];
    let a: StoreHandle;
    /** A second handle on the same data: another process or replica. */
    const another = async () => {
      const h = await backend.open();
      handles.push(h);
      return h;
    };

    beforeEach(async () => {
      backend = await freshBackend();
      handles = [];
      a = await another();
    });
    afterEach(async () => {
      for (const h of handles) await h.close();
      await backend.destroy();
    });

    describe("enrollment tokens", () => {
      it("a single-use token enrolls exactly one of 8 concurrent executors, across two handles", async () => {
        const b = await another();
        const hash = await token(a.store, { maxUses: 1 });
        const results = await Promise.all(Array.from({ length: 8 }, (_, i) => enroll(i % 2 ? b.store : a.store, hash, `ex_race${i}`)));
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.reason)).toEqual(Array(7).fill("used_up"));
        expect(await a.store.listExecutors()).toHaveLength(1);
        expect((await a.store.listEnrollmentTokens())[0]).toMatchObject({ uses: 1, maxUses: 1 });
      });

      it("a token with max_uses 3 enrolls exactly 3 of 10 concurrent executors", async () => {
        const b = await another();
        const hash = await token(a.store, { maxUses: 3 });
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => enroll(i % 2 ? b.store : a.store, hash, `ex_k${i}`)));
        expect(results.filter((r) => r.ok)).toHaveLength(3);
        expect(await b.store.listExecutors()).toHaveLength(3);
        expect((await b.store.checkEnrollmentToken(hash, T0)).ok).toBe(false);
      });

      it("unknown, expired and revoked tokens are refused with their reason, and nothing is enrolled", async () => {
        const expired = await token(a.store, { expiresAt: T0 });
        const revoked = await token(a.store, { id: "enr_revoked" });
        expect(await a.store.revokeEnrollmentToken("enr_revoked", T0)).toBe(true);
        expect(await a.store.revokeEnrollmentToken("enr_revoked", T0)).toBe(false);
        for (const [hash, reason] of [["nope", "unknown"], [expired, "expired"], [revoked, "revoked"]] as const) {
          expect(await a.store.checkEnrollmentToken(hash, T0)).toEqual({ ok: false, reason });
          expect(await enroll(a.store, hash, "ex_denied")).toEqual({ ok: false, reason });
        }
        expect(await a.store.listExecutors()).toEqual([]);
      });

      it("enrollment stores the executor at epoch 1, ready, seen now, with its token; its HMAC key reads back", async () => {
        const hash = await token(a.store, { id: "enr_one", labels: { zone: "a" } });
        const check = await a.store.checkEnrollmentToken(hash, T0);
        expect(check).toMatchObject({ ok: true, token: { id: "enr_one", labels: { zone: "a" }, uses: 0 } });
        const key = Buffer.alloc(32, 9);
        expect(await enroll(a.store, hash, "ex_one", { labels: { os: "linux" }, capacity: 3, hmacKey: key })).toEqual({ ok: true, tokenId: "enr_one" });
        expect(await a.store.getExecutor("ex_one")).toMatchObject({
          id: "ex_one", labels: { os: "linux" }, capacity: 3, epoch: 1, status: "ready", lastSeenAt: T0, revokedAt: null,
          drain: false, enrollmentTokenId: "enr_one", certFingerprint: tp("fp-ex_one"), prevCertFingerprint: null,
        });
        expect(await a.store.getHmacKeys("ex_one")).toEqual({ current: key, previous: null, previousUntil: null });
        expect((await (await another()).store.getHmacKeys("ex_one"))?.current).toEqual(key);
        expect(await a.store.getHmacKeys("ex_nope")).toBeUndefined();
        expect(await a.store.getExecutor("ex_nope")).toBeUndefined();
        expect(await a.store.getExecutorAuth("ex_nope")).toBeUndefined();
      });
    });

    describe("replay store", () => {
      it("a nonce is accepted once per executor; another executor may use the same nonce", async () => {
        const b = await another();
        expect(await a.store.rememberNonce("ex_a", "n0nce-AAAAAAAAAAAAAAAA", T0 + 10 * MIN)).toBe(true);
        expect(await a.store.rememberNonce("ex_a", "n0nce-AAAAAAAAAAAAAAAA", T0 + 10 * MIN)).toBe(false);
        expect(await b.store.rememberNonce("ex_a", "n0nce-AAAAAAAAAAAAAAAA", T0 + 10 * MIN)).toBe(false);
        expect(await b.store.rememberNonce("ex_b", "n0nce-AAAAAAAAAAAAAAAA", T0 + 10 * MIN)).toBe(true);
      });

      it("one nonce raced through two handles is accepted exactly once", async () => {
        const b = await another();
        const results = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? b : a).store.rememberNonce("ex_a", "raced-nonce-AAAAAAAA", T0 + MIN)));
        expect(results.filter(Boolean)).toHaveLength(1);
      });

      it("is pruned at its expiry, not before, and may then be used again", async () => {
        await a.store.rememberNonce("ex_a", "nonce-expiring-AAAAA", T0 + MIN);
        expect(await a.store.pruneNonces(T0 + MIN - 1)).toBe(0);
        expect(await a.store.rememberNonce("ex_a", "nonce-expiring-AAAAA", T0 + 2 * MIN)).toBe(false);
        expect(await a.store.pruneNonces(T0 + MIN)).toBe(1);
        expect(await a.store.rememberNonce("ex_a", "nonce-expiring-AAAAA", T0 + 2 * MIN)).toBe(true);
      });

      it("survives closing and reopening the store", async () => {
        await a.store.rememberNonce("ex_a", "nonce-durable-AAAAAA", T0 + MIN);
        await a.close();
        handles = handles.filter((h) => h !== a);
        const reopened = await another();
        expect(await reopened.store.rememberNonce("ex_a", "nonce-durable-AAAAAA", T0 + MIN)).toBe(false);
      });
    });

    describe("executors", () => {
      it("bumpEpoch returns the new epoch and the auth state follows; an unknown executor is an error", async () => {
        await executor(a.store, "ex_e");
        expect(await a.store.bumpEpoch("ex_e")).toBe(2);
        expect(await a.store.bumpEpoch("ex_e")).toBe(3);
        expect((await (await another()).store.getExecutorAuth("ex_e"))?.epoch).toBe(3);
        await expect(a.store.bumpEpoch("ex_nope")).rejects.toThrow();
      });

      it("certificate rotation keeps the previous certificate with its grace deadline", async () => {
        await executor(a.store, "ex_c");
        await a.store.rotateCertificate("ex_c", { certFingerprint: tp("fp2"), certIssuedAt: T0 + 1, certExpiresAt: T0 + 2, prevCertGraceUntil: T0 + 5 * MIN });
        expect(await a.store.getExecutorAuth("ex_c")).toEqual({
          id: "ex_c", epoch: 1, certFingerprint: tp("fp2"), prevCertFingerprint: "fp-ex_c", prevCertGraceUntil: T0 + 5 * MIN,
          certIssuedAt: T0 + 1, certExpiresAt: T0 + 2, drain: false, revoked: false, certConfirmed: false, certCaId: null,
        });
        await a.store.rotateCertificate("ex_c", { certFingerprint: tp("fp3"), certIssuedAt: T0 + 3, certExpiresAt: T0 + 4, prevCertGraceUntil: T0 + 9 * MIN });
        expect(await a.store.getExecutorAuth("ex_c")).toMatchObject({ certFingerprint: tp("fp3"), prevCertFingerprint: "fp2", prevCertGraceUntil: T0 + 9 * MIN });
      });

      it("a rotated certificate is unconfirmed until a request is made with it; confirming an old one changes nothing", async () => {
        await executor(a.store, "ex_k");
        expect((await a.store.getExecutorAuth("ex_k"))?.certConfirmed).toBe(true);
        await a.store.rotateCertificate("ex_k", { certFingerprint: tp("k2"), certIssuedAt: T0 + 1, certExpiresAt: T0 + 2, prevCertGraceUntil: T0 + MIN });
        expect((await a.store.getExecutorAuth("ex_k"))?.certConfirmed).toBe(false);
        await a.store.confirmCertificate("ex_k", tp("fp-ex_k"));
        expect((await a.store.getExecutorAuth("ex_k"))?.certConfirmed).toBe(false);
        await a.store.confirmCertificate("ex_k", tp("k2"));
        expect((await (await another()).store.getExecutorAuth("ex_k"))?.certConfirmed).toBe(true);
      });

      it("an HMAC key rotation keeps the previous key with its grace deadline; a second one retires the first", async () => {
        const k1 = Buffer.alloc(32, 1);
        const k2 = Buffer.alloc(32, 2);
        const k3 = Buffer.alloc(32, 3);
        await executor(a.store, "ex_h", { hmacKey: k1 });
        await a.store.rotateHmacKey("ex_h", k2, T0 + 5 * MIN);
        expect(await (await another()).store.getHmacKeys("ex_h")).toEqual({ current: k2, previous: k1, previousUntil: T0 + 5 * MIN });
        await a.store.rotateHmacKey("ex_h", k3, T0 + 9 * MIN);
        expect(await a.store.getHmacKeys("ex_h")).toEqual({ current: k3, previous: k2, previousUntil: T0 + 9 * MIN });
      });

      it("the issuing CA follows certificate rotations", async () => {
        await executor(a.store, "ex_v");
        expect((await a.store.getExecutorAuth("ex_v"))?.certCaId).toBeNull();
        await a.store.rotateCertificate("ex_v", { certFingerprint: tp("v2"), certIssuedAt: T0, certExpiresAt: T0 + 1, prevCertGraceUntil: T0 + MIN, certCaId: "ca_2" });
        expect((await a.store.getExecutorAuth("ex_v"))?.certCaId).toBe("ca_2");
      });

      it("revocation happens once and shows in the auth state of every handle", async () => {
        await executor(a.store, "ex_r");
        expect(await a.store.revokeExecutor("ex_r", T0 + 1)).toBe(true);
        expect(await a.store.revokeExecutor("ex_r", T0 + 2)).toBe(false);
        expect(await a.store.revokeExecutor("ex_nope", T0)).toBe(false);
        expect((await (await another()).store.getExecutorAuth("ex_r"))?.revoked).toBe(true);
        expect((await a.store.getExecutor("ex_r"))?.revokedAt).toBe(T0 + 1);
      });

      it("drain toggles; an unknown executor is false", async () => {
        await executor(a.store, "ex_d");
        expect(await a.store.setDrain("ex_d", true)).toBe(true);
        expect((await a.store.getExecutorAuth("ex_d"))?.drain).toBe(true);
        expect(await a.store.setDrain("ex_d", false)).toBe(true);
        expect((await a.store.getExecutor("ex_d"))?.drain).toBe(false);
        expect(await a.store.setDrain("ex_nope", true)).toBe(false);
      });

      it("a heartbeat records the reported status and the time", async () => {
        await executor(a.store, "ex_h");
        await a.store.recordHeartbeat("ex_h", "draining", T0 + MIN);
        expect(await a.store.getExecutor("ex_h")).toMatchObject({ status: "draining", lastSeenAt: T0 + MIN });
      });

      it("heartbeats made at once apply in order: the last status and time, the bundle version only raised", async () => {
        await executor(a.store, "ex_hh");
        await Promise.all([
          a.store.recordHeartbeat("ex_hh", "ready", T0 + 1, 3), a.store.recordHeartbeat("ex_hh", "draining", T0 + 2, 2),
          a.store.recordHeartbeat("ex_unknown", "ready", T0 + 2),
        ]);
        expect(await a.store.getExecutor("ex_hh")).toMatchObject({ status: "draining", lastSeenAt: T0 + 2 });
        expect((await a.cas.bundleVersions()).find((v) => v.id === "ex_hh")?.version).toBe(3);
      });
    });

    describe("metrics counts (one query per family)", () => {
      it("an empty store counts zero of every executor status, task status and nonce", async () => {
        expect(await a.store.executorCounts({ suspectBefore: T0, offlineBefore: T0 })).toEqual({ ready: 0, draining: 0, suspect: 0, offline: 0, revoked: 0 });
        expect(await a.tasks.taskCounts()).toEqual({ queued: 0, leased: 0, succeeded: 0, failed: 0, cancelled: 0 });
        expect(await a.store.nonceCount()).toBe(0);
      });

      it("executors are counted by the liveness the API reports, boundaries included, through any handle", async () => {
        // Heartbeat interval 1 min, now T0 + 8 min: suspect when seen before T0 + 5 min, offline before T0 + 2 min.
        const now = T0 + 8 * MIN;
        const seen: [string, "ready" | "draining", number][] = [
          ["ex_ready", "ready", T0 + 7 * MIN], ["ex_drain", "draining", T0 + 7 * MIN], ["ex_edge", "ready", T0 + 5 * MIN],
          ["ex_sus", "ready", T0 + 5 * MIN - 1], ["ex_sus2", "draining", T0 + 2 * MIN], ["ex_rev", "ready", T0 + 7 * MIN],
        ];
        for (const [id, status, at] of seen) {
          await executor(a.store, id);
          await a.store.recordHeartbeat(id, status, at);
        }
        await executor(a.store, "ex_off"); // last seen T0: offline
        await a.store.revokeExecutor("ex_rev", T0 + 7 * MIN);
        const counts = await (await another()).store.executorCounts({ suspectBefore: notSuspectSince(MIN, now), offlineBefore: offlineBefore(MIN, now) });
        expect(counts).toEqual({ ready: 2, draining: 1, suspect: 2, offline: 1, revoked: 1 });
        // The same as executorLiveness() of each executor, the way GET /api/v1/executors reports them.
        const byApi = { ready: 0, draining: 0, suspect: 0, offline: 0, revoked: 0 };
        for (const e of await a.store.listExecutors()) byApi[executorLiveness(e, MIN, now)]++;
        expect(counts).toEqual(byApi);
      });

      it("tasks are counted by status; nonces held until pruned", async () => {
        await executor(a.store, "ex_t", { capacity: 8 });
        for (const id of ["t1", "t2", "t3", "t4"]) await task(a.tasks, id);
        const leased = await lease(a.tasks, "ex_t", { max: 3 });
        expect(await a.tasks.completeLease(leased[0]!.leaseId!, "ex_t", 1, {}, T0)).toBe("ok");
        expect(await a.tasks.failLease(leased[1]!.leaseId!, "ex_t", 1, "boom", false, T0)).toBe("ok");
        await a.tasks.cancelTask("t4", T0);
        expect(await (await another()).tasks.taskCounts()).toEqual({ queued: 0, leased: 1, succeeded: 1, failed: 1, cancelled: 1 });

        await a.store.rememberNonce("ex_t", "nonce-count-AAAAAAAA", T0 + MIN);
        await a.store.rememberNonce("ex_t", "nonce-count-AAAAAAAA", T0 + MIN); // a replay stores nothing
        await a.store.rememberNonce("ex_t", "nonce-count-BBBBBBBB", T0 + 2 * MIN);
        expect(await a.store.nonceCount()).toBe(2);
        await a.store.pruneNonces(T0 + MIN);
        expect(await a.store.nonceCount()).toBe(1);
      });
    });

    describe("API tokens", () => {
      it("racing bootstraps (onlyIfNoActiveAdmin) through two handles insert exactly one admin token", async () => {
        const b = await another();
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) => (i % 2 ? b : a).store.insertApiToken(apiToken(`tok_boot${i}`, "admin"), { onlyIfNoActiveAdmin: true })),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await a.store.listApiTokens()).toHaveLength(1);
      });

      it("only an active admin blocks a bootstrap: not a revoked or expired one, nor another role", async () => {
        const boot = (id: string) => a.store.insertApiToken(apiToken(id, "admin"), { onlyIfNoActiveAdmin: true });
        expect(await a.store.insertApiToken(apiToken("tok_op", "operator"))).toBe(true);
        expect(await a.store.insertApiToken({ ...apiToken("tok_old", "admin"), expiresAt: T0 })).toBe(true);
        expect(await a.store.insertApiToken(apiToken("tok_gone", "admin"))).toBe(true);
        expect(await a.store.revokeApiToken("tok_gone", T0)).toBe(true);
        expect(await a.store.revokeApiToken("tok_gone", T0)).toBe(false);
        expect(await boot("tok_first")).toBe(true);
        expect(await boot("tok_second")).toBe(false);
      });

      it("looks tokens up by hash and id, and a use returns the previous address", async () => {
        await a.store.insertApiToken(apiToken("tok_x", "viewer"));
        expect(await a.store.getApiTokenByHash("hash-tok_x")).toMatchObject({ id: "tok_x", role: "viewer", createdBy: "test", lastUsedIp: null });
        expect(await a.store.getApiToken("tok_nope")).toBeUndefined();
        expect(await a.store.touchApiToken("tok_x", "10.0.0.1", T0 + 1)).toEqual({ previousIp: null });
        expect(await a.store.touchApiToken("tok_x", "10.0.0.2", T0 + 2)).toEqual({ previousIp: "10.0.0.1" });
        expect(await a.store.getApiToken("tok_x")).toMatchObject({ lastUsedAt: T0 + 2, lastUsedIp: "10.0.0.2" });
      });
    });

    describe("task leases", () => {
      it("lease → complete; an old epoch or another executor is stale, and so is a second completion", async () => {
        await executor(a.store, "ex_a");
        await executor(a.store, "ex_b");
        await task(a.tasks, "t1");
        const [l] = await lease(a.tasks, "ex_a");
        expect(l).toMatchObject({ id: "t1", status: "leased", executorId: "ex_a", epoch: 1, attempts: 1, leaseExpiresAt: T0 + 10 * MIN });
        const leaseId = l?.leaseId ?? "";
        expect(await a.tasks.completeLease(leaseId, "ex_b", 1, {}, T0)).toBe("stale");
        expect(await a.tasks.failLease(leaseId, "ex_b", 1, "x", false, T0)).toBe("stale");
        expect(await a.tasks.completeLease(leaseId, "ex_a", 2, {}, T0)).toBe("stale");
        expect(await a.tasks.failLease(leaseId, "ex_a", 0, "x", true, T0)).toBe("stale");
        expect(await a.tasks.completeLease(leaseId, "ex_a", 1, { exit_code: 0 }, T0 + 1)).toBe("ok");
        expect(await a.tasks.completeLease(leaseId, "ex_a", 1, {}, T0 + 2)).toBe("stale");
        expect(await a.tasks.getTask("t1")).toMatchObject({ status: "succeeded", result: { exit_code: 0 }, finishedAt: T0 + 1 });
      });

      it("a task is leased once under concurrent lease calls from several executors on two handles", async () => {
        const b = await another();
        const ids = Array.from({ length: 6 }, (_, i) => `ex_p${i}`);
        for (const id of ids) await executor(a.store, id, { capacity: 64 });
        for (let i = 0; i < 30; i++) await task(a.tasks, `t${i}`);
        const seen: string[] = [];
        for (let round = 0; round < 3; round++) {
          const got = await Promise.all(ids.flatMap((id, i) => [lease((i % 2 ? b : a).tasks, id, { max: 3 }), lease((i % 2 ? a : b).tasks, id, { max: 3 })]));
          for (const ts of got) seen.push(...ts.map((t) => t.id));
        }
        expect(seen).toHaveLength(30);
        expect(new Set(seen).size).toBe(30);
      });

      it("leases nothing to an unknown, revoked, drained, draining, suspect or full executor, or under a wrong epoch", async () => {
        for (const id of ["ex_rev", "ex_drn", "ex_dng", "ex_sus", "ex_full", "ex_ok"]) await executor(a.store, id, { capacity: 1 });
        await a.store.revokeExecutor("ex_rev", T0);
        await a.store.setDrain("ex_drn", true);
        await a.store.recordHeartbeat("ex_dng", "draining", T0);
        await task(a.tasks, "t_busy");
        expect(await lease(a.tasks, "ex_full")).toHaveLength(1);
        await task(a.tasks, "t_free");
        for (const id of ["ex_nope", "ex_rev", "ex_drn", "ex_dng", "ex_full"]) expect(await lease(a.tasks, id), id).toEqual([]);
        expect(await lease(a.tasks, "ex_sus", { aliveSince: T0 + 1 }), "suspect").toEqual([]);
        expect(await lease(a.tasks, "ex_ok", { epoch: 2 }), "wrong epoch").toEqual([]);
        expect((await lease(a.tasks, "ex_ok")).map((t) => t.id)).toEqual(["t_free"]);
      });

      it("leases at most min(max, capacity − leases held), oldest first", async () => {
        await executor(a.store, "ex_cap", { capacity: 3 });
        for (let i = 0; i < 5; i++) await task(a.tasks, `t${i}`, {}, T0 + i);
        expect((await lease(a.tasks, "ex_cap", { max: 2 })).map((t) => t.id)).toEqual(["t0", "t1"]);
        expect((await lease(a.tasks, "ex_cap", { max: 64 })).map((t) => t.id)).toEqual(["t2"]);
        expect(await lease(a.tasks, "ex_cap")).toEqual([]);
      });

      it("a selector matches when it is a subset of the executor's labels", async () => {
        await executor(a.store, "ex_sel", { labels: { os: "linux", gpu: "yes" }, capacity: 64 });
        const tasks: [string, Record<string, string>, boolean][] = [
          ["t_wrong_value", { gpu: "no" }, false],
          ["t_plain", {}, true],
          ["t_one", { gpu: "yes" }, true],
          ["t_superset", { gpu: "yes", zone: "a" }, false],
          ["t_both", { os: "linux", gpu: "yes" }, true],
          ["t_missing_key", { zone: "a" }, false],
          ["t_case", { OS: "linux" }, false],
        ];
        for (const [id, selector] of tasks) await task(a.tasks, id, selector);
        expect((await lease(a.tasks, "ex_sel")).map((t) => t.id)).toEqual(tasks.filter(([, , m]) => m).map(([id]) => id));
        await executor(a.store, "ex_none", { labels: {}, capacity: 64 });
        expect(await lease(a.tasks, "ex_none")).toEqual([]);
      });

      it("a requeued task is matched again; a cancelled one never", async () => {
        await executor(a.store, "ex_m", { labels: { pool: "p" }, capacity: 64 });
        await executor(a.store, "ex_other", { labels: { pool: "q" }, capacity: 64 });
        await task(a.tasks, "t_retry", { pool: "p" }, T0, 3);
        await task(a.tasks, "t_cancel", { pool: "p" });
        await a.tasks.cancelTask("t_cancel", T0);
        const [l] = await lease(a.tasks, "ex_m");
        expect(l?.id).toBe("t_retry");
        expect(await a.tasks.failLease(l?.leaseId ?? "", "ex_m", 1, "boom", true, T0 + 1)).toBe("ok");
        expect(await a.tasks.getTask("t_retry")).toMatchObject({ status: "queued", attempts: 1, error: "boom", leaseId: null });
        expect(await lease(a.tasks, "ex_other")).toEqual([]);
        expect((await lease(a.tasks, "ex_m")).map((t) => [t.id, t.attempts])).toEqual([["t_retry", 2]]);
      });

      it("10,000 queued tasks that match no executor do not hold back a plain or a matching task: both lease on the first call", async () => {
        await executor(a.store, "ex_big", { labels: { pool: "mine", zone: "a" }, capacity: 64 });
        for (let i = 0; i < 10_000; i++) await task(a.tasks, `t_backlog${i}`, i % 2 ? { gpu: "yes" } : { pool: "mine", zone: "b" });
        await task(a.tasks, "t_plain");
        await task(a.tasks, "t_match", { zone: "a" });
        expect((await lease(a.tasks, "ex_big", { max: 64 })).map((t) => t.id)).toEqual(["t_plain", "t_match"]);
        expect(await a.tasks.listTasks({ status: "queued", limit: 20_000 })).toHaveLength(10_000);
      }, 60_000);

      it("a heartbeat extends the leases validly held and lists the ones to stop", async () => {
        await executor(a.store, "ex_hb", { capacity: 64 });
        await executor(a.store, "ex_x");
        for (const id of ["t_keep", "t_cancel", "t_done"]) await task(a.tasks, id);
        const held = await lease(a.tasks, "ex_hb");
        const leaseOf = (id: string) => held.find((t) => t.id === id)?.leaseId ?? "";
        await a.tasks.cancelTask("t_cancel", T0);
        await a.tasks.completeLease(leaseOf("t_done"), "ex_hb", 1, {}, T0);
        const listed = [leaseOf("t_keep"), leaseOf("t_cancel"), leaseOf("t_done"), "lease_unknown"];
        expect((await a.tasks.heartbeatLeases("ex_hb", 1, listed, T0 + 20 * MIN, T0)).cancel.sort()).toEqual(listed.slice(1).sort());
        expect((await a.tasks.getTask("t_keep"))?.leaseExpiresAt).toBe(T0 + 20 * MIN);
        expect((await a.tasks.heartbeatLeases("ex_x", 1, [leaseOf("t_keep")], T0 + 30 * MIN, T0)).cancel).toEqual([leaseOf("t_keep")]);
        expect((await a.tasks.heartbeatLeases("ex_hb", 2, [leaseOf("t_keep")], T0 + 30 * MIN, T0)).cancel).toEqual([leaseOf("t_keep")]);
        expect((await a.tasks.getTask("t_keep"))?.leaseExpiresAt).toBe(T0 + 20 * MIN);
        expect(await a.tasks.heartbeatLeases("ex_hb", 1, [], T0, T0)).toEqual({ cancel: [] });
      });

      it("cancel: a queued task is never leased; a leased one keeps its lease so its holder hears, and cannot complete", async () => {
        await executor(a.store, "ex_c", { capacity: 64 });
        await task(a.tasks, "t_q");
        await a.tasks.cancelTask("t_q", T0);
        expect(await a.tasks.getTask("t_q")).toMatchObject({ status: "cancelled", cancelRequested: true, finishedAt: T0 });
        expect(await lease(a.tasks, "ex_c")).toEqual([]);
        await task(a.tasks, "t_l");
        const [l] = await lease(a.tasks, "ex_c");
        expect(await a.tasks.cancelTask("t_l", T0 + 1)).toMatchObject({ status: "cancelled", leaseId: l?.leaseId, executorId: "ex_c" });
        expect(await a.tasks.completeLease(l?.leaseId ?? "", "ex_c", 1, {}, T0 + 2)).toBe("stale");
        expect(await a.tasks.cancelTask("t_nope", T0)).toBeUndefined();
      });

      it("an epoch bump puts back the leases of older epochs only; exhausted attempts fail the task", async () => {
        await executor(a.store, "ex_ep", { capacity: 64 });
        await task(a.tasks, "t_old", {}, T0, 3);
        await task(a.tasks, "t_last", {}, T0, 1);
        await lease(a.tasks, "ex_ep");
        await a.store.bumpEpoch("ex_ep");
        await task(a.tasks, "t_new");
        expect((await lease(a.tasks, "ex_ep", { epoch: 2 })).map((t) => t.id)).toEqual(["t_new"]);
        expect(await a.tasks.requeueExecutorLeases("ex_ep", "re-registered", T0 + 1, 2)).toBe(2);
        expect(await a.tasks.getTask("t_old")).toMatchObject({ status: "queued", attempts: 1, executorId: null, epoch: null, error: "re-registered" });
        expect(await a.tasks.getTask("t_last")).toMatchObject({ status: "failed", finishedAt: T0 + 1 });
        expect((await a.tasks.getTask("t_last"))?.error).toMatch(/attempts exhausted.*re-registered/);
        expect(await a.tasks.getTask("t_new")).toMatchObject({ status: "leased", epoch: 2 });
      });

      it("a revocation puts back every lease of the executor", async () => {
        await executor(a.store, "ex_rv", { capacity: 64 });
        await task(a.tasks, "t1");
        await task(a.tasks, "t2");
        await lease(a.tasks, "ex_rv");
        await a.store.revokeExecutor("ex_rv", T0);
        expect(await a.tasks.requeueExecutorLeases("ex_rv", "revoked", T0)).toBe(2);
        expect((await a.tasks.listTasks({ status: "queued", limit: 10 })).map((t) => t.id).sort()).toEqual(["t1", "t2"]);
      });

      it("reclaim puts back expired leases and those of silent executors, failing tasks out of attempts", async () => {
        await executor(a.store, "ex_live", { capacity: 64 });
        await executor(a.store, "ex_silent", { capacity: 64 });
        await task(a.tasks, "t_expired");
        await lease(a.tasks, "ex_live", { leaseExpiresAt: T0 + MIN });
        await task(a.tasks, "t_fresh");
        await lease(a.tasks, "ex_live", { leaseExpiresAt: T0 + 30 * MIN });
        await task(a.tasks, "t_silent");
        await task(a.tasks, "t_spent", {}, T0, 1);
        await lease(a.tasks, "ex_silent", { leaseExpiresAt: T0 + 30 * MIN });
        await a.store.recordHeartbeat("ex_live", "ready", T0 + 5 * MIN);
        const r = await a.tasks.reclaim(T0 + 2 * MIN, T0 + 1);
        expect([r.requeued, r.failed, [...r.executors].sort()]).toEqual([2, 1, ["ex_live", "ex_silent"]]);
        expect((await a.tasks.getTask("t_fresh"))?.status).toBe("leased");
        for (const id of ["t_expired", "t_silent"]) expect(await a.tasks.getTask(id), id).toMatchObject({ status: "queued", attempts: 1 });
        expect(await a.tasks.getTask("t_spent")).toMatchObject({ status: "failed", attempts: 1 });
        expect(await a.tasks.reclaim(T0 + 2 * MIN, T0 + 1)).toEqual({ requeued: 0, failed: 0, executors: [] });
      });

      it("a failure's error text is stored whatever it holds (a NUL included: the wire allows it)", async () => {
        await executor(a.store, "ex_nul", { capacity: 64 });
        await task(a.tasks, "t_nul", {}, T0, 1);
        const [l] = await lease(a.tasks, "ex_nul");
        expect(await a.tasks.failLease(l?.leaseId ?? "", "ex_nul", 1, "bad\u0000byte ✓", false, T0)).toBe("ok");
        expect(await a.tasks.getTask("t_nul")).toMatchObject({ status: "failed", error: expect.stringMatching(/^bad.byte ✓$/) });
      });

      it("a retryable failure requeues until max_attempts; a final one fails at once", async () => {
        await executor(a.store, "ex_f", { capacity: 64 });
        await task(a.tasks, "t_r", {}, T0, 2);
        for (const [attempt, status] of [[1, "queued"], [2, "failed"]] as const) {
          const [l] = await lease(a.tasks, "ex_f");
          expect(await a.tasks.failLease(l?.leaseId ?? "", "ex_f", 1, "boom", true, T0)).toBe("ok");
          expect(await a.tasks.getTask("t_r")).toMatchObject({ status, attempts: attempt });
        }
        await task(a.tasks, "t_final", {}, T0, 5);
        const [l] = await lease(a.tasks, "ex_f");
        expect(await a.tasks.failLease(l?.leaseId ?? "", "ex_f", 1, "fatal", false, T0)).toBe("ok");
        expect(await a.tasks.getTask("t_final")).toMatchObject({ status: "failed", attempts: 1, error: "fatal" });
        expect(await a.tasks.listTasks({ status: "failed", limit: 10 })).toHaveLength(2);
      });
    });

    describe("the JWT key ring", () => {
      it("holds one active and one next key: a second of either is refused (false), also when handles race", async () => {
        const b = await another();
        expect(await a.jwtKeys.insertJwtKey(newJwtKey("kid_a"), { state: "active", onlyIfEmpty: true })).toBe(true);
        expect(await b.jwtKeys.insertJwtKey(newJwtKey("kid_a2"), { state: "active" })).toBe(false);
        const raced = await Promise.all(
          Array.from({ length: 6 }, (_, i) => (i % 2 ? b : a).jwtKeys.insertJwtKey(newJwtKey(`kid_n${i}`), { state: "next" })),
        );
        expect(raced.filter(Boolean)).toHaveLength(1);
        const ring = await b.jwtKeys.jwtKeys();
        expect(ring.map((k) => k.state).sort()).toEqual(["active", "next"]);
        // After a promotion the slot for a next key is free again.
        const next = ring.find((k) => k.state === "next")!;
        expect(await a.jwtKeys.promoteJwtKey(next.kid, T0 + MIN)).toBe(true);
        expect(await b.jwtKeys.insertJwtKey(newJwtKey("kid_n_after"), { state: "next" })).toBe(true);
        expect((await a.jwtKeys.jwtKeys()).map((k) => k.state).sort()).toEqual(["active", "next", "retired"]);
      });
    });

    describe("the CA set", () => {
      it("racing bootstraps (onlyIfEmpty) through two handles end with exactly one active CA", async () => {
        const b = await another();
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) => (i % 2 ? b : a).cas.insertCa(newCa(`ca_boot${i}`), { state: "active", onlyIfEmpty: true })),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const bundle = await b.cas.trustBundle();
        expect(bundle.version).toBe(1);
        expect(bundle.cas).toHaveLength(1);
        expect(bundle.cas[0]).toMatchObject({ state: "active", addedInVersion: 1, activatedAt: T0, retiredAt: null, crossCertPem: null, lastIssuedNotAfter: 0 });
        // The winner's key is the one stored, decrypted under the KEK; it is not in the record.
        const winner = bundle.cas[0]!.id;
        expect(await a.cas.caPrivateKey(winner)).toEqual(keyOf(winner));
        expect(JSON.stringify(bundle)).not.toContain(keyOf(winner).toString("hex"));
        await expect(a.cas.caPrivateKey("ca_nope")).rejects.toThrow();
      });

      it("one prepared CA at a time, one active; each insert bumps the version and records it as the CA's", async () => {
        expect(await a.cas.insertCa(newCa("ca_1"), { state: "active" })).toBe(true);
        expect(await a.cas.insertCa(newCa("ca_x"), { state: "active" })).toBe(false);
        const b = await another();
        const raced = await Promise.all([a.cas.insertCa(newCa("ca_2", "cross-2"), { state: "prepared" }), b.cas.insertCa(newCa("ca_3"), { state: "prepared" })]);
        expect(raced.filter(Boolean)).toHaveLength(1);
        const { version, cas } = await a.cas.trustBundle();
        expect(version).toBe(2);
        expect(cas.map((c) => [c.state, c.addedInVersion])).toEqual([["active", 1], ["prepared", 2]]);
        expect(await a.cas.insertCa(newCa("ca_4"), { state: "prepared", onlyIfEmpty: true })).toBe(false);
      });

      it("activation is atomic: prepared → active and active → retired together, the version unchanged; only a prepared CA activates", async () => {
        await a.cas.insertCa(newCa("ca_1"), { state: "active" });
        await a.cas.insertCa(newCa("ca_2", "cross-2"), { state: "prepared" });
        expect(await a.cas.activateCa("ca_1", T0 + MIN)).toBe(false);
        expect(await a.cas.activateCa("ca_nope", T0 + MIN)).toBe(false);
        const b = await another();
        const raced = await Promise.all([a.cas.activateCa("ca_2", T0 + MIN), b.cas.activateCa("ca_2", T0 + MIN)]);
        expect(raced.filter(Boolean)).toHaveLength(1);
        const { version, cas } = await b.cas.trustBundle();
        expect(version).toBe(2);
        expect(cas).toMatchObject([
          { id: "ca_1", state: "retired", retiredAt: T0 + MIN },
          { id: "ca_2", state: "active", activatedAt: T0 + MIN, crossCertPem: "cross-2" },
        ]);
        expect(cas.filter((c) => c.state === "active")).toHaveLength(1);
      });

      it("only a retired CA is removed (version + 1), and its certificates go with it", async () => {
        await a.cas.insertCa(newCa("ca_1"), { state: "active" });
        await a.cas.recordIssued({ serialHex: "0a", caId: "ca_1", executorId: null, notAfter: T0 + MIN, issuedAt: T0 });
        expect(await a.cas.removeCa("ca_1", T0)).toBe(false);
        await a.cas.insertCa(newCa("ca_2"), { state: "prepared" });
        expect(await a.cas.removeCa("ca_2", T0)).toBe(false);
        await a.cas.activateCa("ca_2", T0);
        expect(await a.cas.removeCa("ca_1", T0 + 2 * MIN)).toBe(true);
        expect(await a.cas.removeCa("ca_1", T0 + 2 * MIN)).toBe(false);
        const { version, cas } = await (await another()).cas.trustBundle();
        expect([version, cas.map((c) => c.id)]).toEqual([3, ["ca_2"]]);
        await expect(a.cas.caPrivateKey("ca_1")).rejects.toThrow();
        // A CA of that id may come back without inheriting the old certificates.
        await a.cas.insertCa(newCa("ca_1"), { state: "prepared" });
        expect((await a.cas.trustBundle()).cas.find((c) => c.id === "ca_1")?.lastIssuedNotAfter).toBe(0);
      });

      it("an issued certificate raises its CA's lastIssuedNotAfter, never lowers it", async () => {
        await a.cas.insertCa(newCa("ca_1"), { state: "active" });
        await a.cas.recordIssued({ serialHex: "01", caId: "ca_1", executorId: "ex_a", notAfter: T0 + 60 * MIN, issuedAt: T0 });
        await a.cas.recordIssued({ serialHex: "02", caId: "ca_1", executorId: "ex_b", notAfter: T0 + 10 * MIN, issuedAt: T0 });
        expect((await a.cas.trustBundle()).cas[0]?.lastIssuedNotAfter).toBe(T0 + 60 * MIN);
      });

      it("revoked serials: the unexpired certificates of that CA issued to revoked executors, with the revocation time", async () => {
        await a.cas.insertCa(newCa("ca_1"), { state: "active" });
        await a.cas.insertCa(newCa("ca_2"), { state: "prepared" });
        for (const id of ["ex_live", "ex_gone", "ex_old"]) await executor(a.store, id);
        const issue = (serialHex: string, caId: string, executorId: string | null, notAfter: number) =>
          a.cas.recordIssued({ serialHex, caId, executorId, notAfter, issuedAt: T0 });
        await issue("AA01", "ca_1", "ex_live", T0 + 60 * MIN);
        await issue("AA02", "ca_1", "ex_gone", T0 + 60 * MIN);
        await issue("AA03", "ca_2", "ex_gone", T0 + 60 * MIN);
        await issue("AA04", "ca_1", "ex_old", T0 + 60 * MIN);
        await issue("AA05", "ca_1", null, T0 + 60 * MIN);
        expect(await a.cas.revokedSerials("ca_1", T0)).toEqual([]);
        await a.store.revokeExecutor("ex_gone", T0 + MIN);
        await a.store.revokeExecutor("ex_old", T0 + 2 * MIN);
        // ex_old's certificate expires first: it leaves the list when it does.
        await issue("AA06", "ca_1", "ex_old", T0 + 5 * MIN);
        const b = await another();
        expect(await b.cas.revokedSerials("ca_1", T0 + 3 * MIN)).toEqual([
          { serialHex: "aa02", revokedAt: T0 + MIN }, { serialHex: "aa04", revokedAt: T0 + 2 * MIN }, { serialHex: "aa06", revokedAt: T0 + 2 * MIN },
        ]);
        expect(await b.cas.revokedSerials("ca_2", T0 + 3 * MIN)).toEqual([{ serialHex: "aa03", revokedAt: T0 + MIN }]);
        expect((await b.cas.revokedSerials("ca_1", T0 + 5 * MIN)).map((r) => r.serialHex)).toEqual(["aa02", "aa04"]);
        expect(await b.cas.revokedSerials("ca_1", T0 + 60 * MIN)).toEqual([]);
      });

      it("CRL numbers strictly grow, per CA, across handles", async () => {
        await a.cas.insertCa(newCa("ca_1"), { state: "active" });
        await a.cas.insertCa(newCa("ca_2"), { state: "prepared" });
        const b = await another();
        const numbers = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? b : a).cas.nextCrlNumber("ca_1")));
        expect([...numbers].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect(await a.cas.nextCrlNumber("ca_1")).toBe(11);
        expect(await b.cas.nextCrlNumber("ca_2")).toBe(1);
        await expect(a.cas.nextCrlNumber("ca_nope")).rejects.toThrow();
      });

      it("bundle versions: what each executor reported (only ever raised), when it was seen, whether it is revoked", async () => {
        await executor(a.store, "ex_new");
        await executor(a.store, "ex_v3");
        await a.store.recordHeartbeat("ex_v3", "ready", T0 + MIN, 3);
        await a.store.recordHeartbeat("ex_v3", "ready", T0 + 2 * MIN, 2);
        await a.store.revokeExecutor("ex_new", T0 + 2 * MIN);
        expect(await (await another()).cas.bundleVersions()).toEqual([
          { id: "ex_new", version: null, lastSeenAt: T0, revoked: true },
          { id: "ex_v3", version: 3, lastSeenAt: T0 + 2 * MIN, revoked: false },
        ]);
      });
    });
  });
}

// ---- fixtures --------------------------------------------------------------------

/** A CA's private key in these tests: 32 bytes derived from its id (the store treats it as opaque). */
const keyOf = (id: string) => Buffer.from(createHash("sha256").update(id).digest());

/** A CA as the store sees it: opaque PEM and fingerprint strings, distinct per id. */
function newJwtKey(kid: string): NewJwtKey {
  return { kid, signsFrom: T0, publicKey: Buffer.from(`pub-${kid}`), privateKey: Buffer.from(`priv-${kid}`), now: T0 };
}

function newCa(id: string, crossCertPem: string | null = null): NewCa {
  return {
    id, certPem: `cert-${id}`, fingerprint: `fp-${id}` as CaFingerprint, keyType: "ed25519", notBefore: T0 - MIN, notAfter: T0 + 600 * MIN,
    crossCertPem, privateKey: keyOf(id), now: T0,
  };
}

async function token(store: Store, o: { id?: string; maxUses?: number; expiresAt?: number; labels?: Record<string, string> } = {}): Promise<string> {
  const id = o.id ?? "enr_" + randomUUID();
  const hash = "hash-" + id;
  await store.insertEnrollmentToken({
    id, tokenHash: hash, createdAt: T0 - MIN, expiresAt: o.expiresAt ?? T0 + 60 * MIN, maxUses: o.maxUses ?? 1, uses: 0,
    revokedAt: null, labels: o.labels ?? {},
  });
  return hash;
}

function enroll(store: Store, tokenHash: string, id: string, o: { labels?: Record<string, string>; capacity?: number; hmacKey?: Buffer } = {}) {
  return store.enrollExecutor(tokenHash, {
    id, name: id, labels: o.labels ?? {}, capacity: o.capacity ?? 1, certFingerprint: tp(`fp-${id}`), certIssuedAt: T0,
    certExpiresAt: T0 + 24 * 60 * MIN, hmacKey: o.hmacKey ?? Buffer.alloc(32, 1), now: T0,
  });
}

/** An enrolled executor, last seen at T0. */
async function executor(store: Store, id: string, o: { labels?: Record<string, string>; capacity?: number; hmacKey?: Buffer } = {}): Promise<void> {
  const r = await enroll(store, await token(store), id, o);
  expect(r.ok).toBe(true);
}

function task(tasks: TaskStore, id: string, selector: Record<string, string> = {}, now = T0, maxAttempts = 3) {
  const t: NewTask = { id, kind: "noop", payload: { id }, selector, timeoutS: 60, maxAttempts, submittedBy: null, now };
  return tasks.insertTask(t);
}

function lease(tasks: TaskStore, executorId: string, o: Partial<Omit<LeaseRequest, "executorId">> = {}) {
  return tasks.leaseTasks({
    executorId, epoch: 1, max: 64, aliveSince: T0 - MIN, leaseExpiresAt: T0 + 10 * MIN, now: T0,
    newLeaseId: () => "lease_" + randomUUID(), ...o,
  });
}

function apiToken(id: string, role: ApiTokenRecord["role"]): ApiTokenRecord {
  return {
    id, name: id, role, tokenHash: "hash-" + id, createdAt: T0, createdBy: "test", expiresAt: null, revokedAt: null,
    lastUsedAt: null, lastUsedIp: null,
  };
}
