import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import os from "node:os"
import { median, pairedRatio, type Ratio, type Sampling } from "./harness.js"

/** A goal from issue 3 and whether this run met it. */
export interface Target {
  readonly what: string
  readonly goal: string
  readonly value: string
  readonly met: boolean
}

/** What one benchmark reports: a table whose first column names the row, its targets, notes. */
export interface Section {
  readonly title: string
  /** What was measured and how (markdown). */
  readonly setup: string
  readonly header: ReadonlyArray<string>
  readonly rows: ReadonlyArray<ReadonlyArray<string>>
  readonly targets: ReadonlyArray<Target>
  readonly notes: ReadonlyArray<string>
}

/** One benchmark: `rows` are the names of the rows its table always has. */
export interface Benchmark {
  readonly id: string
  /** Runs against the Redis at `REDIS_URL`: skipped when none answers, except under `CI=true`. */
  readonly needsRedis?: true
  readonly rows: ReadonlyArray<string>
  readonly run: (quick: boolean) => Promise<Section>
}

/** `value` with thousands separators and at most `digits` decimals. */
export const num = (value: number, digits = 0): string =>
  value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })

/** A ratio with the quartiles of its per-round values: `0.91× (0.89–0.93)`. */
export const ratio = (r: Ratio): string => `${num(r.median, 2)}× (${num(r.p25, 2)}–${num(r.p75, 2)})`

/** The target "`a` at most `max` times `b`", judged on the median of their per-round ratios. */
export const ratioTarget = (
  what: string,
  samples: ReadonlyMap<string, ReadonlyArray<number>>,
  a: string,
  b: string,
  max: number
): Target => {
  const r = pairedRatio(samples, a, b)
  return { what, goal: `≤ ${num(max, 2)}×`, value: ratio(r), met: r.median <= max }
}

/** Nanoseconds per operation: `2,904 ns`. */
export const nanos = (value: number): string => `${num(value)} ns`

/**
 * A row of a timing table: the contender, its median ns/op over the rounds and its ratio
 * to `reference` (median of the per-round ratios, with their quartiles).
 */
export const timingRow = (
  samples: ReadonlyMap<string, ReadonlyArray<number>>,
  name: string,
  reference: string
): ReadonlyArray<string> => [name, nanos(median(samples.get(name)!)), ratio(pairedRatio(samples, name, reference))]

/** How a timing benchmark sampled, for its setup paragraph; ratios are to `reference`. */
export const describeSampling = (
  sampling: Sampling,
  reference: string,
  loop = "in one Effect program (`Effect.whileLoop`, one `runPromise`), the same loop for every Effect contender"
): string =>
  `Each sample runs ${num(sampling.ops)} operations ${loop}. ${sampling.rounds} rounds after ${sampling.warmupRounds} of warm-up, the ` +
  `contenders interleaved in an order rotated each round, ${sampling.samples} sample(s) per contender and round, each ` +
  `after a minor GC; the table gives the median over the rounds, and the ratio is the median of the per-round ratios ` +
  `to ${reference}, with their quartiles in brackets.`

const cells = (row: ReadonlyArray<string>) => `| ${row.join(" | ")} |`

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [cells(header), cells(header.map(() => "---")), ...rows.map(cells)].join("\n")

const targetRows = (targets: ReadonlyArray<Target>) =>
  targets.map((t) => [t.what, t.goal, t.value, t.met ? "met" : "**missed**"])

const targetHeader = ["target", "goal", "this run", "status"]

/** A section as markdown: title, setup, table, targets, notes. */
export const renderSection = (section: Section): string =>
  [
    `## ${section.title}`,
    section.setup,
    table(section.header, section.rows),
    ...(section.targets.length > 0 ? [table(targetHeader, targetRows(section.targets))] : []),
    ...section.notes
  ].join("\n\n")

/** Every target of every section, in one table. */
export const renderTargets = (sections: ReadonlyArray<Section>): string =>
  table(targetHeader, targetRows(sections.flatMap((s) => s.targets)))

const cpuModel = (): string => {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8")
      .split("\n")
      .find((l) => l.startsWith("model name"))
    if (line !== undefined) return line.slice(line.indexOf(":") + 1).trim()
  } catch {
    // not Linux: fall back to what Node reports
  }
  return os.cpus()[0]?.model ?? "unknown"
}

const effectVersion = (): string => {
  const pkg = JSON.parse(readFileSync(new URL(import.meta.resolve("effect/package.json")), "utf8")) as {
    version: string
  }
  return pkg.version
}

const gitCommit = (): string => {
  try {
    const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "bench", ":!bench/RESULTS.md"], {
      encoding: "utf8"
    }).trim()
    return dirty === "" ? commit : `${commit} with uncommitted changes`
  } catch {
    return "unknown"
  }
}

/** What a run saw of its machine before it started. */
export interface RunStart {
  readonly at: Date
  /** `os.loadavg()` at the start. */
  readonly load: ReadonlyArray<number>
}

/** The start of a run, now. */
export const runStart = (): RunStart => ({ at: new Date(), load: os.loadavg() })

const load = (averages: ReadonlyArray<number>) => averages.map((a) => num(a, 2)).join(", ")

/** The machine and software of a run that started at `start`, as rows of a table. */
export const machine = (start: RunStart): ReadonlyArray<readonly [string, string]> => [
  ["date", `${start.at.toISOString()} (the run took ${num((Date.now() - start.at.getTime()) / 60_000, 1)} min)`],
  ["node", `${process.version} (\`${process.execArgv.join(" ")}\`)`],
  ["effect", effectVersion()],
  ["library", `commit ${gitCommit()}, compiled with tsc`],
  ["CPU", cpuModel()],
  ["cores", String(os.cpus().length)],
  ["memory", `${num(os.totalmem() / 2 ** 30, 1)} GiB`],
  ["OS", `${os.type()} ${os.release()} ${os.arch()}`],
  ["load average (1, 5, 15 min)", `${load(start.load)} at the start, ${load(os.loadavg())} at the end`]
]

/** `bench/RESULTS.md`: the machine, every target, then every section. */
export const renderResults = (sections: ReadonlyArray<Section>, start: RunStart): string =>
  [
    "# Benchmark results",
    "Written by `npm run bench` (a full run; `npm run bench -- --quick` prints the same tables with small sizes and " +
      "writes nothing). Every figure is measured against its peers in the same run; the code is in `bench/`.",
    "How: `bench/run.ts` compiles the library and the benchmarks with tsc (the code that ships, like effect's own " +
      "precompiled `dist/`; tsx's transform wraps every closure in a `__name(...)` call, which slows the library's " +
      "per-call closures and none of effect's code) and runs them in `node --expose-gc`. Timing benchmarks interleave " +
      "their contenders round by round and compare them round by round, so that a slower or busier moment of the " +
      "machine weighs on every contender alike; the load average below says how busy the machine was.",
    table(["machine", ""], machine(start)),
    "## Targets (issue 3, item 10; issue 4, item 8)",
    renderTargets(sections),
    ...sections.map(renderSection)
  ].join("\n\n") + "\n"
