import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { FencedStore, fencingDemo } from "../examples/fencing.js"
import { QueueManager } from "../src/index.js"
import { untilWaiting, withManager } from "./support.js"

describe("fencing tokens", () => {
  it.effect("grow with every grant, from slot, withSlot and waiters alike", () =>
    Effect.gen(function* () {
      const queue = yield* QueueManager.QueueManager
      const tokens: Array<number> = []
      for (let i = 0; i < 5; i++) {
        tokens.push((yield* Effect.scoped(queue.slot(i % 2))).token)
        tokens.push(yield* queue.withSlot(i % 2)((slot) => Effect.succeed(slot.token)))
      }
      // a waiter admitted when the slot it waits for is released
      const { held, waiter } = yield* Effect.scoped(
        Effect.gen(function* () {
          const held = yield* queue.slot(9)
          const waiter = yield* Effect.fork(queue.withSlot(9, { onFull: "wait" })((slot) => Effect.succeed(slot.token)))
          yield* untilWaiting(queue, 1)
          return { held, waiter }
        })
      )
      expect(held.userId).toBe(9)
      tokens.push(held.token, yield* Fiber.join(waiter))
      expect(tokens).toEqual([...tokens].sort((a, b) => a - b))
      expect(new Set(tokens).size).toBe(tokens.length)
    }).pipe(withManager({ maxUserQueue: 1 }))
  )

  it.effect("a fenced store refuses the write of a holder whose slot a later holder took (examples/fencing.ts)", () =>
    Effect.gen(function* () {
      const result = yield* fencingDemo(new FencedStore())
      expect(result).toEqual({ fresh: true, late: false, kept: "second" })
    }).pipe(withManager({ maxUserQueue: 1 }))
  )
})
