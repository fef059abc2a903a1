import { Deferred, Effect, Fiber, PartitionedSemaphore } from "effect"
import pLimit from "p-limit"
import { makeManager, quantile } from "./harness.js"
import { num, type Benchmark } from "./report.js"

const QUEUE_MANAGER = 'QueueManager `withSlot(user, { onFull: "wait" })`'
const SEMAPHORE = "`Semaphore.withPermits(1)` (1 permit)"
const PARTITIONED = "`PartitionedSemaphore.withPermits(user, 1)` (1 permit)"
const P_LIMIT = "`p-limit(1)`"

/** Takes `samples` hand-off times (nanoseconds), one sample at a time. */
export type Sampler = (samples: number) => Promise<ReadonlyArray<number>>

/** Runs `self` in the only slot of one user. */
type Limit = <A, E>(self: Effect.Effect<A, E>) => Effect.Effect<A, unknown>

/** The time in nanoseconds, as the hand-off samplers note it. */
export const now = () => performance.now() * 1e6

/**
 * One sample through an Effect limiter of capacity 1: a holder takes the slot and waits for
 * a signal; a waiter is forked and left to suspend on the limiter (checked with `queued`, or
 * the waiter fiber's status); then the holder is signalled, notes the time and ends its body,
 * which releases the slot; the waiter notes the time its body starts.
 */
export const effectSampler =
  (limit: Limit, queued?: Effect.Effect<boolean, unknown>): Sampler =>
  (samples) =>
    Effect.runPromise(
      Effect.gen(function* () {
        const times: Array<number> = []
        for (let s = 0; s < samples; s++) {
          let released = 0
          let started = 0
          const holding = yield* Deferred.make<void>()
          const go = yield* Deferred.make<void>()
          const holder = yield* Effect.fork(
            limit(
              Effect.zipRight(
                Deferred.succeed(holding, undefined),
                Effect.zipRight(
                  Deferred.await(go),
                  Effect.sync(() => {
                    released = now()
                  })
                )
              )
            )
          )
          yield* Deferred.await(holding)
          const waiter = yield* Effect.fork(
            limit(
              Effect.sync(() => {
                started = now()
              })
            )
          )
          const isWaiting = queued ?? Effect.map(Fiber.status(waiter), (status) => status._tag === "Suspended")
          while (!(yield* isWaiting)) yield* Effect.yieldNow()
          yield* Deferred.succeed(go, undefined)
          yield* Fiber.join(holder)
          yield* Fiber.join(waiter)
          times.push(started - released)
        }
        return times
      })
    )

/** The same sample through `p-limit(1)`: the waiter is queued by the time the call returns. */
const pLimitSampler: Sampler = async (samples) => {
  const limit = pLimit(1)
  const times: Array<number> = []
  for (let s = 0; s < samples; s++) {
    let released = 0
    let started = 0
    let go: () => void = () => {}
    const signal = new Promise<void>((resolve) => (go = resolve))
    const holder = limit(async () => {
      await signal
      released = now()
    })
    const waiter = limit(() => {
      started = now()
    })
    if (limit.pendingCount !== 1) throw new Error("p-limit: the waiter is not queued")
    go()
    await Promise.all([holder, waiter])
    times.push(started - released)
  }
  return times
}

const samplers = (): ReadonlyArray<readonly [string, Sampler]> => {
  const queue = makeManager({ maxUserQueue: 1 })
  const semaphore = Effect.runSync(Effect.makeSemaphore(1))
  const partitioned = PartitionedSemaphore.makeUnsafe<number>({ permits: 1 })
  return [
    [
      QUEUE_MANAGER,
      effectSampler(
        queue.withSlot(1, { onFull: "wait" }),
        Effect.map(queue.stats, (stats) => stats.waiting === 1)
      )
    ],
    [SEMAPHORE, effectSampler(semaphore.withPermits(1))],
    [PARTITIONED, effectSampler(partitioned.withPermits(1, 1))],
    [P_LIMIT, pLimitSampler]
  ]
}

/**
 * Takes `rounds × perRound` samples of every sampler after a warm-up round of `perRound`,
 * the samplers interleaved in an order rotated each round. Nanoseconds, per sampler name.
 */
export const sampleRounds = async (
  samplers: ReadonlyArray<readonly [string, Sampler]>,
  rounds: number,
  perRound: number
): Promise<ReadonlyMap<string, ReadonlyArray<number>>> => {
  const times = new Map(samplers.map(([name]) => [name, [] as Array<number>]))
  for (const [, sample] of samplers) await sample(perRound)
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < samplers.length; k++) {
      const [name, sample] = samplers[(round + k) % samplers.length]!
      times.get(name)!.push(...(await sample(perRound)))
    }
  }
  return times
}

/** Nanoseconds as microseconds: `12.3 µs`. */
export const micros = (nanos: number): string => `${num(nanos / 1000, 1)} µs`

/**
 * Benchmark 6: the time from a release to the next waiter's body starting (limit 1, one
 * waiter queued), p50 and p99 over many samples, next to Effect's semaphores and p-limit.
 */
export const handoff: Benchmark = {
  id: "handoff",
  rows: [QUEUE_MANAGER, SEMAPHORE, PARTITIONED, P_LIMIT],
  run: async (quick) => {
    const rounds = quick ? 2 : 10
    const perRound = quick ? 50 : 500
    const contenders = samplers()
    const times = await sampleRounds(contenders, rounds, perRound)
    const p50 = (name: string) => quantile(times.get(name)!, 0.5)
    return {
      title: "6. Wait-mode hand-off: from a release to the next waiter running",
      setup:
        `Capacity 1 (one user with \`maxUserQueue: 1\`; 1 permit), one holder and one waiter, the waiter checked to be ` +
        `suspended on the limiter (\`stats.waiting\`, the fiber's status; p-limit's \`pendingCount\`) before the holder is ` +
        `let go. The holder notes \`performance.now()\` as the last step of its body, the waiter as the first step of its ` +
        `own; the difference covers the release, the hand-off and the wake-up of the waiter's fiber. ` +
        `${num(rounds * perRound)} samples per contender (${rounds} rounds of ${perRound}, interleaved, after a warm-up ` +
        `round).`,
      header: ["contender", "p50", "p99", "p50 vs `Semaphore`"],
      rows: contenders.map(([name]) => [
        name,
        micros(p50(name)),
        micros(quantile(times.get(name)!, 0.99)),
        `${num(p50(name) / p50(SEMAPHORE), 2)}×`
      ]),
      targets: [],
      notes: ["Issue 3 sets no target for the hand-off; the figures are for comparison."]
    }
  }
}
