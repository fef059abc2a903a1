import { Effect, Fiber, PartitionedSemaphore } from "effect"
import { jainIndex, makeManager } from "./harness.js"
import { num, type Benchmark } from "./report.js"

const QUEUE_MANAGER = 'QueueManager, `onFull: "wait"`, `maxTotal`'
const SEMAPHORE = "`Effect.makeSemaphore(maxTotal)` (FIFO)"
const PARTITIONED = "`PartitionedSemaphore` (permits = `maxTotal`)"

/** Runs `self` inside one of `maxTotal` permits shared by all users, held for `user`. */
type Limiter = (user: number) => <A, E>(self: Effect.Effect<A, E>) => Effect.Effect<A, unknown>

/** The load: user 1 queues `heavy` requests, users `2 .. lightUsers + 1` queue `light` each. */
interface Load {
  readonly maxTotal: number
  readonly heavy: number
  readonly lightUsers: number
  readonly light: number
  /** How long a request holds its slot: this many `Effect.yieldNow()`. */
  readonly holdYields: number
}

/** User 0 holds the whole capacity first, so that every request of the others is queued. */
const BLOCKER = 0

const arrivals = (load: Load): ReadonlyArray<number> => [
  ...Array.from({ length: load.maxTotal }, () => BLOCKER),
  ...Array.from({ length: load.heavy }, () => 1),
  ...Array.from({ length: load.lightUsers * load.light }, (_, i) => 2 + Math.floor(i / load.light))
]

/** What a run saw: completions per user while every user still had work queued, and the longest first wait. */
interface Outcome {
  readonly completions: ReadonlyArray<number>
  /** Requests completed (all users) before the last user to be served got its first slot. */
  readonly servedBeforeLastFirst: number
}

/**
 * Runs the load through `limiter`: every request is forked in arrival order and holds its
 * slot for `holdYields` yields. Effect's scheduler runs fibers first-in first-out, so a run is
 * deterministic (`fairness` runs each twice and checks). The window closes when the first
 * user starts its last request (from then on it has nothing queued).
 */
const simulate = (limiter: Limiter, load: Load): Effect.Effect<Outcome, unknown> =>
  Effect.gen(function* () {
    const users = load.lightUsers + 1
    const queued = [0, load.heavy, ...Array.from({ length: load.lightUsers }, () => load.light)]
    const completions = Array.from({ length: users + 1 }, () => 0)
    const servedAtFirst = Array.from({ length: users + 1 }, () => -1)
    let open = true
    let finished = 0
    const request = (user: number) =>
      limiter(user)(
        Effect.gen(function* () {
          if (servedAtFirst[user] === -1) servedAtFirst[user] = finished
          if (user !== BLOCKER && --queued[user]! === 0) open = false
          for (let k = 0; k < load.holdYields; k++) yield* Effect.yieldNow()
          if (open) completions[user]!++
          finished++
        })
      )
    const fibers = yield* Effect.forEach(arrivals(load), (user) => Effect.fork(request(user)))
    yield* Fiber.joinAll(fibers)
    return { completions: completions.slice(1), servedBeforeLastFirst: Math.max(...servedAtFirst.slice(1)) }
  })

const limiters = (
  maxTotal: number,
  queuedPerUser: number
): ReadonlyArray<readonly [string, () => Effect.Effect<Limiter>]> => [
  [
    QUEUE_MANAGER,
    () =>
      Effect.sync(() => {
        const queue = makeManager({ maxUserQueue: 0, maxTotal, maxWaitingPerUser: queuedPerUser })
        return (user) => queue.withSlot(user, { onFull: "wait" })
      })
  ],
  [SEMAPHORE, () => Effect.map(Effect.makeSemaphore(maxTotal), (semaphore) => () => semaphore.withPermits(1))],
  [
    PARTITIONED,
    () =>
      Effect.map(
        PartitionedSemaphore.make<number>({ permits: maxTotal }),
        (semaphore) => (user) => semaphore.withPermits(user, 1)
      )
  ]
]

/**
 * Benchmark 5: one user with 1,000 queued requests and 99 users with 10 each under
 * `maxTotal = 10`; Jain's fairness index over the completions of each user while every user
 * still has work queued, for the manager and Effect's two semaphores.
 */
export const fairness: Benchmark = {
  id: "fairness",
  rows: [QUEUE_MANAGER, SEMAPHORE, PARTITIONED],
  run: async (quick) => {
    const load: Load = quick
      ? { maxTotal: 5, heavy: 100, lightUsers: 19, light: 5, holdYields: 10 }
      : { maxTotal: 10, heavy: 1_000, lightUsers: 99, light: 10, holdYields: 10 }
    const outcomes = new Map<string, Outcome>()
    for (const [name, make] of limiters(load.maxTotal, load.heavy)) {
      const run = () => Effect.runPromise(Effect.flatMap(make(), (limiter) => simulate(limiter, load)))
      const [first, second] = [await run(), await run()]
      if (JSON.stringify(first) !== JSON.stringify(second)) throw new Error(`fairness: two runs of ${name} differ`)
      outcomes.set(name, first)
    }
    const row = (name: string) => {
      const { completions, servedBeforeLastFirst } = outcomes.get(name)!
      return [
        name,
        num(jainIndex(completions), 3),
        num(completions.reduce((a, b) => a + b, 0)),
        num(completions[0]!),
        `${num(Math.min(...completions.slice(1)))}–${num(Math.max(...completions.slice(1)))}`,
        num(servedBeforeLastFirst)
      ]
    }
    const ours = jainIndex(outcomes.get(QUEUE_MANAGER)!.completions)
    const users = load.lightUsers + 1
    return {
      title: "5. Fairness: one heavy user against many light ones under `maxTotal`",
      setup:
        `\`maxTotal = ${load.maxTotal}\`; user 1 queues ${num(load.heavy)} requests, users 2 to ${users} queue ` +
        `${load.light} each, in that order, after ${load.maxTotal} requests of a blocker user took the whole capacity ` +
        `(so every request of the ${users} users is queued). Each request holds its slot for ${load.holdYields} ` +
        `\`Effect.yieldNow()\`: Effect's scheduler runs fibers first-in first-out, so the outcome does not depend on ` +
        `the machine (each limiter runs twice and the two runs must agree). The manager has no per-user limit (\`maxUserQueue: 0\`) and \`maxWaitingPerUser: ` +
        `${num(load.heavy)}\`. Completions of each of the ${users} users are counted while every one of them still has ` +
        `a request queued (until the first user starts its last request); Jain's index over them is 1 for equal ` +
        `shares and 1/${users} when one user takes everything.`,
      header: [
        "limiter",
        "Jain's index",
        "completions in the window",
        "of the heavy user",
        "of each light user",
        "requests served before the last user's first slot"
      ],
      rows: [QUEUE_MANAGER, SEMAPHORE, PARTITIONED].map(row),
      targets: [
        {
          what: "fairness: Jain's index, QueueManager",
          goal: "≥ 0.99",
          value: num(ours, 3),
          met: ours >= 0.99
        }
      ],
      notes: []
    }
  }
}
