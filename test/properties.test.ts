import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck, HashMap, TestContext } from "effect"
import { QueueManager } from "../src/index.js"
import { concurrentProperties, type Guard, program, violations } from "./concurrentSlots.js"

/** The seed's Python class, line for line: the reference the manager must agree with. */
class SeedQueueManager {
  readonly queue = new Map<QueueManager.UserId, number>()
  constructor(readonly maxUserQueue: number) {}
  acquire(userId: QueueManager.UserId, bypass: boolean): boolean {
    const count = this.queue.get(userId) ?? 0
    if (!bypass && this.maxUserQueue > 0 && count >= this.maxUserQueue) return false
    this.queue.set(userId, count + 1)
    return true
  }
  release(userId: QueueManager.UserId): void {
    const count = this.queue.get(userId)
    if (count === undefined) return
    if (count - 1 <= 0) this.queue.delete(userId)
    else this.queue.set(userId, count - 1)
  }
}

const user = FastCheck.constantFrom<QueueManager.UserId>(7, -1001234567890, 2 ** 40 + 1, "alice", 0)
const op = FastCheck.oneof(
  FastCheck.record({ op: FastCheck.constant("acquire" as const), user, bypass: FastCheck.boolean() }),
  FastCheck.record({ op: FastCheck.constant("release" as const), user }),
  FastCheck.record({ op: FastCheck.constant("count" as const), user }),
  FastCheck.record({ op: FastCheck.constant("users" as const) })
)

describe("properties", () => {
  it.effect.prop(
    "tryAcquire / release / activeCount / activeUsers answer exactly like the seed's class",
    [FastCheck.integer({ min: 0, max: 4 }), FastCheck.array(op, { maxLength: 60 })],
    ([limit, ops]) =>
      Effect.gen(function* () {
        const q = yield* QueueManager.make({ maxUserQueue: limit })
        const seed = new SeedQueueManager(limit)
        for (const o of ops) {
          switch (o.op) {
            case "acquire":
              expect(yield* q.tryAcquire(o.user, { bypassUserLimit: o.bypass })).toBe(seed.acquire(o.user, o.bypass))
              break
            case "release":
              yield* q.release(o.user)
              seed.release(o.user)
              break
            case "count":
              expect(yield* q.activeCount(o.user)).toBe(seed.queue.get(o.user) ?? 0)
              break
            case "users":
              expect(yield* q.activeUsers).toBe(seed.queue.size)
          }
        }
        expect(new Map(HashMap.toEntries(yield* q.snapshot))).toEqual(seed.queue)
      }),
    { fastCheck: { numRuns: 200 } }
  )

  // a few runs here; many in properties.slow.test.ts (npm run test:slow)
  concurrentProperties({ plain: 50, scheduled: 60 })

  it.effect("the property finds the leak in a variant whose release is a plain sequenced step", () =>
    Effect.gen(function* () {
      const sequenced: Guard =
        (q, userId, options) =>
        <A, E, R>(body: Effect.Effect<A, E, R>) =>
          Effect.flatMap(
            q.tryAcquire(userId, options),
            (acquired): Effect.Effect<A, E | QueueManager.SlotError | QueueManager.LeaseLost, R> =>
              acquired
                ? Effect.zipLeft(body, q.release(userId))
                : Effect.fail(new QueueManager.QueueFull({ userId, reason: "user", active: 0, limit: 0 }))
          )
      const result = yield* Effect.promise(() =>
        FastCheck.check(
          FastCheck.asyncProperty(program, (prog) =>
            Effect.runPromise(violations(prog, () => sequenced).pipe(Effect.provide(TestContext.TestContext))).then(
              (found) => found.length === 0
            )
          ),
          { numRuns: 300 }
        )
      )
      expect(result.failed).toBe(true)
    })
  )
})
