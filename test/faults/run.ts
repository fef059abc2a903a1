/**
 * `npm run test:faults -- --minutes 60`: a randomized schedule of faults (default one minute)
 * under continuous load from three workers, every holder reporting to the witness, then a table
 * of what happened and whether the Redis store kept its promises: no limit passed among valid
 * leases, nothing left in Redis once the work ends, no reject-mode call longer than `timeout`,
 * dead processes' slots back within a lease and a renewal round, service back soon after Redis
 * answers again, stale holders stopped and fenced. Exits 1 if a promise broke.
 *
 * Options: `--minutes N` (fractions allowed), `--seed N` (the schedule's random choices),
 * `--only TEXT` (only the faults whose name contains TEXT, e.g. `--only outage`).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Fiber } from "effect"
import type { Scope } from "effect"
import {
  bounds,
  command,
  environment,
  type Env,
  type Exemptions,
  judge,
  leftovers,
  nextMessage,
  noOverLimit,
  type Settings,
  SLACK_MS,
  spawnWorker,
  standardLoad,
  stopWorker,
  type Worker
} from "./harness.js"
import { clientKill, functionFlush, signal, wipeNow } from "./nemesis.js"
import { type Counts, type Histogram, type LoadSpec, merge, now, quantile, zeroCounts } from "./protocol.js"
import type { Observation } from "./witness.js"

const option = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  const value = i < 0 ? fallback : Number(process.argv[i + 1])
  if (!Number.isFinite(value) || value < 0) {
    console.error(`--${name} wants a number >= 0, got ${process.argv[i + 1]}`)
    process.exit(2)
  }
  return value
}
const minutes = option("minutes", 1)
let seed = option("seed", Math.floor(Math.random() * 2 ** 31))
/** The schedule's random numbers (mulberry32): a seed replays the same choices, if not the same timings. */
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const between = (min: number, max: number) => min + random() * (max - min)
const firstSeed = seed

const settings: Settings = {
  prefix: "faults-run",
  maxUserQueue: 1,
  maxTotal: 4,
  leaseMs: 1500,
  timeoutMs: 200,
  users: ["u1", "u2", "u3", "u4", "u5"]
}
const b = bounds(settings)

/**
 * Each worker: closed loops over every user, an open loop of 150 requests/s, and one loop whose
 * bodies hold their slot 0.2-0.8 s (so that a fault often finds a holder mid-body).
 */
const loads: ReadonlyArray<LoadSpec> = [
  standardLoad(settings, 5),
  { users: settings.users, rate: 150, onFull: "mixed", hold: [0, 20], waitTimeout: settings.leaseMs },
  { users: settings.users, loops: 1, onFull: "wait", hold: [200, 800], waitTimeout: 3 * settings.leaseMs }
]
/** The burst of the open-loop fault: 2,000 requests/s from one extra worker. */
const burst: LoadSpec = { users: settings.users, rate: 2000, onFull: "mixed", hold: [0, 20], waitTimeout: 1000 }

const kinds = [
  "kill -9 worker",
  "SIGSTOP worker",
  "event loop blocked",
  "Redis restart",
  "Redis SIGSTOP",
  "CLIENT KILL normal",
  "CLIENT KILL pubsub",
  "latency",
  "blackhole",
  "FUNCTION FLUSH",
  "drain + stop worker",
  "close layer under load",
  "2,000 req/s across outage"
] as const
type Kind = (typeof kinds)[number]
const onlyAt = process.argv.indexOf("--only")
const only = onlyAt < 0 ? "" : process.argv[onlyAt + 1]
const chosen = kinds.filter((kind) => only !== undefined && kind.includes(only))
if (chosen.length === 0) {
  console.error(`--only ${process.argv[onlyAt + 1]} names no fault; the faults: ${kinds.join("; ")}`)
  process.exit(2)
}

/** What the run saw. */
const seen = {
  faults: new Map<Kind, number>(),
  recoveries: [] as Array<number>,
  over: noOverLimit(),
  counts: zeroCounts(),
  during: { reject: {} as Histogram, grant: {} as Histogram },
  after: { reject: {} as Histogram, grant: {} as Histogram },
  longestCall: 0,
  /** The longest reject-mode call less the time its process's fibers could not run meanwhile. */
  longestOwn: 0,
  /** The longest a worker's probe fiber ran late. */
  longestStarved: 0,
  /** Every promise broken, described. */
  broken: [] as Array<string>
}
const broke = (what: string) => {
  seen.broken.push(what)
  console.log(`  BROKEN: ${what}`)
}

