/**
 * The Redis store with a redis-server of the test's own that is paused (SIGSTOP) and resumed
 * at chosen moments (found in review). Each test states a promise of the README.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Logger, LogLevel, Scope } from "effect"
import { Redis } from "ioredis"
import * as RedisStore from "../../src/RedisStore.js"
import { uniquePrefix } from "../support.js"
import { ownRedisStore, withRedis } from "./helpers.js"

const quiet = Logger.withMinimumLogLevel(LogLevel.None)

/** Waits until the score of the only lease under `prefix` changes (a renewal just ran); returns when it did. */
const nextRenewal = (prefix: string, port: number) =>
  Effect.promise(async () => {
    const redis = new Redis({ port, host: "127.0.0.1" })
    try {
      const [id] = await redis.zrange(`{${prefix}}:leases`, 0, 0)
      const first = await redis.zscore(`{${prefix}}:leases`, id!)
      for (;;) {
        const now = await redis.zscore(`{${prefix}}:leases`, id!)
        if (now !== first) return performance.now()
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
    } finally {
      redis.disconnect()
    }
  })

const sleepUntil = (at: number) =>
  Effect.promise(() => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - performance.now()))))

describe("Redis store under pauses of Redis", () => {
  it.live(
    "onUnavailable local: a wait-mode request answered after the fallback began does not run beside a local slot",
    () =>
      Effect.gen(function* () {
        const { q, server } = yield* ownRedisStore({
          maxUserQueue: 1,
          prefix: uniquePrefix(),
          timeout: "500 millis",
          leaseTime: "6 seconds",
          onUnavailable: "local"
        }).pipe(quiet)
        let running = 0
        let most = 0
        const body = Effect.acquireUseRelease(
          Effect.sync(() => {
            running++
            most = Math.max(most, running)
          }),
          () => Effect.sleep("4 seconds"),
          () => Effect.sync(() => running--)
        )
        server.kill("SIGSTOP")
        // A: times out after 500 ms, falls back to the local store and runs there
        const a = yield* Effect.fork(Effect.either(q.withSlot(1)(body)))
        yield* Effect.sleep("250 millis")
        // B: sent 250 ms later; Redis wakes up in time to answer it (it queues behind A's late grant)
        const b = yield* Effect.fork(Effect.either(q.withSlot(1, { onFull: "wait" })(body)))
        yield* Effect.sleep("400 millis")
        server.kill("SIGCONT")
        // the next renewal round gives back what A was granted late: B is admitted in Redis
        yield* Fiber.join(a)
        yield* Fiber.join(b)
        // README: "the process never runs more than its limits allow"
        expect(most).toBe(1)
      }).pipe(Effect.scoped),
    { timeout: 20_000 }
  )

  const renewalRound = (withGiveBack: boolean) =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      // leaseTime = 10 × timeout: well above the 6 × timeout the README asks for
      const { port, q, server } = yield* ownRedisStore({
        maxUserQueue: 0,
        prefix,
        timeout: "150 millis",
        leaseTime: "1500 millis"
      }).pipe(quiet)
      const holder = yield* Effect.fork(q.withSlot("held")(Effect.never))
      yield* Effect.sleep("100 millis")
      const renewedAt = yield* nextRenewal(prefix, port)
      // the renewal's answer reaches this process (Redis had run it when the poll saw it), then Redis
      // stops answering until 900 ms after it, so that exactly one renewal round (at +500 ms) fails
      yield* sleepUntil(renewedAt + 20)
      server.kill("SIGSTOP")
      if (withGiveBack) yield* Effect.either(q.tryAcquire("other")) // times out: Redis may run it later
      yield* sleepUntil(renewedAt + 900)
      server.kill("SIGCONT")
      yield* sleepUntil(renewedAt + 1700)
      const exit = holder.unsafePoll()
      yield* Fiber.interrupt(holder)
      return exit
    }).pipe(Effect.scoped)

  it.live("control: one failed renewal round loses nothing when leaseTime > 6 × timeout", () =>
    Effect.gen(function* () {
      expect(yield* renewalRound(false)).toBeNull()
    })
  )

  it.live("one failed renewal round loses nothing when leaseTime > 6 × timeout, even with give-backs pending", () =>
    Effect.gen(function* () {
      // a round that sent its give-backs first and renewed only once they were answered (a second
      // timeout), the next waiting a third of a lease after that, lost the lease
      expect(yield* renewalRound(true)).toBeNull()
    })
  )

  it.live("closing the layer gives back what a timed-out acquisition was granted (not left for a lease)", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      const options: Omit<RedisStore.Options, "redis"> = {
        maxUserQueue: 1,
        prefix,
        timeout: "200 millis",
        leaseTime: "60 seconds"
      }
      const { port, q: b, server, url } = yield* ownRedisStore(options).pipe(quiet)
      const scope = yield* Scope.make()
      const a = yield* RedisStore.make({ ...options, redis: url }).pipe(quiet, Scope.extend(scope))
      server.kill("SIGSTOP")
      expect((yield* Effect.either(a.tryAcquire(1)))._tag).toBe("Left") // timed out
      server.kill("SIGCONT") // Redis runs it now: a holds a slot nobody uses
      yield* Effect.sleep("100 millis")
      yield* Scope.close(scope, Exit.void)
      yield* Effect.sleep("200 millis")
      const leases = yield* withRedis((redis) => redis.zcard(`{${prefix}}:leases`), port)
      expect({ leases, free: yield* b.tryAcquire(1) }).toEqual({ leases: 0, free: true })
    }).pipe(Effect.scoped)
  )
})
