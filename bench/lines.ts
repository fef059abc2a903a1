import type { UserId } from "../src/QueueManager.js"
import * as Model from "../src/internal/model.js"
import { collect, median } from "./harness.js"
import { nanos, num, type Benchmark } from "./report.js"

const SMALL = 1_000
const LARGE = 100_000

type State = Model.State

const apply = (state: State, event: Model.Event): State => Model.step(state, event).state

const acquire = (userId: UserId, wait: boolean): Model.Event => ({
  _tag: "Acquire",
  userId,
  limit: 1,
  maxWaiting: 0,
  bypass: false,
  wait
})

/** One user at its limit of 1 with `n` requests waiting behind it, and the waiters. */
const oneLine = (n: number) => {
  let state = apply(Model.empty({ maxUserQueue: 1, maxTotal: 0 }), acquire("u", false))
  const waiters: Array<Model.Waiter> = []
  for (let i = 0; i < n; i++) {
    const transition = Model.step(state, acquire("u", true))
    state = transition.state
    waiters.push((transition.decision as { readonly waiter: Model.Waiter }).waiter)
  }
  return { state, waiters }
}

/** `n` users with one request each waiting for `maxTotal` (1, held by another user): the ring. */
const ring = (n: number) => {
  let state = apply(Model.empty({ maxUserQueue: 0, maxTotal: 1 }), acquire("holder", false))
  for (let i = 0; i < n; i++) state = apply(state, acquire(i, true))
  return state
}

/** Nanoseconds per operation of `ops` operations, after `setup` (not timed). */
const timePer = <S>(setup: () => S, ops: number, op: (s: S, i: number) => S): number => {
  let s = setup()
  collect("minor")
  const start = performance.now()
  for (let i = 0; i < ops; i++) s = op(s, i)
  return ((performance.now() - start) * 1e6) / ops
}

/**
 * The operations measured on a line or ring of `n`: each drains it (or, for a newcomer, doubles
 * it), so that the occasional reversal of a queue's back (amortized O(1)) is counted in full.
 */
const operations: ReadonlyArray<readonly [string, (n: number) => number]> = [
  [
    "enqueue: one more request joins a line",
    (n) =>
      timePer(
        () => oneLine(n).state,
        n,
        (s) => apply(s, acquire("u", true))
      )
  ],
  [
    "hand-off: a release admits the first waiter of the line",
    (n) =>
      timePer(
        () => oneLine(n).state,
        n,
        (s) => apply(s, { _tag: "Release", userId: "u" })
      )
  ],
  [
    "cancellation: waiters leave from the middle of the line",
    (n) =>
      timePer(
        () => oneLine(n),
        n / 2,
        (line, i) => ({
          ...line,
          state: apply(line.state, { _tag: "Leave", waiter: line.waiters[Math.floor(n / 4) + i]! })
        })
      )
  ],
  [
    "cancellation: the first waiter leaves",
    (n) =>
      timePer(
        () => oneLine(n),
        n,
        (line, i) => ({ ...line, state: apply(line.state, { _tag: "Leave", waiter: line.waiters[i]! }) })
      )
  ],
  [
    "round-robin: a release hands the global cap to the next user in the ring",
    (n) =>
      timePer(
        () => ring(n),
        n,
        (s, i) => apply(s, { _tag: "Release", userId: i === 0 ? "holder" : i - 1 })
      )
  ]
]

/**
 * Benchmark 11: the cost of one operation on a waiting line (or the ring of users waiting for
 * `maxTotal`) with 1,000 and with 100,000 requests waiting, on the scheduling model, of which
 * the in-memory store takes one step per operation.
 */
export const lines: Benchmark = {
  id: "lines",
  rows: operations.map(([name]) => name),
  run: async (quick) => {
    const rounds = quick ? 1 : 5
    const rows = operations.map(([name, measure]) => {
      const small: Array<number> = []
      const large: Array<number> = []
      for (let round = 0; round < rounds; round++) {
        small.push(measure(SMALL))
        large.push(measure(LARGE))
      }
      return { name, small: median(small), large: median(large) }
    })
    const worst = Math.max(...rows.map((row) => row.large / row.small))
    return {
      title: "11. Waiting lines: one operation with 1,000 and with 100,000 requests waiting",
      setup:
        `The scheduling model's step (what the in-memory store runs as one operation): one user at its limit ` +
        `of 1 with ${num(SMALL)} or ${num(LARGE)} requests waiting behind it, or as many users with one request each ` +
        `waiting for \`maxTotal\` (the ring). A sample drains the line or ring (newcomers: as many again join it), ` +
        `the median of ${rounds} samples per size (building the line is not timed).`,
      header: ["operation", `${num(SMALL)} waiting`, `${num(LARGE)} waiting`, "ratio"],
      rows: rows.map((row) => [row.name, nanos(row.small), nanos(row.large), `${num(row.large / row.small, 2)}×`]),
      targets: [
        {
          what: "waiting lines: one operation with 100,000 vs 1,000 waiting (the worst)",
          goal: "≤ 2.00×",
          value: `${num(worst, 2)}×`,
          met: worst <= 2
        }
      ],
      notes: [
        "Lines and the ring are persistent queues (two immutable lists): push and pop take amortized O(1). A request " +
          "that leaves from behind others is only marked gone and dropped when it reaches the front, so no operation " +
          "walks the line; the waiting requests' ids and the lines are persistent hash maps (a few steps at any size)."
      ]
    }
  }
}