/** Faults in progress or done: [start, end] (end undefined while in progress). */
const faultTimes: Array<{ start: number; end: number | undefined }> = []
const duringFault = (from: number, to: number) =>
  faultTimes.some((f) => f.start < to && (f.end === undefined || f.end + 1000 > from))

const exemptions: Exemptions = { pauses: [], wipes: [] }
const pausedWithin = (pid: number, from: number, to: number) =>
  exemptions.pauses.some((p) => p.pid === pid && p.from < to && p.to > from)

let names = 0
const lifetimeMs = minutes * 60_000 + 120_000

/**
 * Starts a worker whose reports feed the run's tallies. Every other worker reaches Redis through
 * the proxy, the others directly: the proxy's faults cut some workers off while the rest go on.
 */
const start = (env: Env, extra: ReadonlyArray<LoadSpec> = loads) =>
  Effect.tap(
    spawnWorker(env, `W${++names}`, extra, { lifetimeMs, redis: names % 2 === 1 ? env.url : env.redis.url }),
    (worker) =>
      Effect.sync(() => {
        let defects = 0
        worker.listeners.add((message) => {
          if (message.type !== "report" && message.type !== "final") return
          const w = message.window
          for (const key of Object.keys(seen.counts) as Array<keyof Counts>) seen.counts[key] += w.counts[key]
          const phase = duringFault(w.from, w.to) ? seen.during : seen.after
          merge(phase.reject, w.reject)
          merge(phase.grant, w.grant)
          // a worker frozen by SIGSTOP measures its own pause: no call's fault
          if (w.rejectMax > 0 && !pausedWithin(worker.pid, w.rejectMaxAt, w.to)) {
            seen.longestCall = Math.max(seen.longestCall, w.rejectMax)
            seen.longestStarved = Math.max(seen.longestStarved, w.fiberLagMax)
          }
          // the bound is on the library's part of a call: not the time its process could not run
          // (a SIGSTOP pause included: the probe measures it)
          if (w.ownMax > 0) {
            seen.longestOwn = Math.max(seen.longestOwn, w.ownMax)
            if (w.ownMax > b.call)
              broke(
                `${worker.name}: a reject-mode call took ${(w.ownMax + w.ownStarved).toFixed(0)} ms, ` +
                  `${w.ownMax.toFixed(0)} ms > ${b.call} ms of it with its fibers able to run (event-loop lag ` +
                  `${w.lagMax.toFixed(0)} ms)`
              )
          }
          for (const defect of message.defects.slice(defects))
            broke(`${worker.name}: a request failed unexpectedly: ${defect.split("\n")[0]}`)
          defects = message.defects.length
        })
      })
  )

/** Classifies the observations whose holders have all left (so that overlaps are measured to the end). */
const classify = (env: Env, all = false) => {
  const ready: Array<Observation> = []
  const keep: Array<Observation> = []
  for (const o of env.witness.observations) {
    if (all || (o.endedAt !== undefined && o.holders.every((h) => h.exitedAt !== undefined))) ready.push(o)
    else keep.push(o)
  }
  env.witness.observations = keep
  const batch = judge(ready, exemptions)
  seen.over.valid += batch.valid
  seen.over.pause += batch.pause
  seen.over.restart += batch.restart
  seen.over.pauseOverlapMs = Math.max(seen.over.pauseOverlapMs, batch.pauseOverlapMs)
  seen.over.restartOverlapMs = Math.max(seen.over.restartOverlapMs, batch.restartOverlapMs)
  for (const example of batch.examples) broke(`a limit was passed among valid leases: ${example}`)
  if (batch.restartOverlapMs > b.wipeOverlap)
    broke(
      `a holder of a wiped state overlapped others for ${batch.restartOverlapMs.toFixed(0)} ms > ${b.wipeOverlap} ms`
    )
}

/** The first holder entering from now on (matching `match`), ms after `since()`, checked against `bound`. */
const recovery = (env: Env, what: string, bound: number, match: (pid: number, user: string) => boolean) => {
  const entered = env.witness.nextEnter((h) => match(h.pid, h.user), 2 * bound + 5000)
  return (since: number) =>
    Effect.promise(() => entered).pipe(
      Effect.map((holder) => {
        if (holder === undefined) {
          broke(`${what}: no grant within ${2 * bound + 5000} ms`)
          return undefined
        }
        const ms = Math.max(0, holder.enteredAt - since)
        seen.recoveries.push(ms)
        if (ms > bound) broke(`${what}: took ${ms.toFixed(0)} ms > ${bound} ms`)
        return ms
      })
    )
}

