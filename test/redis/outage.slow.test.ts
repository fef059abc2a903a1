import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { hold } from "../support.js"
import { ownRedisServer, ownRedisStore } from "./helpers.js"
import { startRedis, stop } from "./server.js"

/**
 * A redis-server of the test's own on a free port, and a manager on it; leases long enough
 * that nothing here heals by expiring.
 */
const ownRedis = (options: Partial<Omit<RedisStore.Options, "redis">> = {}) =>
  ownRedisStore({ maxUserQueue: 3, timeout: "300 millis", leaseTime: "60 seconds", ...options })

const untilCount = (q: QueueManager.Service, userId: number, n: number) =>
  Effect.gen(function* () {
    while ((yield* Effect.either(q.activeCount(userId)))._tag === "Left" || (yield* q.activeCount(userId)) !== n) {
      yield* Effect.sleep("100 millis")
    }
  })

describe("Redis down or paused", () => {
  it.live(
    "while Redis is down acquisitions fail with StoreUnavailable; after a restart the limits are exact again",
    () =>
      Effect.gen(function* () {
        const { port, q, server: first } = yield* ownRedis()
        expect(yield* q.tryAcquire(1)).toBe(true)
        yield* stop(first)
        for (const attempt of [q.tryAcquire(1), q.withSlot(2)(Effect.void), q.stats]) {
          const error = yield* Effect.flip(attempt)
          expect(error._tag).toBe("StoreUnavailable")
          // what the client said is kept
          expect(error._tag === "StoreUnavailable" && error.cause).toBeInstanceOf(Error)
        }
        yield* startRedis(port) // empty: this test's Redis keeps nothing on disk
        yield* untilCount(q, 1, 0)
        const results = yield* Effect.replicateEffect(q.tryAcquire(1), 4)
        expect(results).toEqual([true, true, true, false])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "while Redis is down a held slot is lost with LeaseLost, and a waiter gives up instead of hanging",
    () =>
      Effect.gen(function* () {
        const { q, server } = yield* ownRedis({ maxUserQueue: 1, leaseTime: "1500 millis" })
        const holder = yield* Effect.fork(q.withSlot(1)(Effect.never))
        while ((yield* q.stats).inFlight === 0) yield* Effect.yieldNow()
        const waiter = yield* Effect.fork(q.withSlot(1, { onFull: "wait" })(Effect.void))
        while ((yield* q.stats).waiting === 0) yield* Effect.yieldNow()
        yield* stop(server)
        const lost = yield* Fiber.await(holder)
        expect(lost).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 1 })))
        const gaveUp = yield* Effect.flip(Fiber.join(waiter))
        expect(gaveUp._tag).toBe("StoreUnavailable")
        expect(gaveUp.message).toContain("Redis did not confirm the waiting request for a lease time")
        yield* q.awaitIdle // the lost slot is no longer counted as held by this process
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a paused Redis: calls time out with StoreUnavailable, a release made meanwhile lands once, nothing is left over",
    () =>
      Effect.gen(function* () {
        const { q, server } = yield* ownRedis()
        const releaseA = yield* hold(q, 1)
        expect(yield* q.tryAcquire(1)).toBe(true) // a second slot, held by tryAcquire
        server.kill("SIGSTOP")
        const error = yield* Effect.flip(q.tryAcquire(1)) // runs late, once Redis wakes up: it is undone then
        expect(error._tag).toBe("StoreUnavailable")
        yield* releaseA // its release cannot reach Redis: it is retried in the background
        server.kill("SIGCONT")
        // exactly the tryAcquire slot is left: the release landed once, the late acquisition was undone
        yield* untilCount(q, 1, 1)
        yield* Effect.sleep("300 millis")
        expect(yield* q.activeCount(1)).toBe(1)
        expect(yield* Effect.replicateEffect(q.tryAcquire(1), 3)).toEqual([true, true, false])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "closing the layer while Redis is paused does not wait for Redis",
    () =>
      Effect.gen(function* () {
        const { server, url } = yield* ownRedisServer()
        const scope = yield* Scope.make()
        const q = yield* RedisStore.make({ maxUserQueue: 3, redis: url, timeout: "300 millis" }).pipe(
          Scope.extend(scope)
        )
        expect(yield* q.tryAcquire(1)).toBe(true)
        server.kill("SIGSTOP")
        // would hang until the test times out if closing waited for Redis's answer
        yield* Scope.close(scope, Exit.void)
        server.kill("SIGCONT")
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'with onUnavailable: "local", the requests of this process waiting in Redis fail when the fallback begins',
    () =>
      Effect.gen(function* () {
        const { q, server } = yield* ownRedis({ maxUserQueue: 1, onUnavailable: "local" })
        const releaseHeld = yield* hold(q, 1)
        const waiter = yield* Effect.fork(q.withSlot(1, { onFull: "wait" })(Effect.void))
        while ((yield* q.stats).waiting === 0) yield* Effect.sleep("10 millis")
        yield* stop(server)
        // the first local acquisition: Redis would admit the waiter without counting local slots
        expect(yield* q.tryAcquire(3)).toBe(true)
        const error = yield* Effect.flip(Fiber.join(waiter))
        expect(error._tag).toBe("StoreUnavailable")
        yield* releaseHeld
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'with onUnavailable: "local", a Redis outage falls back to per-process limits that count the slots still held in Redis',
    () =>
      Effect.gen(function* () {
        const { port, q, server: first } = yield* ownRedis({ maxUserQueue: 2, onUnavailable: "local" })
        const releaseHeld = yield* hold(q, 1) // a slot in Redis, its body running
        yield* stop(first)
        expect(yield* q.tryAcquire(1)).toBe(true) // a local slot: with the one in Redis, two
        expect(yield* q.tryAcquire(1)).toBe(false) // the limit counts the slot still held in Redis
        expect(yield* q.activeCount(1)).toBe(1) // reads fall back to the local view
        yield* releaseHeld // cannot reach Redis: given back later; a local slot may be taken now
        expect(yield* q.tryAcquire(1)).toBe(true)
        const second = yield* startRedis(port)
        yield* untilCount(q, 1, 0) // Redis answers again: it has nothing
        // while the local slots are held, acquisitions stay local: this process never runs three
        expect(yield* q.tryAcquire(1)).toBe(false)
        yield* q.release(1)
        yield* q.release(1)
        // nothing held locally any more: back to Redis, where two processes share the limit again
        expect(yield* Effect.replicateEffect(q.tryAcquire(1), 3)).toEqual([true, true, false])
        expect(yield* q.stats).toMatchObject({ inFlight: 2 })
        // down again: the local view shows the local slots went back to the local store
        yield* stop(second)
        expect(yield* q.activeCount(1)).toBe(0)
      }).pipe(Effect.scoped),
    30_000
  )
})
