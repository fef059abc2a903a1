import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, FastCheck, Fiber, HashMap, Logger, LogLevel } from "effect"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import { eventually } from "../eventually.js"
import { deleteKeys, redisUrl, uniquePrefix, untilWaiting } from "../support.js"

const step = FastCheck.oneof(
  {
    weight: 4,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("ask" as const),
      user: FastCheck.constantFrom(1, 2, 3),
      wait: FastCheck.boolean(),
      bypass: FastCheck.boolean()
    })
  },
  { weight: 3, arbitrary: FastCheck.record({ op: FastCheck.constant("finish" as const), pick: FastCheck.nat() }) },
  { weight: 1, arbitrary: FastCheck.record({ op: FastCheck.constant("give up" as const), pick: FastCheck.nat() }) },
  {
    weight: 1,
    arbitrary: FastCheck.record({
      op: FastCheck.constant("resize" as const),
      maxUserQueue: FastCheck.integer({ min: 1, max: 3 }),
      maxTotal: FastCheck.integer({ min: 0, max: 4 })
    })
  }
)

/** One manager and what its requests did: request `i` started its work, or was refused. */
interface Side {
  readonly manager: QueueManager.Service
  readonly started: Set<number>
  readonly refused: Set<number>
  readonly fibers: Map<number, Fiber.RuntimeFiber<unknown, unknown>>
}

const sideOf = (manager: QueueManager.Service): Side => ({
  manager,
  started: new Set(),
  refused: new Set(),
  fibers: new Map()
})

/** What two stores that agree show alike. */
const view = (side: Side) =>
  Effect.map(Effect.all([side.manager.snapshot, side.manager.stats]), ([snapshot, stats]) => ({
    started: [...side.started].sort(),
    refused: [...side.refused].sort(),
    held: HashMap.toEntries(snapshot).sort(),
    waiting: stats.waiting
  }))

describe("Redis store against the in-memory store", () => {
  it.live("a resize hands the room it makes to the users in turn, as in memory", () =>
    Effect.gen(function* () {
      const options = { maxUserQueue: 1, maxTotal: 4 }
      const prefix = uniquePrefix()
      yield* Effect.addFinalizer(() => deleteKeys(prefix))
      const gate = yield* Deferred.make<void>()
      const held: Array<ReadonlyArray<readonly [QueueManager.UserId, number]>> = []
      for (const manager of [
        yield* QueueManager.make(options),
        yield* RedisStore.make({ ...options, redis: redisUrl, prefix })
      ]) {
        // users 1 and 2 hold a slot each, and two requests of each wait behind it
        for (const user of [1, 2, 1, 1, 2, 2])
          yield* Effect.fork(manager.withSlot(user, { onFull: "wait" })(Deferred.await(gate)))
        yield* untilWaiting(manager, 4)
        // room for 2 more in all, up to 3 per user: one each, not two for whoever comes first
        yield* manager.resize({ maxUserQueue: 3 })
        yield* eventually("the room is taken", manager.stats, (s) => s.inFlight === 4)
        held.push(HashMap.toEntries(yield* manager.snapshot).sort())
      }
      expect(held).toEqual([
        [
          [1, 2],
          [2, 2]
        ],
        [
          [1, 2],
          [2, 2]
        ]
      ])
      yield* Deferred.succeed(gate, undefined)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))
  )

  it.live.prop(
    "random waiting, refusals, bypasses, give-ups and resizes admit the same requests in the same order",
    [FastCheck.array(step, { minLength: 5, maxLength: 30 })],
    ([steps]) =>
      Effect.gen(function* () {
        const options = { maxUserQueue: 2, maxTotal: 3, maxWaitingPerUser: 2 }
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => deleteKeys(prefix))
        const sides = [
          sideOf(yield* QueueManager.make(options)),
          sideOf(yield* RedisStore.make({ ...options, redis: redisUrl, prefix }))
        ] as const
        const gates: Array<Deferred.Deferred<void>> = []
        // after each step, once Redis has caught up, both show the same: which requests run, which
        // were refused, the counts and how many wait
        const agree = Effect.gen(function* () {
          const both = Effect.all(sides.map(view))
          yield* Effect.ignore(
            eventually("the stores agree", both, ([a, b]) => JSON.stringify(a) === JSON.stringify(b))
          )
          const [memory, redis] = yield* both
          expect(redis).toEqual(memory)
        })
        const running = () => [...sides[0].started].filter((i) => sides[0].fibers.has(i))
        const waiting = () =>
          [...sides[0].fibers.keys()].filter((i) => !sides[0].started.has(i) && !sides[0].refused.has(i))
        const end = (i: number) => Effect.sync(() => sides.forEach((side) => side.fibers.delete(i)))
        const giveUp = (i: number) =>
          Effect.zipRight(
            Effect.forEach(sides, (side) => Fiber.interrupt(side.fibers.get(i)!)),
            end(i)
          )
        for (const s of steps) {
          switch (s.op) {
            case "ask": {
              const i = gates.length
              const gate = yield* Deferred.make<void>()
              gates.push(gate)
              for (const side of sides) {
                const work = Effect.zipRight(
                  Effect.sync(() => side.started.add(i)),
                  Deferred.await(gate)
                )
                const fiber = yield* side.manager
                  .withSlot(s.user, { onFull: s.wait ? "wait" : "reject", bypassUserLimit: s.bypass })(work)
                  .pipe(
                    Effect.catchTag("QueueFull", () => Effect.sync(() => side.refused.add(i))),
                    Effect.fork
                  )
                side.fibers.set(i, fiber)
              }
              break
            }
            case "finish": {
              const candidates = running()
              if (candidates.length === 0) break
              const i = candidates[s.pick % candidates.length]!
              yield* Deferred.succeed(gates[i]!, undefined)
              yield* Effect.forEach(sides, (side) => Fiber.await(side.fibers.get(i)!))
              yield* end(i)
              break
            }
            case "give up": {
              const candidates = waiting()
              if (candidates.length === 0) break
              yield* giveUp(candidates[s.pick % candidates.length]!)
              break
            }
            case "resize":
              yield* Effect.forEach(sides, (side) =>
                side.manager.resize({ maxUserQueue: s.maxUserQueue, maxTotal: s.maxTotal })
              )
          }
          yield* agree
        }
        // the end: everything given back or given up, in both
        // one at a time, as a give-up that lets the next request in takes Redis a round trip
        for (let i = waiting()[0]; i !== undefined; i = waiting()[0]) {
          yield* giveUp(i)
          yield* agree
        }
        for (const gate of gates) yield* Deferred.succeed(gate, undefined)
        yield* Effect.forEach(sides, (side) => Effect.forEach(side.fibers.values(), Fiber.await))
        yield* agree
        expect(yield* sides[1].manager.stats).toMatchObject({ inFlight: 0, waiting: 0 })
      }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)),
    { timeout: 120_000, fastCheck: { numRuns: 40 } }
  )
})