const main = Effect.gen(function* () {
  const env = yield* environment(settings, { proxy: true })
  const proxy = env.proxy!
  const pool: Array<Worker> = yield* Effect.all([start(env), start(env), start(env)], { concurrency: "unbounded" })
  const retired: Array<Worker> = []
  const replace = (worker: Worker) =>
    Effect.gen(function* () {
      pool.splice(pool.indexOf(worker), 1)
      retired.push(worker)
      pool.push(yield* start(env))
    })
  const anyGrant = () => true
  console.log(
    `fault run: ${minutes} min, seed ${firstSeed}, maxUserQueue ${settings.maxUserQueue} over ${settings.users.length} users, ` +
      `maxTotal ${settings.maxTotal}, lease ${settings.leaseMs} ms, timeout ${settings.timeoutMs} ms`
  )
  const began = now()
  const deadline = began + minutes * 60_000
  yield* Effect.forkScoped(
    Effect.forever(
      Effect.zipRight(
        Effect.sleep("1 second"),
        Effect.sync(() => classify(env))
      )
    )
  )

  const inject = (kind: Kind): Effect.Effect<string, string, Scope.Scope> =>
    Effect.gen(function* () {
      // the worker holding most now (a kill or a pause then strands slots), ties at random
      const holding = (w: Worker) => env.witness.heldBy(w.pid) + random() / 2
      const victim = pool.reduce((best, w) => (holding(w) > holding(best) ? w : best))
      switch (kind) {
        case "kill -9 worker": {
          // each user the victim held comes back to another worker within a lease and a renewal round
          const held = new Set(
            Array.from(env.witness.holders.values())
              .filter((h) => h.pid === victim.pid)
              .map((h) => h.user)
          )
          const back = Array.from(held, (user) =>
            recovery(
              env,
              `${victim.name}'s slot of ${user} after kill -9`,
              b.slotBack,
              (pid, u) => pid !== victim.pid && u === user
            )
          )
          const at = now()
          yield* signal(victim.pid, "SIGKILL")
          const times = yield* Effect.forEach(back, (f) => f(at), { concurrency: "unbounded" })
          yield* replace(victim)
          return `${victim.name} held ${[...held].join(", ") || "nothing"}; back after ${times.map((t) => t?.toFixed(0)).join(", ") || "-"} ms`
        }
        case "SIGSTOP worker": {
          const pause = { pid: victim.pid, from: now(), to: Infinity }
          exemptions.pauses.push(pause)
          const frozen = Array.from(env.witness.holders.values()).filter((h) => h.pid === victim.pid)
          yield* signal(victim.pid, "SIGSTOP")
          const ms = between(1.5, 2.5) * settings.leaseMs
          yield* Effect.sleep(ms)
          pause.to = now()
          yield* signal(victim.pid, "SIGCONT")
          // on waking, its deadlines have passed: every holder it had stops before anything else
          yield* Effect.sleep(SLACK_MS + 100)
          const late = frozen.filter((h) => h.exitedAt === undefined || h.exitedAt - pause.to > SLACK_MS)
          for (const h of late)
            broke(`${victim.name}'s holder of ${h.user} was not stopped within ${SLACK_MS} ms of waking`)
          return `${victim.name} paused ${ms.toFixed(0)} ms with ${frozen.length} holders`
        }
        case "event loop blocked": {
          // as a pause, but on running again the worker reads its sockets before its timers fire
          const pause = { pid: victim.pid, from: now(), to: Infinity }
          exemptions.pauses.push(pause)
          const ms = between(1.5, 2.5) * settings.leaseMs
          const unblocked = Effect.runFork(nextMessage(victim, "unblocked", ms + 10_000))
          yield* command(victim, { block: ms })
          pause.to = (yield* Fiber.join(unblocked)).at
          return `${victim.name} blocked ${ms.toFixed(0)} ms`
        }
        case "Redis restart": {
          const down = between(0.1, 2) * 1000
          exemptions.wipes.push(wipeNow())
          yield* env.redis.kill
          yield* Effect.sleep(down)
          const served = recovery(env, "service after a Redis restart", b.serveAgain, anyGrant)
          yield* env.redis.start
          const ms = yield* served(now())
          return `down ${down.toFixed(0)} ms; served again after ${ms?.toFixed(0)} ms`
        }
        case "Redis SIGSTOP": {
          const ms = between(0.5, 1.5) * settings.leaseMs
          yield* env.redis.pause
          yield* Effect.sleep(ms)
          const served = recovery(env, "service after Redis SIGCONT", b.serveAgain, anyGrant)
          yield* env.redis.resume
          return `paused ${ms.toFixed(0)} ms; served again after ${(yield* served(now()))?.toFixed(0)} ms`
        }
        case "CLIENT KILL normal":
        case "CLIENT KILL pubsub": {
          const type = kind === "CLIENT KILL normal" ? "normal" : "pubsub"
          const served = recovery(env, `service after ${kind}`, b.serveAgain, anyGrant)
          const killed = yield* clientKill(env.redis.port, type)
          return `${killed} connections; served again after ${(yield* served(now()))?.toFixed(0)} ms`
        }
        case "latency": {
          const ms = between(settings.timeoutMs / 8, settings.timeoutMs)
          const lasts = between(0.5, 1.5) * settings.leaseMs
          yield* proxy.latency(ms)
          yield* Effect.sleep(lasts)
          const served = recovery(env, "service after latency", b.serveAgain, anyGrant)
          yield* proxy.passThrough
          return `${ms.toFixed(0)} ms each way for ${lasts.toFixed(0)} ms; served again after ${(yield* served(now()))?.toFixed(0)} ms`
        }
        case "blackhole": {
          const lasts = between(0.5, 1.5) * settings.leaseMs
          yield* proxy.blackhole
          yield* Effect.sleep(lasts)
          const served = recovery(env, "service after a blackhole", b.serveAgain, anyGrant)
          yield* proxy.passThrough
          return `${lasts.toFixed(0)} ms; served again after ${(yield* served(now()))?.toFixed(0)} ms`
        }
        case "FUNCTION FLUSH": {
          const served = recovery(env, "service after FUNCTION FLUSH", b.serveAgain, anyGrant)
          yield* functionFlush(env.redis.port)
          return `served again after ${(yield* served(now()))?.toFixed(0)} ms`
        }
        case "drain + stop worker": {
          yield* command(victim, "drain")
          const drained = yield* nextMessage(victim, "drained", 10_000)
          const left = env.witness.heldBy(victim.pid)
          if (left > 0) broke(`${victim.name} still held ${left} slots once drained`)
          yield* stopWorker(victim)
          yield* replace(victim)
          return `${victim.name} drained in ${drained.ms.toFixed(0)} ms`
        }
        case "close layer under load": {
          yield* command(victim, "close")
          const closed = yield* nextMessage(victim, "closed", 10_000)
          const left = env.witness.heldBy(victim.pid)
          if (left > 0) broke(`${victim.name} still held ${left} slots once its layer closed`)
          if (closed.ms > 2 * b.call) broke(`${victim.name}'s layer took ${closed.ms.toFixed(0)} ms to close`)
          const { code } = yield* Effect.promise(() => victim.exited)
          if (code !== 0) broke(`${victim.name} exited with ${code} after its layer closed`)
          yield* replace(victim)
          return `${victim.name} closed in ${closed.ms.toFixed(0)} ms`
        }
        case "2,000 req/s across outage": {
          const extra = yield* start(env, [burst])
          yield* Effect.sleep("1 second")
          exemptions.wipes.push(wipeNow())
          yield* env.redis.kill
          yield* Effect.sleep("2 seconds")
          const served = recovery(env, "service after the outage", b.serveAgain, anyGrant)
          yield* env.redis.start
          const ms = yield* served(now())
          yield* Effect.sleep("1 second")
          yield* stopWorker(extra)
          retired.push(extra)
          return `served again after ${ms?.toFixed(0)} ms`
        }
      }
    })

  while (now() < deadline) {
    yield* Effect.sleep(between(1000, 3000))
    const kind = chosen[Math.floor(random() * chosen.length)]!
    seen.faults.set(kind, (seen.faults.get(kind) ?? 0) + 1)
    const fault = { start: now(), end: undefined as number | undefined }
    faultTimes.push(fault)
    const what = yield* Effect.catchAll(inject(kind), (error) => Effect.sync(() => (broke(`${kind}: ${error}`), "")))
    fault.end = now()
    console.log(`[${((fault.start - began) / 1000).toFixed(1)} s] ${kind}: ${what}`)
    // only the nemesis stops workers
    for (const w of pool.filter((w) => w.exitedAt !== undefined)) {
      broke(`${w.name} exited on its own:\n${w.stderr}`)
      yield* replace(w)
    }
  }

  // the end: every worker stops cleanly, then nothing may be left in Redis
  yield* Effect.sleep(SLACK_MS)
  const stops = yield* Effect.forEach(pool, (w) => Effect.either(stopWorker(w)), { concurrency: "unbounded" })
  for (const stop of stops) if (stop._tag === "Left") broke(stop.left)
  const lastKill = Math.max(0, ...faultTimes.map((f) => f.end ?? 0))
  const left = yield* leftovers(env, lastKill)
  yield* Effect.sleep(100)
  classify(env, true)
  const writes = env.witness.writes
  const tokens = env.witness.tokens
  if (!left.clean)
    broke(`left in Redis: keys ${left.keys.join(" ")}, ${left.inFlight} in flight, ${left.waiting} waiting`)
  if (writes.staleAccepted > 0) broke(`${writes.staleAccepted} stale writes accepted by the fenced resource`)
  if (writes.falselyRefused > 0)
    broke(`${writes.falselyRefused} writes of valid holders refused by the fenced resource`)
  for (const example of tokens.examples) broke(`fencing token: ${example}`)
  if (env.witness.overflow > 0) broke(`${env.witness.overflow} observations not kept`)

  const rows: Array<[string, string]> = [
    ["faults injected", String(faultTimes.length)],
    ...kinds.map((k): [string, string] => [`  ${k}`, String(seen.faults.get(k) ?? 0)]),
    ["grants (witness)", String(env.witness.enters)],
    [
      "requests",
      `${seen.counts.ok} ok, ${seen.counts.fullUser + seen.counts.fullGlobal + seen.counts.fullWaiting} refused, ` +
        `${seen.counts.unavailable} StoreUnavailable, ${seen.counts.leaseLost} LeaseLost, ${seen.counts.shutdown} QueueShutdown, ` +
        `${seen.counts.waitTimeout} wait timeouts, ${seen.counts.defect} unexpected`
    ],
    [
      "highest concurrency per user",
      `${Math.max(0, ...env.witness.maxSeen.values())} (limit ${settings.maxUserQueue}; beyond it only under the exemptions below)`
    ],
    ["highest concurrency in all", `${env.witness.maxTotalSeen} (maxTotal ${settings.maxTotal})`],
    ["over-limit: valid leases", String(seen.over.valid)],
    ["over-limit: documented pause", `${seen.over.pause} (longest overlap ${seen.over.pauseOverlapMs.toFixed(0)} ms)`],
    [
      "over-limit: documented restart",
      `${seen.over.restart} (longest overlap ${seen.over.restartOverlapMs.toFixed(0)} ms, bound ${b.wipeOverlap} ms)`
    ],
    ["fenced writes", `${writes.accepted} accepted, ${writes.refused} refused (${writes.staleRefused} stale)`],
    ["stale writes accepted", String(writes.staleAccepted)],
    ["token anomalies", String(tokens.invalid + tokens.regressions)],
    ["leaks", left.clean ? "none" : `${left.keys.join(" ")}; ${left.inFlight} in flight, ${left.waiting} waiting`],
    [
      "longest reject-mode call",
      `${seen.longestCall.toFixed(0)} ms; the longest with its process's starved time taken out ` +
        `${seen.longestOwn.toFixed(0)} ms (bound ${b.call} ms; paused workers' own calls excluded)`
    ],
    [
      "longest starvation of a worker",
      `${seen.longestStarved.toFixed(0)} ms (a probe fiber woken late: the process stopped, or short of CPU)`
    ],
    ["reject-mode call p99 during faults", ms(quantile(seen.during.reject, 0.99))],
    ["reject-mode call p99 after faults", ms(quantile(seen.after.reject, 0.99))],
    ["grant latency p99 during faults", ms(quantile(seen.during.grant, 0.99))],
    ["grant latency p99 after faults", ms(quantile(seen.after.grant, 0.99))],
    [
      "recovery max / p99",
      `${ms(Math.max(0, ...seen.recoveries))} / ${ms(percentile(seen.recoveries, 0.99))} over ${seen.recoveries.length} ` +
        `(bounds: slot back ${b.slotBack} ms, service back ${b.serveAgain} ms)`
    ],
    ["promises broken", String(seen.broken.length)]
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  console.log("")
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`)
  if (seen.broken.length > 0) {
    console.log("\nbroken:")
    for (const what of seen.broken.slice(0, 50)) console.log(`  - ${what}`)
  }
  process.exitCode = seen.broken.length > 0 ? 1 : 0
})

const ms = (value: number | undefined) => (value === undefined ? "-" : `${value.toFixed(1)} ms`)
const percentile = (values: ReadonlyArray<number>, q: number) => {
  const sorted = [...values].sort((x, y) => x - y)
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]
}

NodeRuntime.runMain(Effect.scoped(main))
