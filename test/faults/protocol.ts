/**
 * What the fault workers and the test (or the runner) say to each other over IPC, and the
 * small counting tools both sides share: a clock comparable across processes, outcome counts
 * and a latency histogram of bounded size.
 */

/**
 * Milliseconds since the Unix epoch with sub-millisecond resolution, monotonic within a process
 * and comparable across the processes of one machine (each starts from its wall clock).
 */
export const now = (): number => performance.timeOrigin + performance.now()

/** The outcomes of a worker's requests. */
export interface Counts {
  /** Bodies that started (the slot was granted), whatever happened to them afterwards. */
  granted: number
  /** Calls that returned normally. */
  ok: number
  fullUser: number
  fullGlobal: number
  fullWaiting: number
  unavailable: number
  leaseLost: number
  shutdown: number
  /** Wait-mode calls the worker gave up on (`Effect.timeout`). */
  waitTimeout: number
  /** Calls whose only failure is an interruption (a layer closing stops its holders that way). */
  interrupted: number
  defect: number
  /** Open-loop requests not started because too many were in flight (the worker's own bound). */
  shed: number
}

/** Counts all at zero. */
export const zeroCounts = (): Counts => ({
  granted: 0,
  ok: 0,
  fullUser: 0,
  fullGlobal: 0,
  fullWaiting: 0,
  unavailable: 0,
  leaseLost: 0,
  shutdown: 0,
  waitTimeout: 0,
  interrupted: 0,
  defect: 0,
  shed: 0
})

/** Adds `more` into `into`. */
export const addCounts = (into: Counts, more: Counts): Counts => {
  for (const key of Object.keys(into) as Array<keyof Counts>) into[key] += more[key]
  return into
}

/** Bucket `i` holds latencies up to `BASE * GROWTH ** i` ms: 10 µs to beyond an hour, within 10 %. */
const BASE = 0.01
const GROWTH = 1.1

/** A latency histogram (milliseconds), sparse: bucket index to count. Cheap to send and to merge. */
export type Histogram = Record<number, number>

/** Records `millis` in `histogram`. */
export const record = (histogram: Histogram, millis: number): void => {
  const i = millis <= BASE ? 0 : Math.ceil(Math.log(millis / BASE) / Math.log(GROWTH))
  histogram[i] = (histogram[i] ?? 0) + 1
}

/** Adds `more` into `into`. */
export const merge = (into: Histogram, more: Histogram): Histogram => {
  for (const [i, n] of Object.entries(more)) into[Number(i)] = (into[Number(i)] ?? 0) + n
  return into
}

/** How many latencies `histogram` holds. */
export const size = (histogram: Histogram): number => Object.values(histogram).reduce((a, b) => a + b, 0)

/** The `q` quantile (0..1) of `histogram`, as the upper bound of its bucket; `undefined` when empty. */
export const quantile = (histogram: Histogram, q: number): number | undefined => {
  const total = size(histogram)
  if (total === 0) return undefined
  const rank = Math.ceil(q * total)
  let seen = 0
  for (const i of Object.keys(histogram)
    .map(Number)
    .sort((a, b) => a - b)) {
    seen += histogram[i]!
    if (seen >= rank) return BASE * GROWTH ** i
  }
  return undefined
}

/** One stream of requests a worker runs. */
export interface LoadSpec {
  /** The users its requests are for, picked at random. */
  readonly users: ReadonlyArray<string>
  /** A closed loop: this many fibers, each making one request after another. */
  readonly loops?: number | undefined
  /** An open loop: this many requests per second, whatever the answers (overrides `loops`). */
  readonly rate?: number | undefined
  /** `"mixed"`: each request picks reject or wait at random. */
  readonly onFull: "reject" | "wait" | "mixed"
  /** How long a body holds its slot, in ms: [min, max]. */
  readonly hold: readonly [number, number]
  /** The bound on a wait-mode call (`Effect.timeout`), body included, in ms. */
  readonly waitTimeout: number
  /** A closed loop's pause between requests, in ms: [min, max]. Default [1, 5]. */
  readonly think?: readonly [number, number] | undefined
}

/** What a worker is started with (its one command-line argument, as JSON). */
export interface WorkerArgs {
  /** A name for reports and errors. */
  readonly name: string
  readonly redis: string
  readonly prefix: string
  readonly witnessPort: number
  readonly maxUserQueue: number
  readonly maxTotal: number
  readonly leaseMs: number
  readonly timeoutMs: number
  readonly loads: ReadonlyArray<LoadSpec>
  /** How often a report is sent, in ms. */
  readonly reportMs: number
  /** The worker exits by itself after this long whatever happens, in ms. */
  readonly lifetimeMs: number
  /** Open-loop requests in flight at most, per load. Default 2,000. */
  readonly maxInFlight?: number | undefined
}

/** What the worker counted over one window of time (or over its whole life). */
export interface Window {
  readonly from: number
  readonly to: number
  readonly counts: Counts
  /** How long reject-mode calls took to be decided (granted, refused or failed), ms. */
  readonly reject: Histogram
  /** How long granted calls (both modes) took until their body started, ms. */
  readonly grant: Histogram
  /** The longest reject-mode call, ms, and when it began. */
  readonly rejectMax: number
  readonly rejectMaxAt: number
  /** The longest event-loop delay seen, ms (a stalled worker inflates every latency it measures). */
  readonly lagMax: number
  /** The longest a fiber woken by a 10 ms timer ran late. */
  readonly fiberLagMax: number
  /**
   * The longest reject-mode call less the time this process's fibers could not run meanwhile
   * (measured by a probe fiber), ms: what the bound applies to.
   */
  readonly ownMax: number
  /** The time taken out of that call, ms. */
  readonly ownStarved: number
  /** `StoreUnavailable` failures by reason (its first words). */
  readonly unavailable: Record<string, number>
}

/** A message from a worker. */
export type WorkerMessage =
  | { readonly type: "ready"; readonly pid: number; readonly at: number }
  | {
      readonly type: "report" | "final"
      readonly pid: number
      readonly at: number
      /** Since the previous report. */
      readonly window: Window
      /** Since the worker started. */
      readonly total: Window
      /** Wait-mode calls not yet granted, and bodies running, now. */
      readonly waiting: number
      readonly holding: number
      /** Warnings and errors the library logged, by message (up to its first colon). */
      readonly logs: Record<string, number>
      /** The first few unexpected failures, printed. */
      readonly defects: ReadonlyArray<string>
    }
  | {
      readonly type: "drained" | "shut" | "closed" | "unblocked"
      readonly pid: number
      readonly at: number
      readonly ms: number
    }

/** A command to a worker. */
export type WorkerCommand =
  /** Stop making requests (those in flight are interrupted), report, close the layer, exit 0. */
  | "stop"
  /** Close the layer while the load runs (its holders are stopped by the layer), then as `stop`. */
  | "close"
  /** `drain` the manager (the load goes on and is refused); answers `drained`. */
  | "drain"
  /** `shutdown` the manager; answers `shut`. */
  | "shutdown"
  /**
   * Block the event loop for this many ms (synchronous work, as a long computation or a long
   * garbage collection would), from a timer: when it ends, the I/O that arrived meanwhile is
   * read before any timer runs.
   */
  | { readonly block: number }
