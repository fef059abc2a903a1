/**
 * Bugs an adversarial review of the rebuilt Redis store found: each test states a promise of
 * the README and failed before its fix. Deterministic (no pauses of Redis).
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { deleteKeys, redisUrl, uniquePrefix, untilWaiting } from "../support.js"
import { ownRedisStore, twoProcesses, withRedis } from "./helpers.js"
import { stop } from "./server.js"

/** Lets every callback already due run (ioredis writes, batched calls) before going on. */
const nextTurn = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))

describe("Redis store, found in review", () => {
  // Lua wrote a line's limit of 10^15 as 1e+15, which read back as 1
  it.live("a line limit of 1e15 (or a tier returning 1e15) is kept as such, as in memory", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      const options = {
        maxUserQueue: 3,
        maxTotal: 2,
        userLimit: (userId: QueueManager.UserId, base: number) => (userId === "vip" ? 1e15 : base)
      }
      const results: Array<ReadonlyArray<string>> = []
      for (const manager of [
        yield* QueueManager.make(options),
        yield* RedisStore.make({ ...options, redis: redisUrl, prefix })
      ]) {
        const started: Array<string> = []
        const gates = new Map<string, Deferred.Deferred<void>>()
        const run = (label: string) =>
          Effect.gen(function* () {
            const gate = yield* Deferred.make<void>()
            gates.set(label, gate)
            return yield* Effect.fork(
              manager.withSlot("vip", { onFull: "wait" })(
                Effect.zipRight(
                  Effect.sync(() => started.push(label)),
                  Deferred.await(gate)
                )
              )
            )
          })
        yield* run("h1")
        yield* run("h2")
        yield* eventually("the cap is reached", manager.stats, (s) => s.inFlight === 2)
        yield* run("w1")
        yield* untilWaiting(manager, 1)
        yield* run("w2")
        yield* untilWaiting(manager, 2)
        yield* Deferred.succeed(gates.get("h1")!, undefined)
        yield* eventually(
          "w1 starts",
          Effect.sync(() => started.length),
          (n) => n === 3
        )
        yield* Deferred.succeed(gates.get("h2")!, undefined)
        // room for one more under the cap; the vip's own limit is 1e15
        yield* eventually(
          "w2 starts",
          Effect.sync(() => started.length),
          (n) => n === 4
        ).pipe(Effect.either)
        results.push([...started])
        for (const gate of gates.values()) yield* Deferred.succeed(gate, undefined)
        yield* manager.awaitIdle
      }
      expect(results[1]).toEqual(results[0])
    }).pipe(Effect.scoped)
  )

  it.live("drain waits for an acquisition that Redis sent back to be computed again (another process resized)", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* b.resize({ maxUserQueue: 2 }) // a has not heard of it yet: its next acquisition is sent back
      expect(a.maxUserQueue).toBe(1)
      let started = false
      let done = false
      const taker = yield* Effect.fork(
        a.withSlot(1)(
          Effect.sync(() => void (started = true)).pipe(
            Effect.zipRight(Effect.sleep("200 millis")),
            Effect.tap(() => void (done = true))
          )
        )
      )
      yield* Effect.yieldNow()
      yield* nextTurn // sent under the old default, not answered yet
      yield* a.drain
      const atDrain = { started, done }
      yield* Fiber.await(taker)
      // README: "drain waits for one sent before the shutdown and for its body"
      expect(atDrain).toEqual({ started: true, done: true })
    }).pipe(Effect.scoped)
  )

  it.live("closing the layer takes this process's waiters out of Redis (they are not admitted afterwards)", () =>
    Effect.gen(function* () {
      const { b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "60 seconds" })
      const scope = yield* Scope.make()
      const a = yield* RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix, leaseTime: "60 seconds" }).pipe(
        Scope.extend(scope)
      )
      expect(yield* b.tryAcquire(1)).toBe(true)
      const waiter = yield* Effect.fork(a.withSlot(1, { onFull: "wait" })(Effect.void))
      yield* eventually("a waits", b.stats, (s) => s.waiting === 1)
      yield* Scope.close(scope, Exit.void)
      yield* Fiber.await(waiter)
      yield* Effect.sleep("300 millis")
      const stats = yield* b.stats
      const tickets = yield* withRedis((redis) => redis.hlen(`{${prefix}}:tickets`))
      yield* b.release(1)
      yield* Effect.sleep("100 millis")
      // the slot b gave back should be free, not handed to the request of a closed process
      const after = yield* b.stats
      expect({ waiting: stats.waiting, tickets, inFlightAfterRelease: after.inFlight }).toEqual({
        waiting: 0,
        tickets: 0,
        inFlightAfterRelease: 0
      })
    }).pipe(Effect.scoped)
  )

  it.live("with onUnavailable local, a raw release never gives back the slot of a withSlot holder", () =>
    Effect.gen(function* () {
      const { q, server } = yield* ownRedisStore({
        maxUserQueue: 1,
        timeout: "200 millis",
        leaseTime: "5 seconds",
        onUnavailable: "local"
      })
      yield* stop(server)
      const gate = yield* Deferred.make<void>()
      const running = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        q.withSlot(1)(Effect.zipRight(Deferred.succeed(running, undefined), Deferred.await(gate)))
      )
      yield* Deferred.await(running)
      yield* q.release(1) // no slot of tryAcquire: ignored, as on Redis
      const second = yield* q.tryAcquire(1)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.await(holder)
      expect(second).toBe(false) // the withSlot still runs: user 1 is at its limit of 1
    }).pipe(Effect.scoped)
  )

  it.live("closing the layer while an acquisition is sent back (another process resized) leaves no slot in Redis", () =>
    Effect.gen(function* () {
      const { b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "60 seconds" })
      const scope = yield* Scope.make()
      const a = yield* RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix, leaseTime: "60 seconds" }).pipe(
        Scope.extend(scope)
      )
      yield* b.resize({ maxUserQueue: 2 }) // a has not heard of it
      let ran = false
      const taker = yield* Effect.fork(a.withSlot(1)(Effect.sync(() => void (ran = true))))
      yield* Effect.yieldNow()
      yield* nextTurn // sent under the old default
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Fiber.await(taker)
      yield* Effect.sleep("300 millis")
      const leases = yield* withRedis((redis) => redis.zcard(`{${prefix}}:leases`))
      // the acquisition was re-sent after the layer closed: whatever it got stays in Redis for a lease
      expect({ leases, ran, interrupted: Exit.isInterrupted(exit) }).toMatchObject({ leases: 0 })
    }).pipe(Effect.scoped)
  )
})
