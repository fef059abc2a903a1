import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, TestClock } from "effect"
import { QueueManager } from "../src/index.js"
import { enqueue, hold, untilWaiting, withManager } from "./support.js"

const Queue = QueueManager.QueueManager

describe("onFull: wait", () => {
  it.scoped("waits holding nothing, then gets the freed slot handed over", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      const order: Array<string> = []
      const waiter = yield* enqueue(q, 1, order, "waiter")
      expect(yield* q.activeCount(1)).toBe(1)
      expect(yield* q.stats).toMatchObject({ inFlight: 1, waiting: 1, waitingUsers: 1 })
      yield* done
      yield* Fiber.join(waiter)
      expect(order).toEqual(["waiter"])
      expect(yield* q.stats).toMatchObject({ inFlight: 0, waiting: 0, acquired: 2 })
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("the freed slot goes to the waiter, not to a newcomer", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      const gate = yield* Deferred.make<void>()
      const waiter = yield* Effect.fork(q.withSlot(1, { onFull: "wait" })(Deferred.await(gate)))
      yield* untilWaiting(q, 1)
      yield* done
      // the waiter was admitted inside release: a newcomer finds the user full
      expect(yield* q.tryAcquire(1)).toBe(false)
      expect(yield* q.activeCount(1)).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(waiter)
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("waiters of one user are served first-in first-out", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 7)
      const order: Array<string> = []
      const fibers = []
      for (const label of ["a", "b", "c", "d", "e"]) fibers.push(yield* enqueue(q, 7, order, label))
      yield* done
      yield* Effect.forEach(fibers, Fiber.join)
      expect(order).toEqual(["a", "b", "c", "d", "e"])
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("a waiter interrupted by Effect.timeout leaves no trace", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      const fiber = yield* Effect.fork(
        Effect.scoped(q.slot(1, { onFull: "wait" }).pipe(Effect.timeout("5 seconds"), Effect.zipRight(Effect.never)))
      )
      yield* untilWaiting(q, 1)
      yield* TestClock.adjust("5 seconds")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("TimeoutException")
      expect(yield* q.stats).toMatchObject({ inFlight: 1, waiting: 0, waitingUsers: 0 })
      yield* done
      expect(yield* q.stats).toMatchObject({ inFlight: 0, waiting: 0, activeUsers: 0 })
      expect(yield* q.tryAcquire(1)).toBe(true)
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("a waiter interrupted after it was admitted but before it resumed gives the slot back", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      expect(yield* q.tryAcquire(1)).toBe(true)
      const fiber = yield* Effect.fork(q.withSlot(1, { onFull: "wait" })(Effect.never))
      yield* untilWaiting(q, 1)
      // release hands the slot to the waiter at once; the interrupt reaches it before it resumes
      yield* Effect.zipRight(q.release(1), Fiber.interrupt(fiber))
      expect(yield* q.stats).toMatchObject({ inFlight: 0, waiting: 0, activeUsers: 0, acquired: 2 })
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.scoped("past maxWaitingPerUser a request is refused with reason waiting", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      const order: Array<string> = []
      yield* enqueue(q, 1, order, "a")
      yield* enqueue(q, 1, order, "b")
      const error = yield* q.withSlot(1, { onFull: "wait" })(Effect.void).pipe(Effect.flip)
      expect(error).toEqual(new QueueManager.QueueFull({ userId: 1, reason: "waiting", active: 2, limit: 2 }))
      expect(error.message).toBe("user 1 already has 2 of 2 requests waiting")
      // another user still gets its own allowance of waiters
      yield* hold(q, 2)
      yield* enqueue(q, 2, order, "c")
      expect(yield* q.stats).toMatchObject({ waiting: 3, refused: { waiting: 1 } })
    }).pipe(withManager({ maxUserQueue: 1, maxWaitingPerUser: 2 }))
  )

  it.scoped("reject stays the default", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      const error = yield* q.withSlot(1)(Effect.void).pipe(Effect.flip)
      expect(error._tag).toBe("QueueFull")
      expect(yield* q.stats).toMatchObject({ waiting: 0, refused: { user: 1 } })
    }).pipe(withManager({ maxUserQueue: 1 }))
  )
})

describe("maxTotal", () => {
  it.scoped("caps slots across users, refusing with reason global", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      yield* hold(q, 1)
      yield* hold(q, 2)
      const error = yield* q.withSlot(3)(Effect.void).pipe(Effect.flip)
      expect(error).toEqual(new QueueManager.QueueFull({ userId: 3, reason: "global", active: 2, limit: 2 }))
      expect(error.message).toBe("all 2 slots are in use (request of user 3)")
      expect(yield* q.tryAcquire(3)).toBe(false)
      expect(yield* q.stats).toMatchObject({ inFlight: 2, refused: { global: 2 } })
    }).pipe(withManager({ maxUserQueue: 3, maxTotal: 2 }))
  )

  it.scoped("bypass slots count against it and bypass only skips the per-user check", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      expect(yield* q.tryAcquire(1, { bypassUserLimit: true })).toBe(true)
      expect(yield* q.tryAcquire(1, { bypassUserLimit: true })).toBe(true)
      expect(yield* q.tryAcquire(2, { bypassUserLimit: true })).toBe(false)
      expect(yield* q.stats).toMatchObject({ inFlight: 2, refused: { global: 1 } })
    }).pipe(withManager({ maxUserQueue: 1, maxTotal: 2 }))
  )

  it.scoped("a waiter for global capacity holds no permit while it waits", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, 1)
      const order: Array<string> = []
      const waiter = yield* enqueue(q, 2, order, "user 2")
      expect(yield* q.stats).toMatchObject({ inFlight: 1, waiting: 1 })
      expect(yield* q.activeCount(2)).toBe(0)
      yield* done
      yield* Fiber.join(waiter)
      expect(order).toEqual(["user 2"])
    }).pipe(withManager({ maxUserQueue: 3, maxTotal: 1 }))
  )
})

describe("fairness across users", () => {
  it.scoped("freed capacity goes round-robin across waiting users, FIFO within each", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const done = yield* hold(q, "x")
      const order: Array<string> = []
      const fibers = []
      for (let i = 1; i <= 4; i++) fibers.push(yield* enqueue(q, "heavy", order, `heavy${i}`))
      fibers.push(yield* enqueue(q, "light", order, "light1"))
      fibers.push(yield* enqueue(q, "other", order, "other1"))
      fibers.push(yield* enqueue(q, "light", order, "light2"))
      yield* done
      yield* Effect.forEach(fibers, Fiber.join)
      expect(order).toEqual(["heavy1", "light1", "other1", "heavy2", "light2", "heavy3", "heavy4"])
    }).pipe(withManager({ maxUserQueue: 0, maxTotal: 1 }))
  )

  it.scoped("a user waiting on its own limit does not hold back other users' turns", () =>
    Effect.gen(function* () {
      const q = yield* Queue
      const doneA = yield* hold(q, "a")
      const doneB = yield* hold(q, "b")
      const order: Array<string> = []
      const a2 = yield* enqueue(q, "a", order, "a2") // waits for its own limit (1) and the cap (2)
      const c1 = yield* enqueue(q, "c", order, "c1") // waits for the cap only
      yield* doneB // frees one global slot: "a" is still at its own limit, so "c" gets it
      yield* Fiber.join(c1)
      expect(order).toEqual(["c1"])
      yield* doneA
      yield* Fiber.join(a2)
      expect(order).toEqual(["c1", "a2"])
    }).pipe(withManager({ maxUserQueue: 1, maxTotal: 2 }))
  )
})
