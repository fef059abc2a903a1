import { Effect, PartitionedSemaphore } from "effect"
import pLimit from "p-limit"
import {
  effectContender,
  LIMIT,
  makeManager,
  pairedRatio,
  sampleInterleaved,
  timingSampling,
  USERS,
  type Contender
} from "./harness.js"
import { describeSampling, num, ratio, ratioTarget, timingRow, type Benchmark } from "./report.js"

const BARE = "no limiter (the loop and `Effect.void`)"
const WITH_SLOT = "QueueManager `withSlot(user)`"
const SEMAPHORE = "`Semaphore.withPermits(1)`"
const PARTITIONED = "`PartitionedSemaphore.withPermits(user, 1)`"
const P_LIMIT_EFFECT = "`Map` of `p-limit`, through `Effect.promise`"
const P_LIMIT = "`Map` of `p-limit`, plain `await` loop"

const noop = () => undefined

/** A `p-limit` limiter per user, made up front. */
const pLimitMap = (users: number, concurrency: number) =>
  new Map(Array.from({ length: users }, (_, user) => [user, pLimit(concurrency)] as const))

/**
 * Benchmark 1: the cost of taking and giving back a free slot, the body being `Effect.void`,
 * for users `i % 1000` in turn, next to Effect's semaphores and a `p-limit` per user.
 */
export const hitPath: Benchmark = {
  id: "hit",
  rows: [WITH_SLOT, SEMAPHORE, PARTITIONED, P_LIMIT_EFFECT, P_LIMIT, BARE],
  run: async (quick) => {
    const queue = makeManager({ maxUserQueue: LIMIT })
    const semaphore = Effect.runSync(Effect.makeSemaphore(LIMIT))
    const partitioned = PartitionedSemaphore.makeUnsafe<number>({ permits: USERS * LIMIT })
    const limiters = pLimitMap(USERS, LIMIT)
    const contenders: ReadonlyArray<Contender> = [
      effectContender(WITH_SLOT, (i) => queue.withSlot(i % USERS)(Effect.void)),
      effectContender(SEMAPHORE, () => semaphore.withPermits(1)(Effect.void)),
      effectContender(PARTITIONED, (i) => partitioned.withPermits(i % USERS, 1)(Effect.void)),
      effectContender(P_LIMIT_EFFECT, (i) => Effect.promise(() => limiters.get(i % USERS)!(noop))),
      {
        name: P_LIMIT,
        run: async (ops) => {
          for (let i = 0; i < ops; i++) await limiters.get(i % USERS)!(noop)
        }
      },
      effectContender(BARE, () => Effect.void)
    ]
    const sampling = timingSampling(quick)
    const samples = await sampleInterleaved(contenders, sampling)
    return {
      title: "1. Hit path: `withSlot` against Effect's semaphores and `p-limit`",
      setup:
        `Reject mode, limit ${LIMIT} per user, ${num(USERS)} users taken in turn (\`i % ${USERS}\`), body \`Effect.void\` ` +
        `(\`() => undefined\` for p-limit); nothing else runs, so every acquisition succeeds. The semaphore has ${LIMIT} ` +
        `permits, the partitioned one ${num(USERS * LIMIT)}. ` +
        describeSampling(sampling, SEMAPHORE),
      header: ["contender", "median per operation", "vs `Semaphore.withPermits(1)`"],
      rows: contenders.map((c) => timingRow(samples, c.name, SEMAPHORE)),
      targets: [ratioTarget("hit path: `withSlot` vs `Semaphore.withPermits(1)`", samples, WITH_SLOT, SEMAPHORE, 1)],
      notes: [
        `Where we lose: \`withSlot\` takes ${ratio(pairedRatio(samples, WITH_SLOT, PARTITIONED))} the time of ` +
          `\`PartitionedSemaphore.withPermits\` and ${ratio(pairedRatio(samples, WITH_SLOT, P_LIMIT))} that of a ` +
          "p-limit call awaited in a plain loop. A CPU profile of this loop (`node --cpu-prof` on the compiled code, this machine) " +
          "puts about half of the time in Effect's fiber run loop and about a sixth in the library's own functions " +
          "(the policy's closures, the scheduler, the metrics reporter, the `HashMap` update): the gap is mostly the " +
          "number of Effect operations per call. `withSlot` enters `withFiberRuntime` for the acquisition and again " +
          "for the release, nests `Effect.ensuring`'s own `uninterruptibleMask` inside its own and reads several " +
          "FiberRefs (tracer, log level, metric labels) on each side; `PartitionedSemaphore` runs one mask, one " +
          "`async` and one `matchCauseEffect`."
      ]
    }
  }
}
