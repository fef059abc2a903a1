import { Effect } from "effect"
import type { QueueManager } from "../src/index.js"
import {
  effectContender,
  LIMIT,
  makeManager,
  repeatOps,
  sampleInterleaved,
  timingSampling,
  USERS as USERS_PER_SAMPLE,
  type Contender
} from "./harness.js"
import { describeSampling, num, ratioTarget, timingRow, type Benchmark } from "./report.js"

const SMALL = 100

const SMALL_NEW = "small manager, users holding nothing"
const LARGE_NEW = "large manager, users holding nothing"
const SMALL_HOLDING = "small manager, users already holding a slot"
const LARGE_HOLDING = "large manager, users already holding a slot"

/** A manager in which users `0 .. users - 1` each hold one slot (taken with `tryAcquire`). */
const filledManager = (users: number): QueueManager.Service => {
  const queue = makeManager({ maxUserQueue: LIMIT })
  Effect.runSync(
    repeatOps(users, (user) =>
      Effect.flatMap(queue.tryAcquire(user), (ok) => (ok ? Effect.void : Effect.dieMessage(`prefill refused ${user}`)))
    )
  )
  if (Effect.runSync(queue.activeUsers) !== users) throw new Error("prefill: wrong number of users")
  return queue
}

/**
 * Benchmark 3: the hit path of `withSlot` in a manager where 100 users hold a slot, and in one
 * where 1,000,000 do, for users holding nothing (an entry is added and removed) and for users
 * already holding one (an entry is updated twice).
 */
export const scale: Benchmark = {
  id: "scale",
  rows: [SMALL_NEW, LARGE_NEW, SMALL_HOLDING, LARGE_HOLDING],
  run: async (quick) => {
    const large = quick ? 10_000 : 1_000_000
    const filled = new Map([
      [SMALL, filledManager(SMALL)],
      [large, filledManager(large)]
    ])
    /** Users already holding a slot, spread over the filled ids. */
    const holder = (users: number) => {
      const stride = Math.max(1, Math.floor(users / USERS_PER_SAMPLE))
      return (i: number) => (i % Math.min(users, USERS_PER_SAMPLE)) * stride
    }
    /** Users holding nothing: the ids above the filled ones. */
    const newcomer = (users: number) => (i: number) => users + (i % USERS_PER_SAMPLE)
    const specs = [
      { name: SMALL_NEW, users: SMALL, reference: SMALL_NEW, user: newcomer(SMALL) },
      { name: LARGE_NEW, users: large, reference: SMALL_NEW, user: newcomer(large) },
      { name: SMALL_HOLDING, users: SMALL, reference: SMALL_HOLDING, user: holder(SMALL) },
      { name: LARGE_HOLDING, users: large, reference: SMALL_HOLDING, user: holder(large) }
    ]
    const contenders: ReadonlyArray<Contender> = specs.map(({ name, user, users }) => {
      const queue = filled.get(users)!
      return effectContender(name, (i) => queue.withSlot(user(i))(Effect.void))
    })
    const sampling = timingSampling(quick)
    const samples = await sampleInterleaved(contenders, sampling)
    return {
      title: `3. Scale: the hit path with ${num(SMALL)} and with ${num(large)} users holding a slot`,
      setup:
        `Two managers (limit ${LIMIT}), one where users \`0 .. ${SMALL - 1}\` each hold one slot and one where users ` +
        `\`0 .. ${num(large - 1)}\` do (taken with \`tryAcquire\` beforehand, never released), both alive during the ` +
        `measurement, so both run with the same heap. An operation is \`withSlot(user)(Effect.void)\`, for ` +
        `${num(USERS_PER_SAMPLE)} users in turn: either users holding nothing (ids above the filled ones: the user's entry ` +
        `is added, then removed) or users already holding a slot (spread over the filled ids: the entry goes from 1 to 2 ` +
        `and back; the small manager cycles through its ${SMALL} holders). ` +
        describeSampling(sampling, "the small manager with the same kind of users"),
      header: ["contender", "users holding a slot", "median per operation", "vs the small manager"],
      rows: specs.map(({ name, users, reference }) => {
        const [, perOp, vs] = timingRow(samples, name, reference)
        return [name, num(users), perOp!, vs!]
      }),
      targets: [
        ratioTarget("scale: users holding nothing, large vs small manager", samples, LARGE_NEW, SMALL_NEW, 2),
        ratioTarget("scale: users holding a slot, large vs small manager", samples, LARGE_HOLDING, SMALL_HOLDING, 2)
      ],
      notes: []
    }
  }
}
