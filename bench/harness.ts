import { Effect, Logger, LogLevel } from "effect"
import { measure } from "mitata"
import { QueueManager } from "../src/index.js"

/**
 * Runs a garbage collection: `"major"` (full, for the memory figures) or `"minor"` (the young
 * generation only, before each timing sample: a full one slows the next samples down, about
 * twice on the machine of RESULTS.md). The launcher (`bench/run.ts`) starts the benchmarks
 * with `--expose-gc`; without it the figures would mean nothing, so this fails loudly.
 */
export const collect = (type: "major" | "minor" = "major"): void => {
  if (globalThis.gc === undefined) throw new Error("run the benchmarks through `npm run bench` (needs --expose-gc)")
  if (type === "minor") globalThis.gc(true)
  else globalThis.gc()
}

/** The per-user limit of the timing and memory benchmarks, as in issue 3. */
export const LIMIT = 3

/** How many users the hit-path benchmarks take in turn, as in issue 3. */
export const USERS = 1_000

/** The `q` quantile (0..1) of `values`, interpolating between the two nearest ranks. */
export const quantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (sorted.length - 1) * q
  const low = Math.floor(at)
  const high = Math.ceil(at)
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (at - low)
}

/** The median of `values`. */
export const median = (values: ReadonlyArray<number>): number => quantile(values, 0.5)

/** Jain's fairness index of `shares`: 1 when all are equal, 1/n when one takes everything. */
export const jainIndex = (shares: ReadonlyArray<number>): number => {
  const sum = shares.reduce((a, b) => a + b, 0)
  const squares = shares.reduce((a, b) => a + b * b, 0)
  return squares === 0 ? 1 : (sum * sum) / (shares.length * squares)
}

/** Builds a manager on the default runtime, without its "QueueManager ready" log line. */
export const makeManager = (options: QueueManager.Options): QueueManager.Service =>
  Effect.runSync(QueueManager.make(options).pipe(Logger.withMinimumLogLevel(LogLevel.None)))

/**
 * One Effect program running `op(0)`, ..., `op(ops - 1)` in sequence: the loop every Effect
 * contender of a timing benchmark shares, so that `runPromise` is paid once per sample.
 */
export const repeatOps = <E>(ops: number, op: (i: number) => Effect.Effect<unknown, E>): Effect.Effect<void, E> =>
  Effect.suspend(() => {
    let i = 0
    return Effect.whileLoop({ while: () => i < ops, body: () => op(i++), step: () => {} })
  })

/** Something whose cost per operation is measured: `run(ops)` performs `ops` operations. */
export interface Contender {
  readonly name: string
  readonly run: (ops: number) => Promise<void>
}

/** A contender whose operation `op(i)` runs inside {@link repeatOps}. */
export const effectContender = <E>(name: string, op: (i: number) => Effect.Effect<unknown, E>): Contender => ({
  name,
  run: (ops) => Effect.runPromise(repeatOps(ops, op))
})

/** How much a timing benchmark measures. */
export interface Sampling {
  /** Operations per sample (one `run` call). */
  readonly ops: number
  /** Samples per contender and round; the round keeps their median. */
  readonly samples: number
  /** Rounds kept; every contender runs once per round, in a rotating order. */
  readonly rounds: number
  /** Rounds run first and thrown away (JIT warm-up). */
  readonly warmupRounds: number
}

/**
 * Full and quick sizes of the timing benchmarks (hit path, scoped slot, scale); `ops` per
 * sample in a full run (a few milliseconds' worth at least; fewer for slow operations).
 */
export const timingSampling = (quick: boolean, ops = 20_000): Sampling =>
  quick ? { ops: 300, samples: 1, rounds: 3, warmupRounds: 1 } : { ops, samples: 3, rounds: 15, warmupRounds: 3 }

/**
 * Measures every contender in `rounds` rounds, interleaved: in each round every contender
 * runs (in an order rotated by one each round) `samples` samples of `ops` operations, timed
 * by mitata with a minor collection before each sample, and the round keeps the median.
 * Returns, per contender name, the nanoseconds per operation of each kept round, in round
 * order, so that two contenders can be compared round by round.
 */
export const sampleInterleaved = async (
  contenders: ReadonlyArray<Contender>,
  sampling: Sampling
): Promise<ReadonlyMap<string, ReadonlyArray<number>>> => {
  const perRound = new Map(contenders.map((c) => [c.name, [] as Array<number>]))
  for (let round = 0; round < sampling.warmupRounds + sampling.rounds; round++) {
    for (let k = 0; k < contenders.length; k++) {
      const contender = contenders[(round + k) % contenders.length]!
      const stats = await measure(() => contender.run(sampling.ops), {
        min_samples: sampling.samples,
        max_samples: sampling.samples,
        min_cpu_time: 0,
        warmup_samples: 0,
        batch_threshold: 0,
        gc: () => collect("minor"),
        inner_gc: true
      })
      if (round >= sampling.warmupRounds) perRound.get(contender.name)!.push(stats.p50 / sampling.ops)
    }
  }
  return perRound
}

/** The per-round ratios `a / b` of two contenders' samples: their median and quartiles. */
export interface Ratio {
  readonly median: number
  readonly p25: number
  readonly p75: number
}

/** Compares two contenders round by round: a round measures both close together, under the same machine state. */
export const pairedRatio = (samples: ReadonlyMap<string, ReadonlyArray<number>>, a: string, b: string): Ratio => {
  const as = samples.get(a)!
  const bs = samples.get(b)!
  const ratios = as.map((x, i) => x / bs[i]!)
  return { median: median(ratios), p25: quantile(ratios, 0.25), p75: quantile(ratios, 0.75) }
}
