/**
 * The in-memory store's steps, one at a time: a fiber told by a step may run at once and take
 * steps of its own.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scheduler } from "effect"
import { QueueManager } from "../src/index.js"

/** Runs each task as soon as it is scheduled, inside the call that scheduled it. */
const atOnce = Scheduler.make((task) => task())

describe("the in-memory store", () => {
  it.live.each<[string, QueueManager.Options]>([
    ["a user's line", { maxUserQueue: 1 }],
    ["the ring of maxTotal", { maxUserQueue: 0, maxTotal: 1 }]
  ])("a waiter woken inside the releasing step runs and gives its slot back (%s)", ([, options]) =>
    Effect.gen(function* () {
      const queue = yield* QueueManager.QueueManager
      const held = yield* Deferred.make<void>()
      const entered = yield* Deferred.make<void>()
      const first = yield* Effect.fork(
        queue.withSlot(1)(Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(held)))
      )
      yield* Deferred.await(entered)
      const waiters = yield* Effect.forEach([1, 2], (userId) =>
        Effect.fork(
          queue.withSlot(userId, { onFull: "wait" })(Effect.succeed(userId)).pipe(Effect.withScheduler(atOnce))
        )
      )
      yield* Effect.yieldNow()
      expect((yield* queue.stats).waiting).toBe(options.maxTotal === 1 ? 2 : 1)
      yield* Deferred.succeed(held, undefined)
      yield* Fiber.await(first)
      expect(yield* Effect.forEach(waiters, Fiber.await)).toEqual([Exit.succeed(1), Exit.succeed(2)])
      expect(yield* queue.stats).toMatchObject({ inFlight: 0, waiting: 0, activeUsers: 0 })
    }).pipe(Effect.provide(QueueManager.layer(options)))
  )
})
