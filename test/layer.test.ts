import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Layer, Option } from "effect"
import { QueueManager } from "../src/index.js"

/** A program of several fibers, each taking one slot of user 1 through the service it is given. */
const program = Effect.gen(function* () {
  const q = yield* QueueManager.QueueManager
  const results = yield* Effect.all(
    Array.from({ length: 5 }, () => q.tryAcquire(1)),
    { concurrency: "unbounded" }
  )
  return { results, active: yield* q.activeCount(1) }
})

describe("the singleton is the layer provided once", () => {
  it.effect("one provided layer is one instance shared by all fibers", () =>
    Effect.gen(function* () {
      const QueueLive = QueueManager.layer({ maxUserQueue: 3 })
      const both = yield* Effect.all([program, program], { concurrency: 2 }).pipe(Effect.provide(QueueLive))
      const accepted = both.flatMap(({ results }) => results).filter((ok) => ok).length
      expect(accepted).toBe(3)
    })
  )

  it.effect("each fresh layer starts empty (what reset_instance did)", () =>
    Effect.gen(function* () {
      const QueueLive = QueueManager.layer({ maxUserQueue: 3 })
      const first = yield* program.pipe(Effect.provide(QueueLive))
      const second = yield* program.pipe(Effect.provide(QueueLive))
      expect(first.active).toBe(3)
      expect(second.active).toBe(3)
      expect(second.results.filter((ok) => ok).length).toBe(3)
    })
  )

  it.effect("the store is a service: the same manager over the in-memory QueueStore layer", () =>
    Effect.gen(function* () {
      const QueueLive = QueueManager.layerWithStore({ maxUserQueue: 2 }).pipe(
        Layer.provide(QueueManager.layerStoreMemory)
      )
      const { results, active } = yield* program.pipe(Effect.provide(QueueLive))
      expect(results.filter((ok) => ok).length).toBe(2)
      expect(active).toBe(2)
    })
  )

  it.effect("a test swaps in its own layer with a different limit", () =>
    Effect.gen(function* () {
      const { results } = yield* program.pipe(Effect.provide(QueueManager.layer({ maxUserQueue: 1 })))
      expect(results.filter((ok) => ok).length).toBe(1)
    })
  )

  it.effect("a test swaps in a hand-written fake service", () =>
    Effect.gen(function* () {
      const asked: Array<QueueManager.UserId> = []
      const AlwaysFull = Layer.succeed(
        QueueManager.QueueManager,
        QueueManager.QueueManager.of({
          maxUserQueue: 1,
          activeCount: () => Effect.succeed(1),
          activeUsers: Effect.succeed(1),
          status: () => Effect.succeed({ active: 1, waiting: 0, limit: 1, maxWaiting: 0 }),
          check: (userId) =>
            Effect.succeed(Option.some(new QueueManager.QueueFull({ userId, reason: "user", active: 1, limit: 1 }))),
          tryAcquire: (userId) => Effect.sync(() => asked.push(userId)).pipe(Effect.as(false)),
          release: () => Effect.void,
          slot: (userId) => Effect.fail(new QueueManager.QueueFull({ userId, reason: "user", active: 1, limit: 1 })),
          withSlot: (userId) => () =>
            Effect.fail(new QueueManager.QueueFull({ userId, reason: "user", active: 1, limit: 1 })),
          snapshot: Effect.succeed(HashMap.make([1, 1])),
          limitFor: () => Effect.succeed(1),
          stats: Effect.die("not used"),
          resize: () => Effect.void,
          shutdown: Effect.void,
          awaitIdle: Effect.void,
          drain: Effect.void
        })
      )
      const { results, active } = yield* program.pipe(Effect.provide(AlwaysFull))
      expect(results).toEqual([false, false, false, false, false])
      expect(active).toBe(1)
      expect(asked).toEqual([1, 1, 1, 1, 1])
    })
  )
})
