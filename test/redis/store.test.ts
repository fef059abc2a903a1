import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, HashMap, Layer, ManagedRuntime, Option } from "effect"
import { Redis } from "ioredis"
import { createServer, type Server, type Socket } from "node:net"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { deleteKeys, redisUrl, uniquePrefix } from "../support.js"
import {
  expireLeases,
  keysOf,
  leaseIdsOf,
  loseLease,
  ownRedisServer,
  someoneWaits,
  twoProcesses,
  warningLog,
  withRedis
} from "./helpers.js"
import { freePort, startRedis } from "./server.js"

/** A TCP server on a free loopback port that hands each connection to `onConnect`; its open sockets; closed with the scope. */
const tcpServer = (onConnect: (socket: Socket) => void) =>
  Effect.gen(function* () {
    const sockets = new Set<Socket>()
    const server = yield* Effect.acquireRelease(
      Effect.async<Server>((resume) => {
        const s = createServer((socket) => {
          sockets.add(socket)
          socket.on("close", () => sockets.delete(socket))
          onConnect(socket)
        })
        s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
      }),
      (s) =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          s.close(() => resume(Effect.void))
        })
    )
    return { port: (server.address() as { port: number }).port, sockets }
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

  it.scoped("the store is a service: QueueManager.layerWithStore over RedisStore.layerStore shares limits", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      const storeLayer = RedisStore.layerStore({ redis: redisUrl, prefix })
      const build = Layer.build(QueueManager.layerWithStore({ maxUserQueue: 1 }).pipe(Layer.provide(storeLayer)))
      const [a, b] = yield* Effect.all([build, build]).pipe(
        Effect.map((contexts) => contexts.map((context) => Context.get(context, QueueManager.QueueManager)))
      )
      expect(yield* a!.tryAcquire(1)).toBe(true)
      expect(yield* b!.tryAcquire(1)).toBe(false)
    })
  )

  it.scoped("keys are prefixed and a user with nothing held or waiting leaves no key", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* a.withSlot("alice")(a.withSlot(-100)(Effect.void))
      const fiber = yield* Effect.fork(a.withSlot("alice")(Effect.never))
      yield* Effect.fork(a.withSlot("alice", { onFull: "wait" })(Effect.void))
      yield* eventually("a request waits", a.stats, (s) => s.waiting === 1)
      const busy = yield* keysOf(prefix)
      expect(busy).toEqual(
        ["h", "held", "leases", "limits", "lines", "texp", "tickets"].map((name) => `{${prefix}}:${name}`)
      )
      yield* Fiber.interrupt(fiber)
      yield* eventually("everything is given back", a.stats, (s) => s.inFlight === 0)
      // only the bookkeeping hash stays: the epoch, the limits, the counters
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
      // a lease of 5 minutes: were the hand-off left to the renewal round, this test would time out
      const { a, b } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "5 minutes" })
      expect(yield* b.tryAcquire(7)).toBe(true)
      const order: Array<string> = []
      const first = yield* Effect.fork(a.withSlot(7, { onFull: "wait" })(Effect.sync(() => order.push("first"))))
      yield* eventually("one waits", a.stats, (s) => s.waiting === 1)
      const second = yield* Effect.fork(b.withSlot(7, { onFull: "wait" })(Effect.sync(() => order.push("second"))))
      yield* eventually("two wait", a.stats, (s) => s.waiting === 2)
      yield* b.release(7)
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      expect(order).toEqual(["first", "second"])
      // b's release is not waited for: b's own calls see it at once, a's within a round trip
      expect(yield* b.stats).toMatchObject({ inFlight: 0, waiting: 0, waitingUsers: 0 })
      yield* eventually("a sees b's release", a.stats, (s) => s.inFlight === 0 && s.waiting === 0)
    })
  )

  it.scoped("a tier's waiting bound, status and check count the requests of every process", () =>
    Effect.gen(function* () {
      // the author's model: one running per chat, 3 queued + running in a private chat
      const { a, b } = yield* twoProcesses({
        maxUserQueue: 1,
        userLimit: (chatId) => (typeof chatId === "number" && chatId < 0 ? { waiting: 9 } : { waiting: 2 })
      })
      expect(yield* a.tryAcquire(5)).toBe(true)
      const waiters = [
        yield* Effect.fork(a.withSlot(5, { onFull: "wait" })(Effect.void)),
        yield* Effect.fork(b.withSlot(5, { onFull: "wait" })(Effect.void))
      ]
      yield* eventually("two wait, in two processes", a.stats, (s) => s.waiting === 2)
      expect(yield* b.status(5)).toEqual({ active: 1, waiting: 2, limit: 1, maxWaiting: 2 })
      expect(Option.getOrThrow(yield* b.check(5, { onFull: "wait" }))).toMatchObject({ reason: "waiting", limit: 2 })
      const refused = yield* b.withSlot(5, { onFull: "wait" })(Effect.void).pipe(Effect.flip)
      expect(refused).toMatchObject({ _tag: "QueueFull", reason: "waiting", active: 2, limit: 2 })
      expect(yield* b.check(-5, { onFull: "wait" })).toEqual(Option.none())
      yield* a.release(5)
      yield* Effect.forEach(waiters, Fiber.join)
      expect(yield* b.status(5)).toEqual({ active: 0, waiting: 0, limit: 1, maxWaiting: 2 })
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
          yield* eventually(`${label} waits`, q.stats, (s) => s.waiting > before)
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
      yield* eventually("b waits", a.stats, (s) => s.waiting === 1)
      yield* Fiber.interrupt(waiter)
      expect(yield* a.stats).toMatchObject({ waiting: 0, waitingUsers: 0, inFlight: 1 })
      yield* a.release(1)
      expect(yield* a.stats).toMatchObject({ inFlight: 0, activeUsers: 0 })
    })
  )

  it.scoped("a lost lease interrupts the body and fails withSlot with LeaseLost", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      const { exit, finished } = yield* loseLease(a, prefix, (work) => a.withSlot(1)(work))
      expect(exit).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 1 })))
      expect(finished).toBe(false)
    })
  )

  it.live("an uninterruptible body finishes, and withSlot still fails with LeaseLost: it ran without its slot", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      let finished = false
      const started = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        a.withSlot(1)(
          Effect.uninterruptible(
            Effect.zipRight(
              Deferred.succeed(started, undefined),
              Effect.sleep("300 millis").pipe(Effect.tap(() => (finished = true)))
            )
          )
        )
      )
      yield* Deferred.await(started)
      yield* withRedis((redis) => redis.del(`{${prefix}}:h`))
      yield* a.activeCount(1)
      expect(yield* Fiber.await(holder)).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 1 })))
      expect(finished).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("after LeaseLost the caller goes on as before: it is not left interrupted", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
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
    }).pipe(Effect.scoped)
  )

  it.live("nested withSlot: each lost lease fails its own withSlot, and a lost outer lease stops the outer work", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1, leaseTime: "600 millis", timeout: "90 millis" })
      // both leases lost at once: the inner withSlot is interrupted, the outer one fails
      let wentOn = false
      const { exit } = yield* loseLease(a, prefix, () =>
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
      expect(exit).toEqual(Exit.fail(new QueueManager.LeaseLost({ userId: 2 })))
      expect(wentOn).toBe(false)
      // only the inner lease lost: the inner withSlot fails with it, the outer work goes on
      const inner = yield* Effect.fork(
        a.withSlot(4)(Effect.flip(a.withSlot(5)(Effect.zipRight(Effect.sleep("50 millis"), Effect.never))))
      )
      yield* eventually("both held", a.stats, (s) => s.inFlight === 2)
      yield* expireLeases(prefix, yield* leaseIdsOf(prefix, "n5"))
      // the next renewal round finds the lease gone
      expect(yield* Fiber.join(inner)).toEqual(new QueueManager.LeaseLost({ userId: 5 }))
    }).pipe(Effect.scoped)
  )

  it.live("a lost lease stops the work of withSlot, not the other fibers its caller started", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
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
    }).pipe(Effect.scoped)
  )

  it.scoped("a lost lease interrupts the fiber holding a slot, and its scope releases nothing twice", () =>
    Effect.gen(function* () {
      const { a, b, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      const { exit, finished } = yield* loseLease(a, prefix, (work) => Effect.scoped(Effect.zipRight(a.slot(1), work)))
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(finished).toBe(false)
      // the slot someone else now holds is not given back by the lost holder's scope
      expect(yield* b.tryAcquire(1)).toBe(true)
      expect(yield* a.stats).toMatchObject({ inFlight: 1, activeUsers: 1 })
    })
  )

  it.live(
    "held slots and waiting requests outlive many lease times while their process renews them, more than one batch of them",
    () =>
      Effect.gen(function* () {
        const { a, b } = yield* twoProcesses({
          maxUserQueue: 0,
          maxTotal: 1201,
          leaseTime: "600 millis",
          timeout: "90 millis"
        })
        // 1,201 slots: more than one renewal call carries (1,000)
        yield* Effect.forEach(
          Array.from({ length: 1201 }, (_, i) => i),
          (user) => a.tryAcquire(user),
          { concurrency: 50, discard: true }
        )
        const waiter = yield* Effect.fork(a.withSlot("late", { onFull: "wait" })(Effect.succeed("served")))
        yield* eventually("the request waits", b.stats, (s) => s.waiting === 1)
        yield* Effect.sleep("2 seconds")
        expect(yield* b.stats).toMatchObject({ inFlight: 1201, activeUsers: 1201, waiting: 1 })
        expect(yield* a.stats).toMatchObject({ inFlight: 1201, waiting: 1 })
        yield* a.release(1200)
        expect(yield* Fiber.join(waiter)).toBe("served")
      }).pipe(Effect.scoped),
    { timeout: 20_000 }
  )

  it.scoped("a key holding the wrong type fails every call with a clear error naming it, and changes nothing", () =>
    Effect.gen(function* () {
      const { a, prefix } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* someoneWaits(a)
      expect(yield* a.tryAcquire(1)).toBe(true)
      const before = yield* a.stats
      const state = withRedis(async (redis) =>
        Promise.all(
          ["h", "held", "leases", "tickets", "texp", "lines", "ready", "limits"].map(async (name) => {
            const key = `{${prefix}}:${name}`
            const type = await redis.type(key)
            return type === "hash"
              ? redis.hgetall(key)
              : type === "zset"
                ? redis.zrange(key, 0, -1, "WITHSCORES")
                : type
          })
        )
      )
      const expected = {
        h: "hash",
        held: "hash",
        leases: "zset",
        tickets: "hash",
        texp: "zset",
        lines: "zset",
        ready: "zset",
        limits: "hash"
      }
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
        const others = yield* state
        for (const call of [a.tryAcquire(2), a.stats, a.withSlot(9, { onFull: "wait" })(Effect.void)]) {
          const error = yield* Effect.flip(call)
          expect(error._tag).toBe("StoreUnavailable")
          expect(error.message).toContain(`WRONGTYPE key ${key} holds a string, the queue store needs a ${type}`)
        }
        expect(yield* state).toEqual(others)
        yield* withRedis(async (redis) => {
          await redis.del(key)
          if (existed) await redis.rename(aside, key)
        })
        expect(yield* a.stats).toEqual(before)
      }
      expect(yield* a.tryAcquire(2)).toBe(true)
    })
  )

  it.scoped("keys another version of the library wrote under the prefix fail the layer with a clear error", () =>
    Effect.gen(function* () {
      for (const write of [
        (redis: { hset: (key: string, field: string, value: string | number) => Promise<unknown> }, key: string) =>
          redis.hset(key, "seq", 4),
        (redis: { hset: (key: string, field: string, value: string | number) => Promise<unknown> }, key: string) =>
          redis.hset(key, "layout", "2")
      ]) {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => deleteKeys(prefix))
        yield* withRedis((redis) => write(redis, `{${prefix}}:h`))
        const error = yield* Effect.flip(RedisStore.make({ maxUserQueue: 1, redis: redisUrl, prefix }))
        expect(error.message).toContain(`{${prefix}}:h holds an older layout, written by another version`)
        // nothing was written over it
        expect(yield* keysOf(prefix)).toEqual([`{${prefix}}:h`])
      }
    })
  )

  it.live("a resize that admits thousands of users at once counts every one of them", () =>
    Effect.gen(function* () {
      const users = Array.from({ length: 4_100 }, (_, i) => i)
      const { a } = yield* twoProcesses({ maxUserQueue: 1 })
      yield* Effect.forEach(users, (user) => a.tryAcquire(user), { concurrency: "unbounded" })
      const gate = yield* Deferred.make<void>()
      const waiters = yield* Effect.forEach(users, (user) =>
        Effect.fork(a.withSlot(user, { onFull: "wait" })(Deferred.await(gate)))
      )
      yield* eventually("everyone waits", a.stats, (s) => s.waiting === users.length)
      yield* a.resize({ maxUserQueue: 2 })
      expect(yield* a.stats).toMatchObject({ waiting: 0, inFlight: 2 * users.length, activeUsers: users.length })
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

  it.live("where the server refuses to load a function library, the store runs the same code as scripts", () =>
    Effect.gen(function* () {
      // a server of this test's own, whose user may run everything but FUNCTION (as some managed Redis do)
      const { port } = yield* ownRedisServer()
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

  it.live(
    "toPromise: a runtime disposed while work runs: the work's result once it ends; a call still waiting: QueueShutdown",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => deleteKeys(prefix))
        const runtime = ManagedRuntime.make(RedisStore.layer({ maxUserQueue: 1, redis: redisUrl, prefix }))
        const queue = QueueManager.toPromise(runtime)
        let runs = 0
        const work = async () => {
          runs++
          await new Promise((resolve) => setTimeout(resolve, 300))
          return "result"
        }
        const outcome = (call: Promise<string>) =>
          call.then(
            (value) => value,
            (e: unknown) => e
          )
        const running = outcome(queue.withSlot("u", work))
        yield* eventually(
          "the work runs",
          Effect.promise(() => queue.stats()),
          (s) => s.inFlight === 1
        )
        const waiting = outcome(queue.withSlot("u", work, { onFull: "wait" }))
        yield* eventually(
          "the second call waits",
          Effect.promise(() => queue.stats()),
          (s) => s.waiting === 1
        )
        yield* Effect.promise(() => runtime.dispose())
        // the work ran to its end in its slot: its result, not a refusal that would be retried
        expect(yield* Effect.promise(() => running)).toBe("result")
        expect(yield* Effect.promise(() => waiting)).toBeInstanceOf(QueueManager.QueueShutdown)
        expect(runs).toBe(1)
      }).pipe(Effect.scoped)
  )

  it.live("a client passed in is used and left open; the store adds one connection of its own", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      const client = new Redis(redisUrl)
      yield* Effect.addFinalizer(() => Effect.promise(() => client.quit()))
      const before = Number(/connected_clients:(\d+)/.exec(yield* Effect.promise(() => client.info("clients")))![1])
      yield* Effect.scoped(
        Effect.gen(function* () {
          const a = yield* RedisStore.make({ maxUserQueue: 1, redis: client, prefix })
          const b = yield* RedisStore.make({ maxUserQueue: 1, redis: client, prefix })
          expect(yield* a.tryAcquire(1)).toBe(true)
          expect(yield* b.tryAcquire(1)).toBe(false)
          const info = yield* Effect.promise(() => client.info("clients"))
          // the caller's connection for the calls, one duplicate per store for the wake-ups
          expect(Number(/connected_clients:(\d+)/.exec(info)![1])).toBe(before + 2)
          yield* a.release(1)
        })
      )
      expect(client.status).toBe("ready")
      expect(yield* Effect.promise(() => client.ping())).toBe("PONG")
    }).pipe(Effect.scoped)
  )

  it.live(
    "a wake-up Redis refuses to publish (PUBLISH revoked after start) fails no call; the waiter gets its slot; the logs say so",
    () =>
      Effect.gen(function* () {
        const { port } = yield* ownRedisServer()
        yield* withRedis((redis) => redis.call("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all"), port)
        const { warnings, infos, layer } = warningLog()
        const q = yield* RedisStore.make({
          maxUserQueue: 1,
          redis: `redis://app:pw@127.0.0.1:${port}`,
          prefix: "revoked",
          leaseTime: "900 millis",
          timeout: "100 millis"
        }).pipe(Effect.provide(layer))
        yield* withRedis((redis) => redis.call("ACL", "SETUSER", "app", "-publish"), port)
        // within a third of a lease, once
        yield* eventually(
          "the refusal is logged",
          Effect.sync(() => warnings.length),
          (n) => n > 0
        )
        expect(warnings).toEqual([expect.stringMatching(/^Redis refuses this process's wake-ups \(NOPERM.*\+publish/)])
        const release = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(q.withSlot("a")(Deferred.await(release)))
        yield* eventually("the holder has its slot", q.activeCount("a"), (n) => n === 1)
        const waiter = yield* Effect.fork(q.withSlot("a", { onFull: "wait" })(Effect.succeed("ran")))
        yield* eventually("the waiter waits", q.stats, (s) => s.waiting === 1)
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(holder)
        // the hand-off's call is the one that would have failed, with whatever went with it
        expect(yield* q.tryAcquire("b")).toBe(true)
        // no wake-up came: the waiter hears of its slot at its renewal round
        expect(yield* Fiber.join(waiter).pipe(Effect.timeout("3 seconds"))).toBe("ran")
        expect(warnings).toHaveLength(1)
        yield* withRedis((redis) => redis.call("ACL", "SETUSER", "app", "+publish"), port)
        yield* eventually(
          "the recovery is logged",
          Effect.sync(() => infos),
          (lines) => lines.includes("Redis accepts this process's wake-ups again")
        )
        expect(warnings).toHaveLength(1)
      }).pipe(Effect.scoped)
  )

  it.live("a subscription Redis refuses after a reconnection is logged, not a crash; once allowed, it comes back", () =>
    Effect.gen(function* () {
      const { port } = yield* ownRedisServer()
      yield* withRedis((redis) => redis.call("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all"), port)
      const { warnings, layer } = warningLog()
      yield* RedisStore.make({
        maxUserQueue: 1,
        redis: `redis://app:pw@127.0.0.1:${port}`,
        prefix: "resubscribe",
        timeout: "200 millis"
      }).pipe(Effect.provide(layer))
      const channels = withRedis((redis) => redis.call("PUBSUB", "CHANNELS", "{resubscribe}:wake:*"), port)
      expect(yield* channels).toHaveLength(1)
      // ioredis's own resubscribe would reject unhandled here, and vitest fail the run
      yield* withRedis((redis) => redis.call("ACL", "SETUSER", "app", "-subscribe"), port)
      yield* withRedis((redis) => redis.call("CLIENT", "KILL", "TYPE", "pubsub"), port)
      yield* eventually(
        "the refusal is logged",
        Effect.sync(() => warnings),
        (lines) =>
          lines.some((line) => line.startsWith("Redis refused to subscribe this process to its wake-ups again (NOPERM"))
      )
      expect(yield* channels).toEqual([])
      // the unsubscribed connection is no pubsub client any more: cut the user's connections
      yield* withRedis((redis) => redis.call("ACL", "SETUSER", "app", "+subscribe"), port)
      yield* withRedis((redis) => redis.call("CLIENT", "KILL", "USER", "app"), port)
      yield* eventually("subscribed again", channels, (names) => (names as Array<string>).length === 1)
    }).pipe(Effect.scoped)
  )

  it.live("a client passed in stays in the database it is in", () =>
    Effect.gen(function* () {
      const { port } = yield* ownRedisServer()
      const client = new Redis({ port, host: "127.0.0.1", db: 2 })
      yield* Effect.addFinalizer(() => Effect.promise(() => client.quit()))
      yield* Effect.promise(() => client.select(3).then(() => client.set("mine", "here")))
      const q = yield* RedisStore.make({ maxUserQueue: 1, redis: client, prefix: "db" })
      expect(yield* q.tryAcquire(1)).toBe(true)
      expect(yield* Effect.promise(() => client.get("mine"))).toBe("here")
      // the store's keys are in the client's database too
      expect(yield* Effect.promise(() => client.exists("{db}:h"))).toBe(1)
    }).pipe(Effect.scoped)
  )

  it.live("a start that fails on a client passed in leaves nothing on it and sends nothing later", () =>
    Effect.gen(function* () {
      const port = yield* freePort // nothing listens there yet
      const client = new Redis({ port, host: "127.0.0.1", retryStrategy: () => 50 })
      client.on("error", () => {})
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      const listeners = () =>
        client.listenerCount("ready") + client.listenerCount("error") + client.listenerCount("end")
      const before = listeners()
      for (let i = 0; i < 3; i++) {
        const error = yield* Effect.flip(
          Effect.scoped(RedisStore.make({ maxUserQueue: 1, redis: client, prefix: "late", timeout: "40 millis" }))
        )
        expect(error.message).toMatch(/connection refused/)
      }
      expect(listeners()).toBe(before)
      // once Redis comes up, the failed starts send nothing: no function library, no key
      yield* startRedis(port)
      yield* eventually(
        "the client connected",
        Effect.sync(() => client.status),
        (status) => status === "ready"
      )
      yield* Effect.sleep("200 millis")
      yield* withRedis(
        (redis) =>
          Promise.all([redis.call("FUNCTION", "LIST"), redis.keys("*")]).then(([functions, keys]) =>
            expect([functions, keys]).toEqual([[], []])
          ),
        port
      )
    }).pipe(Effect.scoped)
  )

  it.live("a start that timed out on a client passed in sends nothing once Redis answers again", () =>
    Effect.gen(function* () {
      const { port } = yield* ownRedisServer(["--enable-debug-command", "yes"])
      const client = new Redis({ port, host: "127.0.0.1" })
      yield* Effect.addFinalizer(() => Effect.promise(() => client.quit()))
      yield* Effect.promise(() => client.ping())
      // the server stops answering for 600 ms: the start (a 200 ms budget) gives up while asking INFO
      const sleeper = new Redis({ port, host: "127.0.0.1" })
      const slept = sleeper.call("DEBUG", "SLEEP", "0.6").finally(() => sleeper.disconnect())
      yield* Effect.sleep("50 millis")
      const error = yield* Effect.flip(
        Effect.scoped(RedisStore.make({ maxUserQueue: 1, redis: client, prefix: "late", timeout: "40 millis" }))
      )
      expect(error.message).toMatch(/no answer within 200 ms while asking the server what it is/)
      yield* Effect.promise(() => slept)
      // INFO is answered now: the start that gave up loads nothing and writes nothing
      yield* Effect.sleep("200 millis")
      expect(yield* Effect.promise(() => Promise.all([client.call("FUNCTION", "LIST"), client.keys("*")]))).toEqual([
        [],
        []
      ])
    }).pipe(Effect.scoped)
  )

  it.live("a client that has been closed is refused at start, saying so", () =>
    Effect.gen(function* () {
      const client = new Redis(redisUrl)
      yield* Effect.promise(() => client.quit())
      const error = yield* Effect.flip(RedisStore.make({ maxUserQueue: 1, redis: client, timeout: "200 millis" }))
      expect(error.message).toMatch(
        /the client has been closed \(quit, disconnect, or it stopped reconnecting\): a client passed as redis must be open$/
      )
    }).pipe(Effect.scoped)
  )

  it.live("an ACL user without INFO or SELECT (as on some hosted Redis) starts and works", () =>
    Effect.gen(function* () {
      const { port } = yield* ownRedisServer()
      yield* withRedis(
        (redis) => redis.call("ACL", "SETUSER", "hosted", "on", ">secret", "~*", "&*", "+@all", "-info", "-select"),
        port
      )
      const q = yield* RedisStore.make({ maxUserQueue: 1, redis: `redis://hosted:secret@127.0.0.1:${port}` })
      expect(yield* q.tryAcquire(1)).toBe(true)
      expect(yield* q.tryAcquire(1)).toBe(false)
    }).pipe(Effect.scoped)
  )

  it.live("errors at start tell apart nothing listening, a wrong password and a missing permission", () =>
    Effect.gen(function* () {
      const { port } = yield* ownRedisServer()
      yield* withRedis(
        (redis) =>
          Promise.all([
            redis.call("ACL", "SETUSER", "nopubsub", "on", ">secret", "~*", "&*", "+@all", "-@pubsub"),
            redis.call("ACL", "SETUSER", "nopublish", "on", ">secret", "~*", "&*", "+@all", "-publish"),
            redis.call(
              "ACL",
              "SETUSER",
              "noeval",
              "on",
              ">secret",
              "~*",
              "&*",
              "+@all",
              "-function",
              "-evalsha",
              "-eval"
            )
          ]),
        port
      )
      const startError = (redis: string) =>
        Effect.map(
          Effect.flip(RedisStore.make({ maxUserQueue: 1, redis, timeout: "500 millis", prefix: uniquePrefix() })),
          (error) => error.message
        )
      const nobody = yield* freePort
      expect(yield* startError(`redis://127.0.0.1:${nobody}`)).toMatch(/connection refused .*ECONNREFUSED/)
      expect(yield* startError(`redis://nopubsub:wrong@127.0.0.1:${port}`)).toMatch(/authentication failed \(WRONGPASS/)
      // waiting needs pub/sub: the error says which permission
      expect(yield* startError(`redis://nopubsub:secret@127.0.0.1:${port}`)).toMatch(
        /may not SUBSCRIBE to .*onFull: "wait".*\+subscribe \+publish/
      )
      // a hand-off publishes the wake-up: without PUBLISH the error says so at start, not at a hand-off
      expect(yield* startError(`redis://nopublish:secret@127.0.0.1:${port}`)).toMatch(
        /may not PUBLISH to .*onFull: "wait".*\+subscribe \+publish/
      )
      // neither functions nor scripts: Redis names the command refused
      expect(yield* startError(`redis://noeval:secret@127.0.0.1:${port}`)).toMatch(/\(start\): NOPERM.*'eval/)
    }).pipe(Effect.scoped)
  )

  it.live("a start given up on (interrupted) stops at once and closes what it opened", () =>
    Effect.gen(function* () {
      // a server that takes connections and never answers: the start would wait out its budget
      const connected = yield* Deferred.make<void>()
      const { port, sockets } = yield* tcpServer(() => Deferred.unsafeDone(connected, Effect.void))
      // a budget of five 20 s timeouts: were the start not interruptible, the test would time out
      const start = yield* Effect.fork(
        Effect.scoped(
          RedisStore.make({
            maxUserQueue: 1,
            redis: `redis://127.0.0.1:${port}`,
            timeout: "20 seconds",
            leaseTime: "200 seconds"
          })
        )
      )
      yield* Deferred.await(connected)
      expect(Exit.isInterrupted(yield* Fiber.interrupt(start))).toBe(true)
      yield* eventually(
        "the start's connection is closed",
        Effect.sync(() => sockets.size),
        (open) => open === 0
      )
    }).pipe(Effect.scoped)
  )

  it.live("a server that is not Redis is refused with a clear error", () =>
    Effect.gen(function* () {
      const { port } = yield* tcpServer((socket) => socket.end("HTTP/1.1 400 Bad Request\r\n\r\n"))
      const exit = yield* Effect.exit(
        Layer.build(RedisStore.layer({ maxUserQueue: 1, redis: `redis://127.0.0.1:${port}`, timeout: "500 millis" }))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/StoreUnavailable.*is it a Redis server\?/s)
    }).pipe(Effect.scoped)
  )

  it.live("a database the server does not have is refused at start, naming it", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(RedisStore.make({ maxUserQueue: 1, redis: `${redisUrl}/99` }))
      expect(error._tag).toBe("StoreUnavailable")
      expect(error.message).toContain("database 99 cannot be selected")
    }).pipe(Effect.scoped)
  )

  it.effect.each<[string, RedisStore.Options]>([
    ["prefix", { maxUserQueue: 1, prefix: "" }],
    ["leaseTime", { maxUserQueue: 1, leaseTime: "10 millis" }],
    ["timeout", { maxUserQueue: 1, timeout: "nonsense" as never }],
    ["redis", { maxUserQueue: 1, redis: 6379 as never }],
    ["redis", { maxUserQueue: 1, redis: new Date() as never }]
  ])("an invalid %s is a ConfigError naming it", ([name, options]) =>
    Effect.gen(function* () {
      const error = yield* Effect.scoped(RedisStore.make(options)).pipe(Effect.flip)
      expect(String(error)).toContain(`${name} must`)
    })
  )
})
