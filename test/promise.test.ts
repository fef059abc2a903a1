/**
 * `QueueManager.toPromise`: the manager for code that is not Effect, on the store under test.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigError, Effect, Layer, ManagedRuntime } from "effect"
import { QueueManager } from "../src/index.js"
import { managerLayer } from "./support.js"

/** A runtime over a fresh manager, disposed when the test ends; `buildMillis` delays its build. */
const runtimeOf = (options: QueueManager.Options, buildMillis = 0) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      ManagedRuntime.make(
        Layer.provideMerge(
          managerLayer(options),
          Layer.effectDiscard(Effect.promise(() => new Promise((resolve) => setTimeout(resolve, buildMillis))))
        )
      )
    ),
    (runtime) => Effect.promise(() => runtime.dispose())
  )

/** A promise and the function settling it. */
const gate = () => {
  let open = () => {}
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { opened, open }
}

describe("QueueManager.toPromise", () => {
  it.scopedLive("withSlot resolves with the work's result and rejects with the library's own errors", () =>
    Effect.gen(function* () {
      const queue = QueueManager.toPromise(yield* runtimeOf({ maxUserQueue: 1 }))
      const held = gate()
      const first = queue.withSlot("alice", async (slot) => {
        await held.opened
        return `done by ${slot.userId}`
      })
      const refusal = yield* Effect.promise(() =>
        queue
          .withSlot("alice", () => "never")
          .then(
            () => undefined,
            (error: unknown) => error
          )
      )
      expect(refusal).toBeInstanceOf(QueueManager.QueueFull)
      expect(refusal).toMatchObject({ reason: "user", active: 1, limit: 1 })
      expect(yield* Effect.promise(() => queue.status("alice"))).toEqual({
        active: 1,
        waiting: 0,
        limit: 1,
        maxWaiting: 100
      })
      held.open()
      expect(yield* Effect.promise(() => first)).toBe("done by alice")
      expect((yield* Effect.promise(() => queue.stats())).inFlight).toBe(0)
    })
  )

  it.scopedLive("the work's own rejection comes back as it was, and the slot is released", () =>
    Effect.gen(function* () {
      const queue = QueueManager.toPromise(yield* runtimeOf({ maxUserQueue: 1 }))
      const failure = new TypeError("the download failed")
      const rejected = yield* Effect.promise(() =>
        queue
          .withSlot(1, () => {
            throw failure
          })
          .then(
            () => undefined,
            (error: unknown) => error
          )
      )
      expect(rejected).toBe(failure)
      const asynchronously = yield* Effect.promise(() =>
        queue
          .withSlot(1, () => Promise.reject(failure))
          .then(
            () => undefined,
            (error: unknown) => error
          )
      )
      expect(asynchronously).toBe(failure)
      expect((yield* Effect.promise(() => queue.stats())).inFlight).toBe(0)
    })
  )

  it.scopedLive("calls made while the runtime is still building are served first in, first out", () =>
    Effect.gen(function* () {
      const queue = QueueManager.toPromise(yield* runtimeOf({ maxUserQueue: 1 }, 50))
      const order: Array<number> = []
      const calls = Array.from({ length: 8 }, (_, i) => queue.withSlot("chat", () => order.push(i), { onFull: "wait" }))
      yield* Effect.promise(() => Promise.all(calls))
      expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    })
  )

  it.scopedLive("calls through two faces of one runtime still building are served in the order they were made", () =>
    Effect.gen(function* () {
      const runtime = yield* runtimeOf({ maxUserQueue: 1 }, 50)
      const faces = [QueueManager.toPromise(runtime), QueueManager.toPromise(runtime)]
      const order: Array<number> = []
      const calls = Array.from({ length: 8 }, (_, i) =>
        faces[i % 2]!.withSlot("chat", () => order.push(i), { onFull: "wait" })
      )
      yield* Effect.promise(() => Promise.all(calls))
      expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    })
  )

  it.scopedLive("tryAcquire, release, check and drain", () =>
    Effect.gen(function* () {
      const queue = QueueManager.toPromise(yield* runtimeOf({ maxUserQueue: 1 }))
      expect(yield* Effect.promise(() => queue.tryAcquire(5))).toBe(true)
      expect(yield* Effect.promise(() => queue.tryAcquire(5))).toBe(false)
      expect(yield* Effect.promise(() => queue.check(5))).toMatchObject({ _tag: "QueueFull", reason: "user" })
      yield* Effect.promise(() => queue.release(5))
      expect(yield* Effect.promise(() => queue.check(5))).toBeUndefined()
      yield* Effect.promise(() => queue.drain())
      const afterDrain = yield* Effect.promise(() =>
        queue
          .withSlot(5, () => "never")
          .then(
            () => undefined,
            (error: unknown) => error
          )
      )
      expect(afterDrain).toBeInstanceOf(QueueManager.QueueShutdown)
    })
  )

  it.live("a layer that fails to build rejects with its own error; a disposed runtime serves nothing", () =>
    Effect.gen(function* () {
      const broken = QueueManager.toPromise(ManagedRuntime.make(QueueManager.layer({ maxUserQueue: -1 })))
      const error = yield* Effect.promise(() =>
        broken
          .withSlot(1, () => "never")
          .then(
            () => undefined,
            (e: unknown) => e
          )
      )
      expect(ConfigError.isConfigError(error)).toBe(true)
      expect(String(error)).toContain("maxUserQueue must be a whole number >= 0")

      const runtime = ManagedRuntime.make(QueueManager.layer({ maxUserQueue: 1 }))
      const queue = QueueManager.toPromise(runtime)
      expect(yield* Effect.promise(() => queue.withSlot(1, () => "served"))).toBe("served")
      yield* Effect.promise(() => runtime.dispose())
      const rejection = (call: Promise<unknown>) =>
        call.then(
          () => "served",
          (e: unknown) => e
        )
      // the library's own refusal, as for a call cut short by the dispose (not Effect's defect string)
      expect(yield* Effect.promise(() => rejection(queue.withSlot(1, () => "never")))).toEqual(
        new QueueManager.QueueShutdown({ userId: 1 })
      )
      const stats = yield* Effect.promise(() => rejection(queue.stats()))
      expect(stats).toBeInstanceOf(Error)
      expect(String(stats)).toContain("the runtime has been disposed")
    })
  )

  it("refuses what is not a runtime, naming it", () => {
    expect(() => QueueManager.toPromise({} as never)).toThrow("runtime must be a Runtime or a ManagedRuntime, got {}")
  })
})
