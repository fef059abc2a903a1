import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, HashMap, Layer, Logger, Option, Scope, Supervisor } from "effect"
import { createServer, type Server, type Socket } from "node:net"
import { Redis } from "ioredis"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { evalScripts, type Script } from "../../src/internal/redis/scripts.js"
import { eventually } from "../eventually.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"
import { freePort, startRedis } from "./server.js"

/** Two managers on one prefix, as two processes would be (separate connections, separate process ids). */
const twoProcesses = (options: Omit<RedisStore.Options, "redis" | "prefix">) =>
  Effect.gen(function* () {
    const prefix = uniquePrefix()
    yield* Effect.addFinalizer(() => deleteKeys(prefix))
    const a = yield* RedisStore.make({ ...options, redis: redisUrl, prefix })
    const b = yield* RedisStore.make({ ...options, redis: redisUrl, prefix })
    return { a, b, prefix }
  })

const keysOf = (prefix: string) =>
  Effect.promise(async () => {
    const redis = new Redis(redisUrl)
    const keys = await redis.keys(`{${prefix}}:*`)
    await redis.quit()
    return keys.sort()
  })

/** Runs `f` on a connection of its own to the shared Redis, or to the test's own Redis on `port`. */
const withRedis = <A>(f: (redis: Redis) => Promise<A>, port?: number) =>
  Effect.promise(async () => {
    const redis = port === undefined ? new Redis(redisUrl) : new Redis({ port, host: "127.0.0.1" })
    try {
      return await f(redis)
    } finally {
      await redis.quit()
    }
  })

/**
 * Makes the leases `ids` (or every lease, without `ids`) expired in Redis, as if their process
 * had stopped renewing them. The store's scripts also keep a bound of the earliest expiry,
 * before which they do not look for expired leases: it goes too.
 */
const expireLeases = (prefix: string, ids?: ReadonlyArray<string>) =>
  withRedis(async (redis) => {
    for (const id of ids ?? (await redis.zrange(`{${prefix}}:leases`, 0, -1))) {
      await redis.zadd(`{${prefix}}:leases`, "XX", 1, id)
    }
    await redis.hdel(`{${prefix}}:h`, "expiry")
  })

/** What the waiting requests under `prefix` leave in Redis: the hash, users 1's and 2's lines, the requests' expiry and the turn order. */
const waitingState = (prefix: string) =>
  withRedis(async (redis) => [
    await redis.hgetall(`{${prefix}}:h`),
    await redis.lrange(`{${prefix}}:line:n1`, 0, -1),
    await redis.lrange(`{${prefix}}:line:n2`, 0, -1),
    await redis.zrange(`{${prefix}}:texp`, 0, -1),
    await redis.zrange(`{${prefix}}:ready`, 0, -1)
  ])

/** Puts a string in place of the leases under `prefix`; the effect it returns puts them back. */
const breakLeases = (prefix: string) =>
  Effect.as(
    withRedis(async (redis) => {
      await redis.rename(`{${prefix}}:leases`, `{${prefix}}:aside`)
      await redis.set(`{${prefix}}:leases`, "oops")
    }),
    withRedis((redis) => redis.rename(`{${prefix}}:aside`, `{${prefix}}:leases`))
  )

/**
 * The store's scripts run directly (through EVAL, which any Redis has) on keys of their own,
 * configured with no global cap and deleted after the test; `batch` sends operations as one
 * process with a lease of a minute would.
 */
const rawScripts = Effect.gen(function* () {
  const prefix = uniquePrefix()
  yield* Effect.addFinalizer(() => deleteKeys(prefix))
  const run = (script: Script, ...args: ReadonlyArray<string | number>) =>
    withRedis((redis) => redis.eval(evalScripts[script], 0, `{${prefix}}`, ...args))
  const batch = (...ops: ReadonlyArray<string | number>) => run("batch", 60_000, "chan", 0, 0, ...ops)
  yield* run("configure", 0)
  return { prefix, run, batch }
})

/** A logger keeping the messages of warnings, and the layer that installs it. */
const warningLog = () => {
  const warnings: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel._tag === "Warning") warnings.push(String(message))
  })
  return { warnings, layer: Logger.replace(Logger.defaultLogger, logger) }
}

/**
 * Has user 9 wait behind a slot of its own (a limit of 1): while anyone waits, every script
 * looks at the waiting lines, requests and turn order, which it skips while nobody waits.
 */
