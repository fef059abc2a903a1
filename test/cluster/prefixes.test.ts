/**
 * The Redis store on the suite's Redis Cluster (three masters on loopback ports): every
 * call declares its keys, which share one hash tag, so a prefix lives on one master; prefixes
 * whose slots sit on each master all keep the store's promises, through ioredis `Cluster`
 * clients passed in by the caller.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option } from "effect"
import { Cluster } from "ioredis"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { cli, clusterClient, clusterPorts, masterOf } from "./helpers.js"

describe("Redis Cluster", () => {
  it.live(
    "prefixes on each of three masters share limits across processes, hand off to waiters and count every process",
    () =>
      Effect.gen(function* () {
        const masters = clusterPorts()
        const first = yield* clusterClient
        const second = yield* clusterClient
        yield* Effect.promise(() => Promise.all([first.ping(), second.ping()]))
        // one prefix per master
        const prefixes = new Map<number, string>()
        for (let i = 0; prefixes.size < masters.length && i < 1000; i++) {
          const master = yield* masterOf(first, `{cluster-${i}}:h`)
          if (!prefixes.has(master)) prefixes.set(master, `cluster-${i}`)
        }
        expect(prefixes.size).toBe(3)
        for (const [master, prefix] of prefixes) {
          const options: RedisStore.Options = {
            maxUserQueue: 1,
            maxTotal: 2,
            prefix,
            leaseTime: "5 seconds",
            timeout: "500 millis"
          }
          // two processes, each with a client of its own
          const a = yield* RedisStore.make({ ...options, redis: first })
          const b = yield* RedisStore.make({ ...options, redis: second })
          expect(yield* a.tryAcquire(1)).toBe(true)
          expect(yield* b.tryAcquire(1)).toBe(false)
          expect(yield* b.tryAcquire(2)).toBe(true)
          expect(Option.getOrThrow(yield* a.check(3))).toMatchObject({ reason: "global", active: 2, limit: 2 })
          // a waiter in b is woken by a release in a (pub/sub across the cluster)
          const waiter = yield* Effect.fork(b.withSlot(1, { onFull: "wait" })(Effect.succeed("served")))
          yield* eventually("b waits", a.stats, (s) => s.waiting === 1)
          expect(yield* a.status(1)).toEqual({ active: 1, waiting: 1, limit: 1, maxWaiting: 100 })
          yield* a.release(1)
          expect(yield* Fiber.join(waiter)).toBe("served")
          yield* b.release(2)
          yield* eventually("nothing held", a.stats, (s) => s.inFlight === 0 && s.waiting === 0)
          // the prefix's state lives on its master
          expect((yield* cli(master, "EXISTS", `{${prefix}}:h`)).trim()).toBe("1")
        }
        // the clients passed in are still the caller's, and open
        expect(yield* Effect.promise(() => first.ping())).toBe("PONG")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("a Cluster quit before it was ready is refused at start, saying so", () =>
    Effect.gen(function* () {
      const client = new Cluster(clusterPorts().map((port) => ({ host: "127.0.0.1", port })))
      yield* Effect.promise(() => client.quit())
      const error = yield* Effect.flip(
        Effect.scoped(
          RedisStore.make({ maxUserQueue: 1, redis: client, timeout: "20 seconds", leaseTime: "200 seconds" })
        )
      )
      expect(error.message).toMatch(/the client has been closed .*: a client passed as redis must be open$/)
    })
  )

  it.effect.each<[string, object, string]>([
    [
      "keyPrefix",
      { keyPrefix: "app:" },
      `redis must not set ioredis' keyPrefix (the store's prefix option names its keys), got keyPrefix "app:"`
    ],
    [
      "stringNumbers",
      { stringNumbers: true },
      "redis must not set ioredis' stringNumbers (the store reads its answers as numbers), got stringNumbers true"
    ]
  ])("a Cluster whose redisOptions set %s is refused, naming it", ([, redisOptions, expected]) =>
    Effect.gen(function* () {
      const client = new Cluster([{ host: "127.0.0.1", port: clusterPorts()[0]! }], { lazyConnect: true, redisOptions })
      const exit = yield* Effect.exit(Effect.scoped(RedisStore.make({ maxUserQueue: 1, redis: client })))
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain(expected)
      expect(client.status).toBe("wait")
    })
  )
})
