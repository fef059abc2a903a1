import { Effect, ManagedRuntime } from "effect"
import pLimit from "p-limit"
import { QueueManager } from "../src/index.js"
import { LIMIT, pairedRatio, sampleInterleaved, timingSampling, USERS, type Contender } from "./harness.js"
import { describeSampling, num, ratio, ratioTarget, timingRow, type Benchmark } from "./report.js"

const PROMISE_FACE = "`QueueManager.toPromise(runtime).withSlot(user, work)`"
const RUN_PROMISE = "`runtime.runPromise(queue.withSlot(user)(Effect.promise(work)))`"
const P_LIMIT = "`Map` of `p-limit`"

const noop = () => undefined

/**
 * Benchmark 12: a slot taken and given back from code that is not Effect, each call awaited in
 * a plain loop: the Promise face, a `ManagedRuntime.runPromise` per call, and a `p-limit` per user.
 */
export const promiseFace: Benchmark = {
  id: "promise",
  rows: [PROMISE_FACE, RUN_PROMISE, P_LIMIT],
  run: async (quick) => {
    const runtime = ManagedRuntime.make(QueueManager.layer({ maxUserQueue: LIMIT }))
    const manager = await runtime.runPromise(QueueManager.QueueManager)
    const queue = QueueManager.toPromise(runtime)
    const limiters = new Map(Array.from({ length: USERS }, (_, user) => [user, pLimit(LIMIT)] as const))
    const contenders: ReadonlyArray<Contender> = [
      {
        name: PROMISE_FACE,
        run: async (ops) => {
          for (let i = 0; i < ops; i++) await queue.withSlot(i % USERS, noop)
        }
      },
      {
        name: RUN_PROMISE,
        run: async (ops) => {
          for (let i = 0; i < ops; i++)
            await runtime.runPromise(manager.withSlot(i % USERS)(Effect.promise(async () => noop())))
        }
      },
      {
        name: P_LIMIT,
        run: async (ops) => {
          for (let i = 0; i < ops; i++) await limiters.get(i % USERS)!(noop)
        }
      }
    ]
    const sampling = timingSampling(quick)
    const samples = await sampleInterleaved(contenders, sampling)
    await runtime.dispose()
    return {
      title: "12. The Promise face against `p-limit`",
      setup:
        `Reject mode, limit ${LIMIT} per user, ${num(USERS)} users taken in turn, the work \`() => undefined\`; every ` +
        "call awaited in a plain `async` loop (no Effect program around it), as an express handler or a plain grammY " +
        "bot would call it. " +
        describeSampling(sampling, P_LIMIT, "in one `async` loop"),
      header: ["contender", "median per operation", `vs ${P_LIMIT}`],
      rows: contenders.map((c) => timingRow(samples, c.name, P_LIMIT)),
      targets: [
        ratioTarget("Promise face: `toPromise(...).withSlot` vs a `p-limit` map", samples, PROMISE_FACE, P_LIMIT, 3)
      ],
      notes: [
        `A call through \`runPromise\` takes ${ratio(pairedRatio(samples, RUN_PROMISE, P_LIMIT))} the time of p-limit's.`,
        "The face's `withSlot` here takes its slot without a fiber: the store is in memory, the call does not wait, and " +
          "the runtime neither traces nor logs at debug level. Where one of these does not hold (Redis, " +
          '`onFull: "wait"`, a tracer, debug logs) it runs a fiber, at least the cost of the `runPromise` row.'
      ]
    }
  }
}
