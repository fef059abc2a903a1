/**
 * A manual failover (`CLUSTER FAILOVER` on the replica of the master serving the prefix) while
 * two processes keep taking slots: a witness in the test counts the bodies running per user.
 * A manual failover waits for the replica to catch up before it takes over, so nothing granted
 * is lost: no limit may be passed, nothing may be left held, and grants go on after it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { cli, failoverCluster } from "./helpers.js"

const USERS = 8

describe("Redis Cluster failover", () => {
  it.live(
    "a manual failover under load: no limit passed, nothing left held, grants go on after it",
    () =>
      Effect.gen(function* () {
        const prefix = "failover"
        const { first, second, replica } = yield* failoverCluster(prefix)
        const options: RedisStore.Options = { maxUserQueue: 1, prefix, leaseTime: "4 seconds", timeout: "500 millis" }
        const stores = [
          yield* RedisStore.make({ ...options, redis: first }),
          yield* RedisStore.make({ ...options, redis: second })
        ]

        // the witness
        const running = new Map<number, number>()
        const grants: Array<number> = []
        let overLimit = 0
        const body = (user: number) =>
          Effect.acquireUseRelease(
            Effect.sync(() => {
              const now = (running.get(user) ?? 0) + 1
              running.set(user, now)
              if (now > 1) overLimit++
              grants.push(Date.now())
            }),
            () => Effect.sleep("5 millis"),
            () => Effect.sync(() => running.set(user, running.get(user)! - 1))
          )
        const until = Date.now() + 8_000
        const worker = (store: (typeof stores)[number], user: number) =>
          Effect.whileLoop({
            while: () => Date.now() < until,
            body: () =>
              store.withSlot(user, { onFull: "wait" })(body(user)).pipe(
                Effect.timeout("2 seconds"),
                // calls fail while the failover runs (StoreUnavailable): the worker goes on
                Effect.ignore
              ),
            step: () => {}
          })
        const workers = yield* Effect.forEach(
          stores.flatMap((store) => Array.from({ length: USERS }, (_, user) => [store, user] as const)),
          ([store, user]) => Effect.fork(worker(store, user))
        )
        yield* Effect.sleep("1 second")
        expect((yield* cli(replica, "CLUSTER", "FAILOVER")).trim()).toBe("OK")
        yield* eventually("the replica is the master", cli(replica, "INFO", "replication"), (info) =>
          info.includes("role:master")
        )
        const failedOver = Date.now()
        yield* Fiber.joinAll(workers)

        expect(overLimit).toBe(0)
        expect(grants.filter((at) => at > failedOver + 500).length).toBeGreaterThan(0)
        for (const store of stores) {
          yield* eventually("nothing held", store.stats, (s) => s.inFlight === 0 && s.waiting === 0)
        }
      }).pipe(Effect.scoped),
    60_000
  )
})
