import { describe, expect, it } from "@effect/vitest"
import { Effect, Equal, HashMap } from "effect"
import { QueueManager } from "../src/index.js"
import { withManager } from "./support.js"

const withLimit = (maxUserQueue: number) => withManager({ maxUserQueue })
const queue = QueueManager.QueueManager

describe("semantics kept from the seed", () => {
  it.effect("limit 3: three acquires succeed, the fourth is refused and changes nothing", () =>
    Effect.gen(function* () {
      const q = yield* queue
      const results = yield* Effect.all([q.tryAcquire(1), q.tryAcquire(1), q.tryAcquire(1)])
      expect(results).toEqual([true, true, true])
      const before = yield* q.snapshot
      expect(yield* q.tryAcquire(1)).toBe(false)
      expect(Equal.equals(yield* q.snapshot, before)).toBe(true)
      expect(yield* q.activeCount(1)).toBe(3)
    }).pipe(withLimit(3))
  )

  it.effect("limits are per user", () =>
    Effect.gen(function* () {
      const q = yield* queue
      expect(yield* q.tryAcquire("alice")).toBe(true)
      expect(yield* q.tryAcquire("alice")).toBe(false)
      expect(yield* q.tryAcquire("bob")).toBe(true)
      expect([yield* q.activeCount("alice"), yield* q.activeCount("bob")]).toEqual([1, 1])
    }).pipe(withLimit(1))
  )

  it.effect("maxUserQueue = 0 means no limit", () =>
    Effect.gen(function* () {
      const q = yield* queue
      const results = yield* Effect.replicateEffect(q.tryAcquire(5), 100)
      expect(results.every((ok) => ok)).toBe(true)
      expect(yield* q.activeCount(5)).toBe(100)
    }).pipe(withLimit(0))
  )

  it.effect("bypass skips the check, is counted, and counts against later normal acquires", () =>
    Effect.gen(function* () {
      const q = yield* queue
      expect(yield* q.tryAcquire(1)).toBe(true)
      expect(yield* q.tryAcquire(1)).toBe(true)
      expect(yield* q.tryAcquire(1, { bypassUserLimit: true })).toBe(true)
      expect(yield* q.activeCount(1)).toBe(3)
      yield* q.release(1)
      expect(yield* q.tryAcquire(1)).toBe(false)
      yield* q.release(1)
      expect(yield* q.tryAcquire(1)).toBe(true)
    }).pipe(withLimit(2))
  )

  it.effect("bypass slots are counted with limit 0 too", () =>
    Effect.gen(function* () {
      const q = yield* queue
      expect(yield* q.tryAcquire(9, { bypassUserLimit: true })).toBe(true)
      expect(yield* q.tryAcquire(9)).toBe(true)
      expect(yield* q.activeCount(9)).toBe(2)
    }).pipe(withLimit(0))
  )

  it.effect("releasing an unknown user is a no-op and counts never go negative", () =>
    Effect.gen(function* () {
      const q = yield* queue
      yield* q.release(404)
      expect(yield* q.activeCount(404)).toBe(0)
      expect(HashMap.size(yield* q.snapshot)).toBe(0)
      yield* q.tryAcquire(1)
      yield* q.release(1)
      yield* q.release(1)
      yield* q.release(1)
      expect(yield* q.activeCount(1)).toBe(0)
      expect(yield* q.tryAcquire(1)).toBe(true)
      expect(yield* q.activeCount(1)).toBe(1)
    }).pipe(withLimit(3))
  )

  it.effect("an entry disappears when its count reaches zero", () =>
    Effect.gen(function* () {
      const q = yield* queue
      yield* q.tryAcquire(1)
      yield* q.tryAcquire(2)
      yield* q.release(1)
      expect(Array.from(HashMap.keys(yield* q.snapshot))).toEqual([2])
    }).pipe(withLimit(3))
  )

  it.effect("activeUsers counts distinct users holding a slot", () =>
    Effect.gen(function* () {
      const q = yield* queue
      yield* Effect.all([q.tryAcquire(1), q.tryAcquire(1), q.tryAcquire(2), q.tryAcquire("3")])
      expect(yield* q.activeUsers).toBe(3)
      yield* q.release(2)
      expect(yield* q.activeUsers).toBe(2)
    }).pipe(withLimit(3))
  )

  it.effect("activeCount of an unseen user is 0 and creates nothing", () =>
    Effect.gen(function* () {
      const q = yield* queue
      expect(yield* q.activeCount(12345)).toBe(0)
      expect(yield* q.activeUsers).toBe(0)
      expect(HashMap.size(yield* q.snapshot)).toBe(0)
    }).pipe(withLimit(3))
  )

  it.effect("1,000 concurrent acquires for one user with limit 3: exactly 3 succeed", () =>
    Effect.gen(function* () {
      const q = yield* queue
      const results = yield* Effect.all(
        Array.from({ length: 1000 }, () => q.tryAcquire(77)),
        {
          concurrency: "unbounded"
        }
      )
      expect(results.filter((ok) => ok).length).toBe(3)
      expect(yield* q.activeCount(77)).toBe(3)
    }).pipe(withLimit(3))
  )

  it.effect("negative group ids, ids above 2^31 and strings are distinct users", () =>
    Effect.gen(function* () {
      const ids = [-1001234567890, 1001234567890, -100, 100, 2 ** 31, 2 ** 31 + 1, 2 ** 32 + 100, "100", "-100"]
      const q = yield* queue
      for (const id of ids) expect(yield* q.tryAcquire(id)).toBe(true)
      for (const id of ids) expect(yield* q.tryAcquire(id)).toBe(false)
      expect(yield* q.activeUsers).toBe(ids.length)
      for (const id of ids) expect(yield* q.activeCount(id)).toBe(1)
    }).pipe(withLimit(1))
  )
})
