/**
 * The in-memory store's steps, one at a time: a fiber told by a step may run at once and take
 * steps of its own.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Scheduler } from "effect"
import { QueueManager } from "../src/index.js"
import { atOnce } from "./concurrentSlots.js"
import { eventually } from "./eventually.js"

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
      const waiting = options.maxTotal === 1 ? 2 : 1
      yield* eventually(`${waiting} requests wait`, queue.stats, (s) => s.waiting === waiting)
      yield* Deferred.succeed(held, undefined)
      yield* Fiber.await(first)
      expect(yield* Effect.forEach(waiters, Fiber.await)).toEqual([Exit.succeed(1), Exit.succeed(2)])
      expect(yield* queue.stats).toMatchObject({ inFlight: 0, waiting: 0, activeUsers: 0 })
    }).pipe(Effect.provide(QueueManager.layer(options)))
  )

  it.live("waiters of one step interrupting each other as they are told: each ends once, nothing stays held", () =>
    Effect.gen(function* () {
      const queue = yield* QueueManager.QueueManager
      expect(yield* queue.tryAcquire(1)).toBe(true)
      // when the first of the pair fails, Effect.all interrupts the second, at once, while the
      // shutdown's step is still telling its waiters
      const wait = queue.withSlot(1, { onFull: "wait" })(Effect.void)
      const pair = yield* Effect.fork(
        Effect.all([wait, wait], { concurrency: "unbounded" }).pipe(Effect.withScheduler(atOnce))
      )
      const third = yield* Effect.fork(wait)
      yield* eventually("three requests wait", queue.stats, (s) => s.waiting === 3)
      yield* queue.shutdown
      const pairExit = yield* Fiber.await(pair)
      expect(Exit.isFailure(pairExit) && Cause.failureOption(pairExit.cause)).toEqual(
        Option.some(new QueueManager.QueueShutdown({ userId: 1 }))
      )
      expect(yield* Fiber.await(third)).toEqual(Exit.fail(new QueueManager.QueueShutdown({ userId: 1 })))
      yield* queue.release(1)
      expect(yield* queue.stats).toMatchObject({ inFlight: 0, waiting: 0, activeUsers: 0 })
    }).pipe(Effect.provide(QueueManager.layer({ maxUserQueue: 1 })))
  )

  it.live("awaitIdle ends only with no slot held, also for a fiber that took one as it was told", () =>
    Effect.gen(function* () {
      const queue = yield* QueueManager.QueueManager
      expect(yield* queue.tryAcquire(1)).toBe(true)
      const started = yield* Deferred.make<void>()
      const waiting = yield* Effect.fork(
        Effect.gen(function* () {
          yield* Deferred.succeed(started, undefined)
          yield* queue.awaitIdle
          yield* queue.tryAcquire(2)
          yield* queue.awaitIdle
        }).pipe(Effect.withScheduler(atOnce))
      )
      // the fiber runs on at once: it waits for idleness before this one resumes
      yield* Deferred.await(started)
      yield* queue.release(1)
      // the fiber ran at once: it holds user 2's slot and waits again
      expect((yield* queue.stats).inFlight).toBe(1)
      expect(waiting.unsafePoll()).toBeNull()
      yield* queue.release(2)
      expect(yield* Fiber.await(waiting)).toEqual(Exit.void)
    }).pipe(Effect.provide(QueueManager.layer({ maxUserQueue: 1 })))
  )

  it.live(
    "a waiter that stops waiting and yields at any point meanwhile, while a release admits it, leaks nothing",
    () =>
      Effect.gen(function* () {
        // a holder of user 1's slot waits on a gate; a waiter is interrupted and its scheduler
        // yields once, at the `yieldAt`-th operation of its way out: the yield opens the gate and
        // the holder, on a scheduler that runs tasks at once, gives its slot back inside it (a
        // release from another fiber between two operations of the leaving one)
        const run = (yieldAt: number) =>
          Effect.gen(function* () {
            const queue = yield* QueueManager.make({ maxUserQueue: 1 })
            const gate = yield* Deferred.make<void>()
            const entered = yield* Deferred.make<void>()
            const holder = yield* Effect.fork(
              queue
                .withSlot(1)(Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(gate)))
                .pipe(Effect.withScheduler(atOnce))
            )
            yield* Deferred.await(entered)
            let counting = false
            let ops = 0
            let yielded = false
            const yieldOnce = Scheduler.make(
              (task) => {
                if (yielded) Deferred.unsafeDone(gate, Exit.void)
                setTimeout(task, 0)
              },
              () => (counting && ++ops === yieldAt ? ((yielded = true), 0) : false)
            )
            const waiter = yield* Effect.fork(
              queue.withSlot(1, { onFull: "wait" })(Effect.void).pipe(Effect.withScheduler(yieldOnce))
            )
            yield* eventually("the request waits", queue.stats, (s) => s.waiting === 1)
            counting = true
            const waiterExit = yield* Fiber.interrupt(waiter)
            counting = false
            yield* Deferred.succeed(gate, undefined)
            const holderExit = yield* Fiber.await(holder)
            return { ops, yielded, waiterExit, holderExit, stats: yield* queue.stats }
          })
        // the way out, counted once without yielding, then a yield tried at each of its operations
        const { ops } = yield* run(Infinity)
        expect(ops).toBeGreaterThan(1)
        for (let yieldAt = 1; yieldAt <= ops; yieldAt++) {
          const { holderExit, stats, waiterExit, yielded } = yield* run(yieldAt)
          expect([yieldAt, yielded, Exit.isInterrupted(waiterExit), holderExit, stats]).toMatchObject([
            yieldAt,
            true,
            true,
            Exit.void,
            { inFlight: 0, waiting: 0, activeUsers: 0 }
          ])
        }
      })
  )
})