const someoneWaits = (manager: QueueManager.Service) =>
  Effect.gen(function* () {
    yield* manager.tryAcquire(9)
    yield* Effect.fork(manager.withSlot(9, { onFull: "wait" })(Effect.void))
    yield* eventually("someone waits", manager.stats, (s) => s.waiting === 1)
  })

describe("Redis store", () => {
  it.scoped("limits are shared across processes", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 3 })
      expect([yield* a.tryAcquire(1), yield* b.tryAcquire(1), yield* a.tryAcquire(1)]).toEqual([true, true, true])
      expect(yield* b.tryAcquire(1)).toBe(false)
      expect(yield* b.activeCount(1)).toBe(3)
      expect(Array.from(yield* b.snapshot)).toEqual([[1, 3]])
      yield* a.release(1)
      expect(yield* b.tryAcquire(1)).toBe(true)
    })
  )

  it.scoped("keys are prefixed and a user with nothing held or waiting leaves no key", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* a.withSlot("alice")(a.withSlot(-100)(Effect.void))
      const fiber = yield* Effect.fork(a.withSlot("alice")(Effect.never))
      yield* Effect.fork(a.withSlot("alice", { onFull: "wait" })(Effect.void))
      while ((yield* a.stats).waiting === 0) yield* Effect.yieldNow()
      const busy = yield* keysOf(prefix)
      expect(busy.every((key) => key.startsWith(`{${prefix}}:`))).toBe(true)
      expect(busy).toContain(`{${prefix}}:line:salice`)
      yield* Fiber.interrupt(fiber)
      while ((yield* a.stats).inFlight > 0) yield* Effect.yieldNow()
      // only the bookkeeping hash stays: the cap, the counters, the turn counter
      expect(yield* keysOf(prefix)).toEqual([`{${prefix}}:h`])
    })
  )

  it.scoped("the hash and the lease set are kept in the encodings that look a field up in one step", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 3 })
      const encodings = withRedis(async (redis) => [
        await redis.object("ENCODING", `{${prefix}}:h`),
        await redis.object("ENCODING", `{${prefix}}:leases`)
      ])
      yield* a.tryAcquire(1)
      // Redis's default for so few entries would be listpacks, which are scanned
      expect(yield* encodings).toEqual(["hashtable", "skiplist"])
      // the hash made again after Redis lost it (a restart without persistence)
      yield* withRedis((redis) => redis.del(`{${prefix}}:h`))
      yield* a.tryAcquire(2)
      expect(yield* encodings).toEqual(["hashtable", "skiplist"])
    })
  )

  it.scoped("a waiter in one process is woken at once by a release in another, first-in first-out", () =>
    Effect.gen(function* () {
      // a lease of 5 minutes: were the hand-off left to the renewal poll, this test would time out
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "5 minutes" } as never)
      expect(yield* b.tryAcquire(7)).toBe(true)
      const order: Array<string> = []
      const first = yield* Effect.fork(a.withSlot(7, { onFull: "wait" })(Effect.sync(() => order.push("first"))))
      while ((yield* a.stats).waiting < 1) yield* Effect.yieldNow()
      const second = yield* Effect.fork(b.withSlot(7, { onFull: "wait" })(Effect.sync(() => order.push("second"))))
      while ((yield* a.stats).waiting < 2) yield* Effect.yieldNow()
      yield* b.release(7)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      expect(order).toEqual(["first", "second"])
      // b's release is not waited for: b's own calls see it at once, a's within a round trip
      expect(yield* b.stats).toMatchObject({ inFlight: 0, waiting: 0, waitingUsers: 0 })
      yield* eventually("a sees b's release", a.stats, (s) => s.inFlight === 0 && s.waiting === 0)
    })
  )

  it.scoped("a release is not waited for, yet every later call of the same process sees it", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1 })
      for (let i = 0; i < 50; i++) {
        expect(yield* a.withSlot(i % 3)(Effect.succeed(i))).toBe(i)
        expect(yield* a.activeCount(i % 3)).toBe(0)
        expect(yield* a.tryAcquire(i % 3)).toBe(true)
        yield* a.release(i % 3)
        expect(HashMap.size(yield* a.snapshot)).toBe(0)
      }
      yield* eventually("b sees a's releases", b.stats, (s) => s.inFlight === 0)
      expect(yield* b.stats).toMatchObject({ acquired: 100, inFlight: 0, activeUsers: 0 })
    })
  )

  it.scoped("freed global capacity goes round-robin across users waiting in different processes", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 0, maxTotal: 1 })
      expect(yield* a.tryAcquire("x")).toBe(true)
      const order: Array<string> = []
      const enqueue = (q: QueueManager.Service, user: string, label: string) =>
        Effect.gen(function* () {
          const before = (yield* q.stats).waiting
          const fiber = yield* Effect.fork(q.withSlot(user, { onFull: "wait" })(Effect.sync(() => order.push(label))))
          while ((yield* q.stats).waiting === before) yield* Effect.yieldNow()
          return fiber
        })
      const fibers = [
        yield* enqueue(a, "heavy", "heavy1"),
        yield* enqueue(a, "heavy", "heavy2"),
        yield* enqueue(a, "heavy", "heavy3"),
        yield* enqueue(b, "light", "light1"),
        yield* enqueue(b, "light", "light2")
      ]
      yield* a.release("x")
      yield* Effect.forEach(fibers, Fiber.join)
      expect(order).toEqual(["heavy1", "light1", "heavy2", "light2", "heavy3"])
    })
  )

  it.scoped("an interrupted waiter is removed from Redis", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1 })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.void))
      while ((yield* a.stats).waiting === 0) yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiter)
      expect(yield* a.stats).toMatchObject({ waiting: 0, waitingUsers: 0, inFlight: 1 })
      yield* a.release(1)
      expect(yield* a.stats).toMatchObject({ inFlight: 0, activeUsers: 0 })
    })
  )

  /**
   * Runs `hold` (which takes a slot of user 1 on `a`, then never ends) in a fiber, makes its
   * lease lost the way a long pause looks from Redis (expired and purged), and returns how the
   * fiber ended and whether the work after `Effect.never` ran.
   */
  const loseLease = (
    a: QueueManager.Service,
    prefix: string,
    hold: (work: Effect.Effect<void>) => Effect.Effect<void, unknown>
  ) =>
    Effect.gen(function* () {
      let finished = false
      const fiber = yield* Effect.fork(
        hold(
          Effect.zipRight(
            Effect.never,
            Effect.sync(() => void (finished = true))
          )
        )
      )
      while ((yield* a.stats).inFlight === 0) yield* Effect.yieldNow()
      yield* withRedis((redis) => redis.del(`{${prefix}}:leases`, `{${prefix}}:h`))
      return { exit: yield* Fiber.await(fiber), finished }
    })

  it.scoped(
    "a lost lease interrupts the body and fails withSlot with LeaseLost",
    () =>
      Effect.gen(function* () {
        const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "300 millis" })
        const { exit, finished } = yield* loseLease(a, prefix, (work) => a.withSlot(1)(work))
        expect(exit).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 1 })))
        expect(finished).toBe(false)
      }),
    { timeout: 10_000 }
  )

  it.live(
    "after LeaseLost the caller goes on as before: it is not left interrupted",
    () =>
      Effect.gen(function* () {
        const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "300 millis" })
        let after = ""
        const { exit } = yield* loseLease(a, prefix, (work) =>
          a
            .withSlot(1)(work)
            .pipe(
              Effect.catchTag("LeaseLost", () =>
                // an interruptible wait, then a new slot: an interrupted fiber would stop here
                Effect.zipRight(
                  Effect.sleep("20 millis"),
                  a.withSlot(1)(Effect.sync(() => void (after = "served again")))
                )
              )
            )
        )
        expect(exit).toEqual(Exit.void)
        expect(after).toBe("served again")
      }).pipe(Effect.scoped),
    { timeout: 10_000 }
  )

  it.live(
    "nested withSlot: each lost lease fails its own withSlot, and a lost outer lease stops the outer work",
    () =>
      Effect.gen(function* () {
        const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "300 millis" })
        // both leases lost at once: the inner withSlot is interrupted, the outer one fails
        let wentOn = false
        const both = yield* Effect.fork(
          a.withSlot(2)(
            Effect.zipRight(
              Effect.either(a.withSlot(3)(Effect.never)),
              Effect.zipRight(
                Effect.sleep("100 millis"),
                Effect.sync(() => void (wentOn = true))
              )
            )
          )
        )
        yield* eventually("both held", a.stats, (s) => s.inFlight === 2)
        yield* withRedis((redis) => redis.del(`{${prefix}}:leases`, `{${prefix}}:h`))
        expect(yield* Fiber.await(both)).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 2 })))
        expect(wentOn).toBe(false)
        // only the inner lease lost: the inner withSlot fails with it, the outer work goes on
        const inner = yield* Effect.fork(
          a.withSlot(4)(Effect.flip(a.withSlot(5)(Effect.zipRight(Effect.sleep("50 millis"), Effect.never))))
        )
        yield* eventually("both held", a.stats, (s) => s.inFlight === 2)
        const five = (yield* withRedis((redis) => redis.zrange(`{${prefix}}:leases`, 0, -1))).find((id) =>
          id.endsWith(":n5")
        )!
        yield* expireLeases(prefix, [five])
        yield* a.tryAcquire(6) // its script purges the expired lease; the next renewal tells the holder
        expect(yield* Fiber.join(inner)).toEqual(new QueueManager.LeaseLost({ userId: 5 }))
      }).pipe(Effect.scoped),
    { timeout: 10_000 }
  )

  it.live(
    "a lost lease stops the work of withSlot, not the other fibers its caller started",
    () =>
      Effect.gen(function* () {
        const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "300 millis" })
        let other: Option.Option<Exit.Exit<void>> = Option.none()
        const { exit } = yield* loseLease(a, prefix, (work) =>
          Effect.gen(function* () {
            const sibling = yield* Effect.fork(Effect.never)
            const lost = yield* Effect.flip(a.withSlot(1)(work))
            yield* Effect.sleep("20 millis") // time for an interruption of the sibling to land
            other = yield* Fiber.poll(sibling)
            yield* Fiber.interrupt(sibling)
            return yield* Effect.fail(lost)
          })
        )
        expect(exit).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 1 })))
        expect(Option.isNone(other)).toBe(true)
      }).pipe(Effect.scoped),
    { timeout: 10_000 }
  )

  it.scoped(
    "a lost lease interrupts the fiber holding a slot, and its scope releases nothing twice",
    () =>
      Effect.gen(function* () {
        const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "300 millis" })
        const { exit, finished } = yield* loseLease(a, prefix, (work) =>
          Effect.scoped(Effect.zipRight(a.slot(1), work))
        )
        expect(Exit.isInterrupted(exit)).toBe(true)
        expect(finished).toBe(false)
        // the slot someone else now holds is not given back by the lost holder's scope
        expect(yield* b.tryAcquire(1)).toBe(true)
        expect(yield* a.stats).toMatchObject({ inFlight: 1, activeUsers: 1 })
      }),
    { timeout: 10_000 }
  )

  it.live(
    "held slots and waiting requests outlive many lease times while their process renews them, more than one batch of them",
    () =>
      Effect.gen(function* () {
        const { a, b } = yield* twoProcesses({ maxUserQueue: 0, maxTotal: 1201, leaseTime: "300 millis" })
        // 1,201 slots: more than one renewal round trip carries (1,000)
        yield* Effect.forEach(
          Array.from({ length: 1201 }, (_, i) => i),
          (user) => a.tryAcquire(user),
          {
            concurrency: 50,
            discard: true
          }
        )
        const waiter = yield* Effect.fork(a.withSlot("late", { onFull: "wait" })(Effect.succeed("served")))
        while ((yield* b.stats).waiting === 0) yield* Effect.yieldNow()
        yield* Effect.sleep("1500 millis")
        expect(yield* b.stats).toMatchObject({ inFlight: 1201, activeUsers: 1201, waiting: 1 })
        expect(yield* a.stats).toMatchObject({ inFlight: 1201, waiting: 1 })
        yield* a.release(1200)
        expect(yield* Fiber.join(waiter)).toBe("served")
      }).pipe(Effect.scoped),
    { timeout: 20_000 }
  )

  it.scoped("a key holding the wrong type gets a clear error naming it and changes nothing", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* someoneWaits(a)
      expect(yield* a.tryAcquire(1)).toBe(true)
      const before = yield* a.stats
      const expected = { h: "hash", leases: "zset", texp: "zset", ready: "zset", "line:n2": "list" }
      for (const [name, type] of Object.entries(expected)) {
        const key = `{${prefix}}:${name}`
        const aside = `{${prefix}}:aside`
        // the real key (if any) is set aside while a string stands in its place
        const existed = yield* withRedis(async (redis) => {
          const had = (await redis.exists(key)) === 1
          if (had) await redis.rename(key, aside)
          await redis.set(key, "oops")
          return had
        })
        const error = yield* a.tryAcquire(2).pipe(Effect.flip)
        expect(error._tag).toBe("StoreUnavailable")
        expect(error.message).toContain(`WRONGTYPE key ${key} holds a string, the queue store needs a ${type}`)
        yield* withRedis(async (redis) => {
          await redis.del(key)
          if (existed) await redis.rename(aside, key)
        })
        expect(yield* a.stats).toEqual(before)
      }
      expect(yield* a.tryAcquire(2)).toBe(true)
    })
  )

  it.scoped(
    "the first request to wait reads the waiting keys before it writes: a wrong type is named, nothing changes",
    () =>
      Effect.gen(function* () {
        const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
        expect(yield* a.tryAcquire(1)).toBe(true)
        const before = yield* a.stats
        const hashBefore = yield* withRedis((redis) => redis.hgetall(`{${prefix}}:h`))
        // nobody waits yet, so no script has looked at these keys
        const expected = { texp: "zset", ready: "zset", "line:n1": "list" }
        for (const [name, type] of Object.entries(expected)) {
          const key = `{${prefix}}:${name}`
          yield* withRedis((redis) => redis.set(key, "oops"))
          const error = yield* a.withSlot(1, { onFull: "wait" })(Effect.void).pipe(Effect.flip)
          expect(error._tag).toBe("StoreUnavailable")
          expect(error.message).toContain(`WRONGTYPE key ${key} holds a string, the queue store needs a ${type}`)
          expect(yield* withRedis((redis) => redis.type(key))).toBe("string")
          yield* withRedis((redis) => redis.del(key))
          expect(yield* a.stats).toEqual(before)
          expect(yield* withRedis((redis) => redis.hgetall(`{${prefix}}:h`))).toEqual(hashBefore)
        }
        yield* someoneWaits(a)
      })
  )

  it.scoped("a resize that would admit a waiter reads the leases before it writes: a wrong type changes nothing", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const waiter = yield* Effect.fork(a.withSlot(1, { onFull: "wait" })(Effect.succeed("served")))
      yield* eventually("the request waits", a.stats, (s) => s.waiting === 1)
      const before = yield* waitingState(prefix)
      const restore = yield* breakLeases(prefix)
      const error = yield* Effect.flip(a.resize({ maxUserQueue: 2 }))
      expect(error.message).toContain(`WRONGTYPE key {${prefix}}:leases holds a string, the queue store needs a zset`)
      expect(yield* waitingState(prefix)).toEqual(before)
      yield* restore
      yield* a.resize({ maxUserQueue: 2 })
      expect(yield* Fiber.join(waiter)).toBe("served")
    })
  )

  it.scoped("an interrupted waiter's leave reads the leases before it writes: a wrong type changes nothing", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const first = yield* Effect.fork(a.withSlot(1, { onFull: "wait" })(Effect.void))
      // behind it, one that needs no room under the user's limit: once the first leaves, it is admitted
      yield* Effect.fork(a.withSlot(1, { onFull: "wait", bypassUserLimit: true })(Effect.never))
      yield* eventually("both wait", a.stats, (s) => s.waiting === 2)
      const before = yield* waitingState(prefix)
      const restore = yield* breakLeases(prefix)
      yield* Fiber.interrupt(first) // its leave fails (and is not retried: the request expires)
      expect(yield* waitingState(prefix)).toEqual(before)
      yield* restore
    })
  )

  it.scoped("keys another version of the library wrote under the prefix fail the layer with a clear error", () =>
    Effect.gen(function* () {
      for (const [key, write] of [
        ["h", (redis: Redis, key: string) => redis.hset(key, "seq", 4)],
        ["h", (redis: Redis, key: string) => redis.hset(key, "layout", "999")],
        ["counts", (redis: Redis, key: string) => redis.hset(key, "n1", 2)]
      ] as const) {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => deleteKeys(prefix))
        yield* withRedis((redis) => write(redis, `{${prefix}}:${key}`))
        const error = yield* Effect.flip(RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix }))
        expect(error.message).toContain(`{${prefix}}:${key} was written by another version of effect-queue-manager`)
      }
    })
  )

  it.live("a renewal that leaves a lease expiring earlier than any before it is still purged on time", () =>
    Effect.gen(function* () {
      const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const [id] = yield* withRedis((redis) => redis.zrange(`{${prefix}}:leases`, 0, -1))
      // as after Redis's clock went back: the lease is renewed to end sooner than it did
      // (the same code as the library's renew function, run as a script: any Redis has EVAL)
      yield* withRedis((redis) => redis.eval(evalScripts.renew, 0, `{${prefix}}`, 1, id!))
      yield* Effect.sleep("20 millis")
      expect(yield* b.stats).toMatchObject({ inFlight: 0, activeUsers: 0 })
    }).pipe(Effect.scoped)
  )

  it.scoped("a key of the wrong type fails only the operations that need it, not the others of its round trip", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* someoneWaits(a)
      yield* withRedis((redis) => redis.set(`{${prefix}}:line:n2`, "oops"))
      // asked for within one turn: one round trip carries all three
      const [first, broken, third] = yield* Effect.all(
        [a.tryAcquire(1), Effect.flip(a.tryAcquire(2)), a.tryAcquire(3)],
        {
          concurrency: "unbounded"
        }
      )
      expect([first, third]).toEqual([true, true])
      expect(broken.message).toContain(`WRONGTYPE key {${prefix}}:line:n2 holds a string`)
      expect(yield* a.stats).toMatchObject({ inFlight: 3, activeUsers: 3, acquired: 3 })
      expect(Array.from(yield* a.snapshot).sort()).toEqual([
        [1, 1],
        [3, 1],
        [9, 1]
      ])
      yield* withRedis((redis) => redis.del(`{${prefix}}:line:n2`))
    })
  )

  it.live("a resize that admits thousands of users at once counts every one of them", () =>
    Effect.gen(function* () {
      // more users than one Lua call could write back in one command (about 8,000 values)
      const users = Array.from({ length: 4_100 }, (_, i) => i)
      const { a } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* Effect.forEach(users, (user) => a.tryAcquire(user), { concurrency: "unbounded" })
      const gate = yield* Deferred.make<void>()
      const waiters = yield* Effect.forEach(users, (user) =>
        Effect.fork(a.withSlot(user, { onFull: "wait" })(Deferred.await(gate)))
      )
      yield* eventually("everyone waits", a.stats, (s) => s.waiting === users.length)
      yield* a.resize({ maxUserQueue: 2 })
      // a call admits at most a thousand (a script must not hold Redis long); the next calls go on
      expect(yield* eventually("everyone is admitted", a.stats, (s) => s.waiting === 0)).toMatchObject({
        inFlight: 2 * users.length,
        activeUsers: users.length
      })
      expect(HashMap.every(yield* a.snapshot, (n) => n === 2)).toBe(true)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll(waiters)
      expect(yield* a.stats).toMatchObject({ inFlight: users.length, acquired: 2 * users.length })
    }).pipe(Effect.scoped)
  )

  it.live("a waiter that gives up in the very call that admits it leaves no slot behind", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 0, maxTotal: 1, leaseTime: "60 seconds" })
      const gate = yield* Deferred.make<void>()
      yield* Effect.fork(a.withSlot(1)(Deferred.await(gate)))
      yield* eventually("the slot is held", a.stats, (s) => s.inFlight === 1)
      const waiter = yield* Effect.fork(a.withSlot(2, { onFull: "wait" })(Deferred.await(gate)))
      yield* eventually("the request waits", a.stats, (s) => s.waiting === 1)
      // user 1's lease runs out in Redis: the next call's purge frees it and admits the waiter,
      // and that call is the waiter's leave, which must find the lease it was just granted
      yield* expireLeases(prefix)
      yield* Fiber.interrupt(waiter)
      expect(Array.from(yield* a.snapshot)).toEqual([])
    }).pipe(Effect.scoped)
  )

  it.live("a waiter whose limit rises by more than a call admits at once gets up to its limit, not one more", () =>
    Effect.gen(function* () {
      const { run, batch } = yield* rawScripts
      yield* batch("a", "n1", 1, 0, "p:0:n1")
      for (let k = 0; k < 15; k++) {
        yield* batch(...Array.from({ length: 100 }, (_, i) => ["a", "n1", 1, 2, `p:${k * 100 + i + 1}:n1`]).flat())
      }
      // a request under a limit of 1,001: the call admits a thousand waiters, the next calls none
      yield* batch("a", "n1", 1001, 2, "p:new:n1")
      yield* run("read", "")
      expect(yield* run("read", "n1")).toBe(1001)
    }).pipe(Effect.scoped)
  )

  it.live(
    "a request whose changed limit would admit a waiter reads the leases first: a wrong type changes nothing",
    () =>
      Effect.gen(function* () {
        const { prefix, batch } = yield* rawScripts
        yield* batch("a", "n1", 1, 0, "p:0:n1")
        yield* batch("a", "n1", 1, 2, "p:1:n1")
        const state = withRedis(async (redis) => [
          await redis.hgetall(`{${prefix}}:h`),
          await redis.lrange(`{${prefix}}:line:n1`, 0, -1),
          await redis.zrange(`{${prefix}}:texp`, 0, -1)
        ])
        const before = yield* state
        yield* breakLeases(prefix)
        const [answer] = (yield* batch("a", "n1", 2, 2, "p:2:n1")) as Array<[string, string]>
        expect(answer[0]).toBe("!")
        expect(answer[1]).toContain("WRONGTYPE")
        expect(yield* state).toEqual(before)
      }).pipe(Effect.scoped)
  )

  it.scoped("a lease set of the wrong type fails the grants of a round trip, not its refusals", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      expect(yield* a.tryAcquire(1)).toBe(true)
      const before = yield* a.stats
      const restore = yield* breakLeases(prefix)
      // asked for within one turn: one round trip carries both; granted leases join the set at its end
      const [refused, broken] = yield* Effect.all([a.tryAcquire(1), Effect.flip(a.tryAcquire(2))], {
        concurrency: "unbounded"
      })
      expect(refused).toBe(false)
      expect(broken.message).toContain(`WRONGTYPE key {${prefix}}:leases holds a string, the queue store needs a zset`)
      yield* restore
      expect(yield* a.stats).toEqual({ ...before, refused: { ...before.refused, user: before.refused.user + 1 } })
    })
  )

  it.live(
    "a script that fails after handing out slots still counts them, and a line deleted from outside admits no one",
    () =>
      Effect.gen(function* () {
        const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 5, maxTotal: 2 })
        yield* a.tryAcquire(1)
        yield* a.tryAcquire(5)
        const two = yield* Effect.fork(b.withSlot(2, { onFull: "wait" })(Effect.succeed("two")))
        const four = yield* Effect.fork(b.withSlot(4, { onFull: "wait" })(Effect.succeed("four")))
        yield* eventually("both wait for the cap", b.stats, (s) => s.waiting === 2)
        const before = yield* b.stats
        const line = `{${prefix}}:line:n4`
        yield* withRedis(async (redis) => {
          await redis.del(line)
          await redis.set(line, "oops")
        })
        // a's leases run out: the next script's purge frees both slots and admits the waiters in turn
        yield* expireLeases(prefix)
        // user 2 is admitted, then user 4's line fails the script
        const error = yield* Effect.flip(b.stats)
        expect(error.message).toContain(`WRONGTYPE key ${line} holds a string`)
        expect(yield* Fiber.join(two)).toBe("two")
        yield* withRedis((redis) => redis.del(line))
        expect(yield* b.stats).toMatchObject({ acquired: before.acquired + 1, waiting: 1 })
        yield* Fiber.interrupt(four)
        // user 2's release met the broken line too, and is retried
        yield* eventually(
          "nothing is left",
          b.stats,
          (s) => s.inFlight === 0 && s.waiting === 0 && s.waitingUsers === 0
        )
      }).pipe(Effect.scoped)
  )

  it.live("a release whose user's line has the wrong type changes nothing, is named, and goes through once fixed", () =>
    Effect.gen(function* () {
      const { warnings, layer } = warningLog()
      // a release that failed is retried, and logged, with the logger the store was built with
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 }).pipe(Effect.provide(layer))
      yield* someoneWaits(a)
      yield* a.tryAcquire(1)
      const line = `{${prefix}}:line:n1`
      yield* withRedis((redis) => redis.set(line, "oops"))
      yield* a.release(1)
      // stats go out after the release on the same connection: the failed release left the count as it was
      expect(yield* a.stats).toMatchObject({ inFlight: 2, activeUsers: 2 })
      yield* eventually("the failure is logged", Effect.succeed(warnings), (w) => w.length > 0)
      expect(warnings[0]).toContain(`WRONGTYPE key ${line} holds a string, the queue store needs a list`)
      yield* withRedis((redis) => redis.del(line))
      yield* eventually("the retried release went through", a.stats, (s) => s.inFlight === 1)
      expect(yield* a.tryAcquire(1)).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.scoped("a lease time too short for its timeout is warned about, naming both", () =>
    Effect.gen(function* () {
      const { warnings, layer } = warningLog()
      yield* twoProcesses({ maxUserQueue: 1, leaseTime: "7 seconds" }).pipe(Effect.provide(layer))
      expect(warnings).toEqual([])
      yield* twoProcesses({ maxUserQueue: 1, leaseTime: "600 millis", timeout: "100 millis" }).pipe(
        Effect.provide(layer)
      )
      expect(warnings[0]).toContain("leaseTime (600 ms) is at most 6 × timeout (100 ms)")
    })
  )

  it.live("closing the layer stops the retries of its releases", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      const { warnings, layer } = warningLog()
      // every fiber the store starts, the retries included
      const fibers = yield* Supervisor.track
      const scope = yield* Scope.make()
      const a = yield* RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix }).pipe(
        Effect.supervised(fibers),
        Effect.provide(layer),
        Scope.extend(scope)
      )
      yield* someoneWaits(a)
      yield* a.tryAcquire(1)
      yield* withRedis((redis) => redis.set(`{${prefix}}:line:n1`, "oops"))
      yield* a.release(1)
      // the release failed and is retried (for up to a lease time: 30 s)
      yield* eventually("the release is retried", Effect.succeed(warnings), (w) => w.length > 0)
      yield* Scope.close(scope, Exit.void)
      yield* eventually("no fiber of the store is left", fibers.value, (alive) => alive.length === 0)
    }).pipe(Effect.scoped)
  )

  it.live("where the server refuses to load a function library, the store runs the same code as scripts", () =>
    Effect.gen(function* () {
      // a server of this test's own, whose user may run everything but FUNCTION (as some managed Redis do)
      const port = yield* freePort
      yield* startRedis(port)
      yield* withRedis(
        (redis) => redis.call("ACL", "SETUSER", "scripts", "on", ">secret", "~*", "&*", "+@all", "-function"),
        port
      )
      const options = { maxUserQueue: 1, redis: `redis://scripts:secret@127.0.0.1:${port}`, prefix: uniquePrefix() }
      const a = yield* RedisStore.make(options)
      const b = yield* RedisStore.make(options)
      expect(yield* a.tryAcquire(1)).toBe(true)
      expect(yield* b.tryAcquire(1)).toBe(false)
      const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.succeed("served")))
      yield* eventually("b waits", a.stats, (s) => s.waiting === 1)
      yield* a.release(1)
      expect(yield* Fiber.join(waiter)).toBe("served")
      // b asks after its own release: it sees it
      expect(yield* b.stats).toMatchObject({ inFlight: 0, waiting: 0, acquired: 2, refused: { user: 1 } })
      const calls = yield* withRedis((redis) => redis.info("commandstats"), port)
      expect(calls).toMatch(/cmdstat_evalsha:calls=[1-9]/)
      expect(calls).not.toMatch(/cmdstat_fcall:/)
      expect(yield* withRedis((redis) => redis.call("FUNCTION", "LIST"), port)).toEqual([])
    }).pipe(Effect.scoped)
  )

  it.live("a server that is not Redis is refused with a clear error", () =>
    Effect.gen(function* () {
      const sockets = new Set<Socket>()
      const server = yield* Effect.acquireRelease(
        Effect.async<Server>((resume) => {
          const s = createServer((socket) => {
            sockets.add(socket)
            socket.end("HTTP/1.1 400 Bad Request\r\n\r\n")
          })
          s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
        }),
        (s) =>
          Effect.async<void>((resume) => {
            for (const socket of sockets) socket.destroy()
            s.close(() => resume(Effect.void))
          })
      )
      const { port } = server.address() as { port: number }
      const exit = yield* Effect.exit(
        Layer.build(RedisStore.layer({ maxUserQueue: 1, redis: `redis://127.0.0.1:${port}`, timeout: "500 millis" }))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/StoreUnavailable.*is it a Redis server\?/s)
    }).pipe(Effect.scoped)
  )

  it.effect.each<[string, RedisStore.Options]>([
    ["prefix", { maxUserQueue: 1, prefix: "" }],
    ["leaseTime", { maxUserQueue: 1, leaseTime: "10 millis" }],
    ["timeout", { maxUserQueue: 1, timeout: "nonsense" as never }]
  ])("an invalid %s is a ConfigError naming it", ([name, options]) =>
    Effect.gen(function* () {
      const error = yield* Effect.scoped(RedisStore.make(options)).pipe(Effect.flip)
      expect(String(error)).toContain(`${name} must`)
    })
  )
})
