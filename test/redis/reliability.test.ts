/**
 * One test (or a few) per reliability bug found when the Redis store was tried under faults
 * (issue 13): each fails on the code before its fix. The fault-injection suite (test/faults)
 * checks the same promises with real processes and an independent witness.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, FastCheck, Fiber, Logger, LogLevel, Scope, Supervisor } from "effect"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"
import { expireLeases, keysOf, loseLease, loseState, ownRedisStore, twoProcesses, withRedis } from "./helpers.js"
import { startRedis, stop } from "./server.js"

/** Blocks this process's event loop for `millis`, as a pause (SIGSTOP, a long GC) would. */
const freeze = (millis: number) =>
  Effect.sync(() => {
    const until = Date.now() + millis
    while (Date.now() < until) {
      // busy: nothing else runs
    }
  })

/** Lets every callback already due run (ioredis writes, batched calls) before going on. */
const nextTurn = Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))

/** The request ids of `prefix` waiting in Redis. */
const waitingIds = (prefix: string, port?: number) =>
  withRedis((redis) => redis.zrange(`{${prefix}}:texp`, 0, -1), port)

describe("Redis store reliability", () => {
  it.live("a waiter whose wake-up was lost is admitted by the next renewal round", () =>
    Effect.gen(function* () {
      const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "600 millis", timeout: "90 millis" })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.succeed("served")))
      const [id] = yield* eventually("the request waits", waitingIds(prefix), (ids) => ids.length === 1)
      // its wake-up goes to a channel nobody listens on: only a renewal round can tell b
      yield* withRedis(async (redis) => {
        const info = (await redis.hget(`{${prefix}}:tickets`, id!))!
        await redis.hset(`{${prefix}}:tickets`, id!, `${info.slice(0, 18)}{${prefix}}:nowhere`)
      })
      yield* a.release(1)
      expect(yield* Fiber.join(waiter)).toBe("served")
    }).pipe(Effect.scoped)
  )

  it.live("a waiter whose request expired in Redis fails instead of waiting forever", () =>
    Effect.gen(function* () {
      const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "600 millis", timeout: "90 millis" })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.succeed("served")))
      const [id] = yield* eventually("the request waits", waitingIds(prefix), (ids) => ids.length === 1)
      // as after a pause of its process: the request expired in Redis and the next call drops it
      yield* withRedis((redis) => redis.zadd(`{${prefix}}:texp`, "XX", 1, id!))
      const error = yield* Effect.flip(Fiber.join(waiter))
      expect(error).toMatchObject({ _tag: "StoreUnavailable", reason: "the waiting request expired in Redis" })
      expect(yield* a.stats).toMatchObject({ inFlight: 1, waiting: 0 })
    }).pipe(Effect.scoped)
  )

  const strange: ReadonlyArray<[string, string]> = [
    ["spaces", " a user with spaces "],
    ["a newline", "line\nbreak"],
    ["braces", "{braces}:and:colons"],
    ["unicode", "ünïcödé 🚀 名前"],
    ["100 KB", "x".repeat(100_000)]
  ]

  it.live.each(strange)("a user id with %s gets its hand-off, its counts and its snapshot", ([, userId]) =>
    Effect.gen(function* () {
      // 5-minute leases: a lost wake-up would leave the waiter hanging until the test times out
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "5 minutes" })
      expect(yield* a.tryAcquire(userId)).toBe(true)
      expect(yield* b.activeCount(userId)).toBe(1)
      expect(Array.from(yield* b.snapshot)).toEqual([[userId, 1]])
      const waiter = yield* Effect.fork(b.withSlot(userId, { onFull: "wait" })(Effect.succeed("served")))
      yield* eventually("the request waits", a.stats, (s) => s.waiting === 1)
      yield* a.release(userId)
      expect(yield* Fiber.join(waiter)).toBe("served")
      yield* eventually("nothing is held", a.stats, (s) => s.inFlight === 0)
    }).pipe(Effect.scoped)
  )

  it.scoped("a slot taken inside Effect.timeout (bounding only the wait) still stops the work after it when lost", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      const { exit, finished } = yield* loseLease(a, prefix, (work) =>
        Effect.scoped(Effect.zipRight(a.slot(1, { onFull: "wait" }).pipe(Effect.timeout("5 seconds")), work))
      )
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(finished).toBe(false)
    })
  )

  it.scoped("a slot taken in a fiber that another joins stops the joining fiber's work when lost", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      const { exit, finished } = yield* loseLease(a, prefix, (work) =>
        Effect.scoped(
          Effect.gen(function* () {
            const taker = yield* Effect.fork(a.slot(1))
            yield* Fiber.join(taker)
            yield* work
          })
        )
      )
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(finished).toBe(false)
    })
  )

  it.scoped("a raw release gives back a slot of tryAcquire, never the lease of a slot held by withSlot", () =>
    Effect.gen(function* () {
      const { a } = yield* twoProcesses({ maxUserQueue: 2 })
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(a.withSlot(1)(Deferred.await(gate)))
      yield* eventually("withSlot holds", a.stats, (s) => s.inFlight === 1)
      expect(yield* a.tryAcquire(1)).toBe(true)
      yield* a.release(1) // the tryAcquire slot
      yield* a.release(1) // nothing of tryAcquire is left: ignored
      expect(yield* a.activeCount(1)).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.await(holder)).toEqual(Exit.void) // not lost: its lease was never given back
      yield* a.awaitIdle
      expect(yield* a.stats).toMatchObject({ inFlight: 0 })
    })
  )

  it.live.prop(
    "random programs mixing tryAcquire, release and withSlot leave nothing held, and awaitIdle completes",
    [
      FastCheck.array(
        FastCheck.oneof(
          FastCheck.record({ op: FastCheck.constant("try" as const), user: FastCheck.integer({ min: 0, max: 2 }) }),
          FastCheck.record({ op: FastCheck.constant("release" as const), user: FastCheck.integer({ min: 0, max: 2 }) }),
          FastCheck.record({
            op: FastCheck.constant("scoped" as const),
            user: FastCheck.integer({ min: 0, max: 2 }),
            millis: FastCheck.integer({ min: 0, max: 5 })
          })
        ),
        { maxLength: 40 }
      )
    ],
    ([ops]) =>
      Effect.gen(function* () {
        const { a } = yield* twoProcesses({ maxUserQueue: 2 })
        const raw = [0, 0, 0]
        const scoped: Array<Fiber.Fiber<Either.Either<void, { readonly _tag: string }>>> = []
        for (const op of ops) {
          if (op.op === "try") {
            if (yield* a.tryAcquire(op.user)) raw[op.user]!++
          } else if (op.op === "release") {
            yield* a.release(op.user)
            raw[op.user] = Math.max(0, raw[op.user]! - 1)
          } else {
            scoped.push(yield* Effect.fork(Effect.either(a.withSlot(op.user)(Effect.sleep(op.millis)))))
          }
        }
        const exits = yield* Fiber.joinAll(scoped)
        expect(exits.every((e) => e._tag === "Right" || e.left._tag === "QueueFull")).toBe(true)
        for (let user = 0; user < 3; user++) while (raw[user]!-- > 0) yield* a.release(user)
        yield* a.awaitIdle
        yield* eventually("nothing is held", a.stats, (s) => s.inFlight === 0)
      }).pipe(Effect.scoped),
    { fastCheck: { numRuns: 15 } }
  )

  it.live("a failed acquisition starts no retry of its own, and calls that never left are not given back", () =>
    Effect.gen(function* () {
      const fibers = yield* Supervisor.track
      const { q, server } = yield* ownRedisStore({
        maxUserQueue: 3,
        timeout: "200 millis",
        leaseTime: "5 seconds"
      }).pipe(Effect.supervised(fibers))
      const before = (yield* fibers.value).length
      yield* stop(server)
      const failures = yield* Effect.forEach(
        Array.from({ length: 2000 }, (_, i) => i % 10),
        (user) => Effect.flip(q.tryAcquire(user))
      )
      expect(failures.every((e) => e._tag === "StoreUnavailable")).toBe(true)
      // the old store forked a retrying fiber per failed call: thousands
      expect((yield* fibers.value).length).toBeLessThanOrEqual(before)
    }).pipe(Effect.scoped)
  )

  it.live("after a pause of Redis, what timed-out calls did is given back together, in a few calls", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      const { port, q, server } = yield* ownRedisStore({
        maxUserQueue: 0,
        prefix,
        timeout: "150 millis",
        leaseTime: "3 seconds"
      })
      expect(yield* q.tryAcquire("kept")).toBe(true)
      const calls = withRedis((redis) => redis.info("commandstats"), port).pipe(
        Effect.map((info) => Number(/cmdstat_fcall:calls=(\d+)/.exec(info)?.[1] ?? 0))
      )
      const before = yield* calls
      server.kill("SIGSTOP")
      // 300 acquisitions time out: Redis runs them when it wakes up, granting slots nobody uses
      yield* Effect.forEach(
        Array.from({ length: 300 }, (_, i) => i),
        (user) => Effect.either(q.tryAcquire(user)),
        {
          concurrency: "unbounded"
        }
      )
      server.kill("SIGCONT")
      // the late acquisitions run, then the next renewal round (a third of a lease) gives back
      // what they were granted: together, not in a call each
      yield* Effect.sleep("1500 millis")
      const after = yield* calls
      expect(yield* q.stats).toMatchObject({ inFlight: 1 })
      expect(yield* q.activeCount("kept")).toBe(1)
      // about ten batches of 32 acquisitions, a round or two of renewals and give-backs
      expect(after - before).toBeLessThan(30)
    }).pipe(Effect.scoped)
  )

  it.live("a grant answered after its lease could have expired (a paused process) is not used", () =>
    Effect.gen(function* () {
      // a timeout longer than the pause: the answer is read, late, rather than given up on
      const { a } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "600 millis", timeout: "2 seconds" }).pipe(
        Logger.withMinimumLogLevel(LogLevel.Error)
      )
      let ran = false
      const taker = yield* Effect.fork(a.withSlot(1)(Effect.sync(() => void (ran = true))))
      yield* Effect.yieldNow()
      yield* nextTurn // the acquisition has been sent; its answer is not read yet
      yield* freeze(700)
      const error = yield* Effect.flip(Fiber.join(taker))
      expect(error._tag).toBe("StoreUnavailable")
      expect(error.message).toContain("granted too late")
      expect(ran).toBe(false)
      yield* eventually("the slot went back", a.stats, (s) => s.inFlight === 0)
    }).pipe(Effect.scoped)
  )

  it.live("a waiter admitted while its process was paused past its lease does not start its body", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "600 millis", timeout: "90 millis" })
      expect(yield* a.tryAcquire(1)).toBe(true)
      let ran = false
      const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.sync(() => void (ran = true))))
      yield* eventually("the request waits", a.stats, (s) => s.waiting === 1)
      yield* a.release(1)
      yield* nextTurn // the release is sent: Redis admits the waiter and publishes its wake-up meanwhile
      yield* freeze(700)
      const error = yield* Effect.flip(Fiber.join(waiter))
      expect(error._tag).toBe("StoreUnavailable")
      expect(ran).toBe(false)
      yield* eventually("the slot went back", a.stats, (s) => s.inFlight === 0 && s.waiting === 0)
    }).pipe(Effect.scoped)
  )

  it.live(
    "after Redis restarts without its data, the holders of before are stopped at once, not at the next renewal",
    () =>
      Effect.gen(function* () {
        const options: Omit<RedisStore.Options, "redis"> = {
          maxUserQueue: 1,
          timeout: "300 millis",
          leaseTime: "60 seconds"
        }
        const { port, server: first, url, q: a } = yield* ownRedisStore(options)
        const b = yield* RedisStore.make({ ...options, redis: url })
        const holder = yield* Effect.fork(a.withSlot(1)(Effect.never))
        yield* eventually("a holds", a.stats, (s) => s.inFlight === 1)
        yield* stop(first)
        yield* startRedis(port)
        // the next renewal round is 20 s away: a reconnection is what tells a
        const stopped = yield* Fiber.await(holder).pipe(Effect.timeout("6 seconds"))
        expect(stopped).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 1 })))
        yield* eventually("b can take the slot", Effect.either(b.tryAcquire(1)), (r) => r._tag === "Right" && r.right)
      }).pipe(Effect.scoped),
    { timeout: 30_000 }
  )

  it.live("Redis losing its state is noticed on the next answer of any call", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "60 seconds" })
      const holder = yield* Effect.fork(a.withSlot(1)(Effect.never))
      yield* eventually("a holds", a.stats, (s) => s.inFlight === 1)
      yield* loseState(prefix)
      yield* a.activeCount(2)
      expect(yield* Fiber.await(holder).pipe(Effect.timeout("2 seconds"))).toEqual(
        Exit.fail(new QueueManager.LeaseLost({ userId: 1 }))
      )
    }).pipe(Effect.scoped)
  )

  it.scoped("every expired lease is purged in one call, however many", () =>
    Effect.gen(function* () {
      const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "60 seconds" })
      yield* Effect.forEach(
        Array.from({ length: 1500 }, (_, i) => i),
        (user) => a.tryAcquire(user),
        {
          concurrency: 50
        }
      )
      yield* expireLeases(prefix)
      expect(yield* b.stats).toMatchObject({ inFlight: 0, activeUsers: 0 })
    })
  )

  it.scoped(
    "an expired waiting request is never admitted, even when the slot it waits for frees in the same call",
    () =>
      Effect.gen(function* () {
        const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "60 seconds" })
        expect(yield* a.tryAcquire(1)).toBe(true)
        const waiter = yield* Effect.fork(a.withSlot(1, { onFull: "wait" })(Effect.succeed("served")))
        const [id] = yield* eventually("the request waits", waitingIds(prefix), (ids) => ids.length === 1)
        // a's process stopped renewing both: the slot and the request expire together
        yield* expireLeases(prefix)
        yield* withRedis((redis) => redis.zadd(`{${prefix}}:texp`, "XX", 1, id!))
        expect(yield* b.stats).toMatchObject({ inFlight: 0, waiting: 0 })
        yield* Fiber.interrupt(waiter)
      })
  )

  it.scoped(
    "a waiter's slot lives as long as its request would have: a dead process's slots come back in one lease",
    () =>
      Effect.gen(function* () {
        const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "60 seconds" })
        expect(yield* a.tryAcquire(1)).toBe(true)
        const waiter = yield* Effect.fork(a.withSlot(1, { onFull: "wait" })(Effect.never))
        const [id] = yield* eventually("the request waits", waitingIds(prefix), (ids) => ids.length === 1)
        const expires = Date.now() + 30_000
        yield* withRedis((redis) => redis.zadd(`{${prefix}}:texp`, "XX", expires, id!))
        yield* a.release(1)
        yield* eventually("admitted", a.stats, (s) => s.waiting === 0)
        const score = yield* withRedis((redis) => redis.zscore(`{${prefix}}:leases`, id!))
        expect(Number(score)).toBe(expires)
        yield* Fiber.interrupt(waiter)
      })
  )

  it.live("closing the layer stops its holders before their slots are given back", () =>
    Effect.gen(function* () {
      const { b, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      const scope = yield* Scope.make()
      const a = yield* RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix }).pipe(Scope.extend(scope))
      let stoppedAt: number | undefined
      const started = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        a.withSlot(1)(
          Effect.zipRight(
            Deferred.succeed(started, undefined),
            Effect.onInterrupt(Effect.never, () => Effect.sync(() => void (stoppedAt = Date.now())))
          )
        )
      )
      yield* Deferred.await(started)
      yield* Scope.close(scope, Exit.void)
      expect(stoppedAt).toBeDefined()
      expect(Exit.isInterrupted(yield* Fiber.await(holder))).toBe(true)
      expect(yield* b.tryAcquire(1)).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("closing the layer waits for an uninterruptible holder, and keeps its lease meanwhile", () =>
    Effect.gen(function* () {
      const { b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "600 millis", timeout: "90 millis" })
      const scope = yield* Scope.make()
      const a = yield* RedisStore.make({
        maxUserQueue: 1,
        redis: redisUrl,
        prefix,
        leaseTime: "600 millis",
        timeout: "90 millis"
      }).pipe(Scope.extend(scope))
      let done = false
      const started = yield* Deferred.make<void>()
      yield* Effect.fork(
        a.withSlot(1)(
          Effect.uninterruptible(
            Effect.zipRight(
              Deferred.succeed(started, undefined),
              Effect.sleep("1500 millis").pipe(Effect.tap(() => (done = true)))
            )
          )
        )
      )
      yield* Deferred.await(started)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      // two lease times later the slot is still a's: its lease was renewed while the body ran
      yield* Effect.sleep("1200 millis")
      expect(yield* b.tryAcquire(1)).toBe(false)
      yield* Fiber.join(closing)
      expect(done).toBe(true)
      expect(yield* b.tryAcquire(1)).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("closing the layer gives back the slots of tryAcquire, which nobody can release after it", () =>
    Effect.gen(function* () {
      const { b, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      const scope = yield* Scope.make()
      const a = yield* RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix }).pipe(Scope.extend(scope))
      expect(yield* a.tryAcquire(1)).toBe(true)
      yield* Scope.close(scope, Exit.void)
      yield* eventually("the slot went back", b.stats, (s) => s.inFlight === 0)
    }).pipe(Effect.scoped)
  )

  it.live("drain waits for an acquisition sent before the shutdown, and its body", () =>
    Effect.gen(function* () {
      const { a } = yield* twoProcesses({ maxUserQueue: 1 })
      let done = false
      const taker = yield* Effect.fork(a.withSlot(1)(Effect.sleep("100 millis").pipe(Effect.tap(() => (done = true)))))
      yield* Effect.yieldNow()
      yield* nextTurn // sent, not answered yet
      yield* a.drain
      expect(done).toBe(true)
      expect(yield* Fiber.await(taker)).toEqual(Exit.void)
    }).pipe(Effect.scoped)
  )

  it.live("a request that starts waiting after the shutdown (sent before it) is refused and leaves its line", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1 })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.void))
      yield* Effect.yieldNow()
      yield* nextTurn
      yield* b.drain
      expect(yield* Effect.flip(Fiber.join(waiter))).toEqual(new QueueManager.QueueShutdown({ userId: 1 }))
      yield* eventually("nobody waits in Redis", a.stats, (s) => s.waiting === 0)
    }).pipe(Effect.scoped)
  )

  it.scoped(
    "a resize in one process applies to every process: their waiters are admitted, their newcomers wait their turn",
    () =>
      Effect.gen(function* () {
        const { a, b } = yield* twoProcesses({ maxUserQueue: 1 })
        expect(yield* a.tryAcquire(1)).toBe(true)
        const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.never))
        yield* eventually("b waits", a.stats, (s) => s.waiting === 1)
        yield* a.resize({ maxUserQueue: 2 })
        // b's waiter got the room the resize made, before any newcomer of b
        yield* eventually("b's waiter is admitted", a.stats, (s) => s.waiting === 0 && s.inFlight === 2)
        expect(yield* b.tryAcquire(1)).toBe(false)
        expect(b.maxUserQueue).toBe(2) // b heard of the new default with its last answer
        expect(yield* b.tryAcquire(2)).toBe(true)
        expect(yield* b.tryAcquire(2)).toBe(true)
        expect(yield* b.tryAcquire(2)).toBe(false)
        expect((yield* b.stats).maxUserQueue).toBe(2)
        yield* Fiber.interrupt(waiter)
      })
  )

  it.scoped("a process computing limits under an old default is sent back to compute them again", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1 })
      expect(yield* a.tryAcquire(1)).toBe(true)
      yield* a.resize({ maxUserQueue: 3 })
      // b has not heard of it: its acquisition is computed under 1 (full), sent back, and computed again under 3
      expect(b.maxUserQueue).toBe(1)
      expect(yield* Effect.all([b.tryAcquire(1), b.tryAcquire(1), b.tryAcquire(1)])).toEqual([true, true, false])
    })
  )

  it.scoped("fencing tokens only grow across processes, and across a loss of Redis's state", () =>
    Effect.gen(function* () {
      const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 0 })
      const tokens: Array<number> = []
      for (let i = 0; i < 10; i++) {
        const q = i % 2 === 0 ? a : b
        tokens.push(yield* q.withSlot(i)((slot) => Effect.succeed(slot.token)))
        if (i === 5) yield* loseState(prefix)
      }
      tokens.push((yield* Effect.scoped(a.slot(99))).token)
      expect(tokens).toEqual([...tokens].sort((x, y) => x - y))
      expect(new Set(tokens).size).toBe(tokens.length)
    })
  )

  it.scoped("keys of a layout this version does not know are left alone", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      yield* withRedis((redis) => redis.hset(`{${prefix}}:h`, "layout", "4", "epoch", "x"))
      const error = yield* Effect.flip(RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix }))
      expect(error._tag).toBe("StoreUnavailable")
      expect(yield* keysOf(prefix)).toEqual([`{${prefix}}:h`])
    })
  )
})
