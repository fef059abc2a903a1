import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { QueueManager } from "../src/index.js"
import { enqueue, hold, withManager } from "./support.js"

const Queue = QueueManager.QueueManager

describe("shutdown and drain", () => {
  it.scoped("new acquisitions and current waiters fail with QueueShutdown; held slots finish normally", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      const order: Array<string> = []
      const waiter = yield* enqueue(q, 1, order, "waiter")
      yield* q.shutdown
      expect(yield* Fiber.await(waiter)).toEqual(Exit.fail(new QueueManager.QueueShutdown({ userId: 1 })))
      expect(yield* q.withSlot(2)(Effect.void).pipe(Effect.flip)).toEqual(new QueueManager.QueueShutdown({ userId: 2 }))
      expect(yield* Effect.scoped(q.slot(2, { onFull: "wait" })).pipe(Effect.flip)).toBeInstanceOf(
        QueueManager.QueueShutdown
      )
      expect(yield* q.tryAcquire(2, { bypassUserLimit: true }).pipe(Effect.flip)).toBeInstanceOf(
        QueueManager.QueueShutdown
      )
      expect(order).toEqual([])
      expect(yield* q.stats).toMatchObject({ shutdown: true, inFlight: 1, waiting: 0, refused: { shutdown: 4 } })
      yield* done
      expect(yield* q.stats).toMatchObject({ inFlight: 0, activeUsers: 0 })
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("awaitIdle completes when the last slot is released, not before", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const first = yield* hold(q, 1)
      const second = yield* hold(q, 2)
      const idle = yield* Effect.fork(q.awaitIdle)
      yield* first
      yield* Effect.yieldNow()
      expect(idle.unsafePoll()).toBeNull()
      yield* second
      yield* Fiber.join(idle)
      expect(yield* q.stats).toMatchObject({ inFlight: 0, shutdown: false })
      yield* q.awaitIdle // already idle: completes at once
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("an interrupted awaitIdle does not stop another one waiting beside it, nor a later one", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      const interrupted = yield* Effect.fork(q.awaitIdle)
      const beside = yield* Effect.fork(q.awaitIdle)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(interrupted)
      expect(beside.unsafePoll()).toBeNull()
      yield* done
      yield* Fiber.join(beside)
      const later = yield* hold(q, 1)
      const again = yield* Effect.fork(q.awaitIdle)
      yield* Effect.yieldNow()
      expect(again.unsafePoll()).toBeNull()
      yield* later
      yield* Fiber.join(again)
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("drain shuts down and waits for the held slots", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      const drain = yield* Effect.fork(q.drain)
      yield* Effect.yieldNow()
      expect(drain.unsafePoll()).toBeNull()
      expect((yield* q.stats).shutdown).toBe(true)
      yield* done
      yield* Fiber.join(drain)
    }).pipe(withManager({ maxUserQueue: 1 }))
  )
})
