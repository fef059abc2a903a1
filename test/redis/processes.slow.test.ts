import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile, spawn } from "node:child_process"
import { promisify } from "node:util"
import { Redis } from "ioredis"
import * as RedisStore from "../../src/RedisStore.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"

const worker = (mode: "hammer" | "hold", args: Record<string, unknown>) => [
  "--import",
  "tsx",
  "test/redis/worker.ts",
  mode,
  JSON.stringify({ redis: redisUrl, ...args })
]

/** Redis's own clock, in milliseconds. */
const redisNow = (redis: Redis) => redis.time().then(([s, us]) => Number(s) * 1000 + Math.floor(Number(us) / 1000))

describe("several processes", () => {
  it.live(
    "three processes hammering the same users with limit 3: never more than 3 in flight per user across all",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => deleteKeys(prefix))
        const users = [1, -100, 2 ** 40]
        const runs = yield* Effect.forEach(
          [0, 1, 2],
          () =>
            Effect.promise(() =>
              promisify(execFile)(
                process.execPath,
                worker("hammer", { prefix, users, requests: 300, limit: 3, leaseTime: "5 minutes" })
              )
            ),
          { concurrency: "unbounded" }
        )
        const reports = runs.map(
          ({ stdout }) =>
            JSON.parse(stdout.trim().split("\n").pop()!) as {
              maxSeen: Record<string, number>
              accepted: number
              refused: number
            }
        )
        // with 5-minute leases a lost wake-up would leave a waiter stuck (its ticket is renewed, not re-checked, for 100 s)
        const highest = Math.max(...reports.flatMap((r) => Object.values(r.maxSeen)))
        expect(highest).toBe(3) // reached, never passed
        expect(reports.reduce((n, r) => n + r.accepted + r.refused, 0)).toBe(900)
        const q = yield* RedisStore.make({ maxUserQueue: 3, redis: redisUrl, prefix })
        expect(yield* q.stats).toMatchObject({ inFlight: 0, activeUsers: 0, waiting: 0, waitingUsers: 0 })
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "the slots of a process killed with SIGKILL come back by themselves within its lease time, whoever holds longer leases",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => deleteKeys(prefix))
        const redis = yield* Effect.acquireRelease(
          Effect.sync(() => new Redis(redisUrl)),
          (r) => Effect.promise(() => r.quit())
        )
        // this process's leases (30 s) expire long after the child's (1 s), and its slot is taken first
        const q = yield* RedisStore.make({ maxUserQueue: 3, redis: redisUrl, prefix })
        expect(yield* q.tryAcquire(7)).toBe(true)
        const child = spawn(
          process.execPath,
          worker("hold", { prefix, users: [42], requests: 0, limit: 3, leaseTime: "1 second" }),
          { stdio: ["ignore", "pipe", "inherit"] }
        )
        yield* Effect.async<void>((resume) => {
          child.stdout.on("data", (data: Buffer) => data.toString().includes("held") && resume(Effect.void))
        })
        expect(yield* q.activeCount(42)).toBe(3)
        expect(yield* q.tryAcquire(42)).toBe(false)
        child.kill("SIGKILL")
        const killedAt = yield* Effect.promise(() => redisNow(redis))
        // by Redis's clock, every lease of the dead process ends at most one lease time from now
        const expiries = yield* Effect.promise(() => redis.zrange(`{${prefix}}:leases`, 0, -1, "WITHSCORES"))
        const ends = expiries.filter((_, i) => i % 2 === 1 && expiries[i - 1]!.endsWith(":n42")).map(Number)
        expect(ends.length).toBe(3)
        for (const end of ends) expect(end).toBeLessThanOrEqual(killedAt + 1000)
        while ((yield* q.activeCount(42)) > 0) yield* Effect.sleep("50 millis")
        // and not before: the slots came back only once their leases had run out
        expect(yield* Effect.promise(() => redisNow(redis))).toBeGreaterThanOrEqual(Math.max(...ends))
        expect(yield* q.tryAcquire(42)).toBe(true)
      }).pipe(Effect.scoped),
    30_000
  )
})
