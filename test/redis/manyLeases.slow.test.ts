/**
 * A process holding more leases than one renewal call carries (issue 13, item 7): every holder is
 * stopped before Redis could expire its lease. In the slow suite, which runs one file at a time:
 * stopping a thousand holders takes CPU, which a test running beside it would take away.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { eventually } from "../eventually.js"
import { uniquePrefix } from "../support.js"
import { ownRedisStore, withRedis } from "./helpers.js"

describe("Redis store reliability, many leases", () => {
  it.live(
    "with more leases than one renewal call carries, every holder is told before Redis could expire its lease",
    () =>
      Effect.gen(function* () {
        const HOLDERS = 1200 // two renewal calls
        const prefix = uniquePrefix()
        // DEBUG enabled: the test pauses Redis below with DEBUG SLEEP
        const { port, q } = yield* ownRedisStore(
          // a sixth of the lease (600 ms) covers stopping 1,200 holders on this machine (about 0.2 ms each)
          { maxUserQueue: 0, prefix, timeout: "300 millis", leaseTime: "3600 millis" },
          ["--enable-debug-command", "yes"]
        )
        // when each holder had stopped: its withSlot ended (after its body did)
        const toldAt = new Map<number, number>()
        const holders = yield* Effect.forEach(
          Array.from({ length: HOLDERS }, (_, i) => i),
          (user) =>
            Effect.fork(
              q
                .withSlot(user)(Effect.never)
                .pipe(Effect.onExit(() => Effect.sync(() => toldAt.set(user, Date.now()))))
            )
        )
        yield* eventually("all held", q.stats, (s) => s.inFlight === HOLDERS)
        yield* Effect.sleep("1 second") // a renewal round or two
        // read every lease's expiry and pause Redis in the same step: no renewal lands in between
        const scores = yield* withRedis(
          (redis) => redis.multi().zrange(`{${prefix}}:leases`, 0, -1, "WITHSCORES").call("DEBUG", "SLEEP", "4").exec(),
          port
        ).pipe(Effect.fork)
        yield* Fiber.joinAll(holders).pipe(Effect.ignore)
        const [[, flat]] = (yield* Fiber.join(scores)) as unknown as [[unknown, Array<string>]]
        const expiry = new Map<number, number>()
        for (let i = 0; i < flat.length; i += 2)
          expiry.set(Number(flat[i]!.slice(flat[i]!.lastIndexOf(":n") + 2)), Number(flat[i + 1]))
        expect(toldAt.size).toBe(HOLDERS)
        const late = Array.from(toldAt).filter(([user, at]) => at >= expiry.get(user)!)
        expect(late).toEqual([])
      }).pipe(Effect.scoped),
    { timeout: 30_000 }
  )
})
