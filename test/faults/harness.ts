/**
 * What the fault tests and the fault runner share: the settings and the time bounds derived
 * from them, the environment (a Redis of the test's own, optionally a proxy, the witness), the
 * worker processes, and the checks made once a fault is over: what the witness saw against the
 * limits, and what is left in Redis once the work ends.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect, FiberRef, HashSet, Logger } from "effect"
import type { Scope } from "effect"
import * as RedisStore from "../../src/RedisStore.js"
import { keysUnder, ownRedis, type RedisServer, type Wipe } from "./nemesis.js"
import { makeProxy, type Proxy } from "./proxy.js"
import {
  type Histogram,
  type LoadSpec,
  merge,
  now,
  quantile,
  type Window,
  type WorkerArgs,
  type WorkerCommand,
  type WorkerMessage
} from "./protocol.js"
import { type Holder, makeWitness, type Observation, type Witness } from "./witness.js"

/** The store's settings for one scenario; every worker and the witness use the same. */
export interface Settings {
  readonly prefix: string
  readonly maxUserQueue: number
  readonly maxTotal: number
  readonly leaseMs: number
  readonly timeoutMs: number
  readonly users: ReadonlyArray<string>
}

/**
 * Scheduling slack: how late, beyond what the settings allow, a process on a loaded machine may
 * notice something (timers and replies wait for a turn of its event loop). Every bound adds it once.
 */
export const SLACK_MS = 250

/** The longest pause between two reconnection attempts (the store's ioredis `retryStrategy`). */
export const RECONNECT_MS = 1000

/** The time bounds the store promises, derived from its settings. */
export const bounds = (s: Settings) => ({
  /** A reject-mode call is decided (or fails) within `timeout`. */
  call: s.timeoutMs + SLACK_MS,
  /**
   * A dead process's slot goes to a waiter of another process: its lease runs out (at most a
   * lease after its last renewal), then a renewal round of a process with waiters (every third
   * of a lease) or any call notices it, within `timeout`.
   */
  slotBack: s.leaseMs + s.leaseMs / 3 + s.timeoutMs + SLACK_MS,
  /**
   * Once Redis answers again the store serves again: the connection comes back (at most one
   * reconnection pause), and a slot that a call lost in the outage kept (a late acquisition, a
   * release that did not go through) is given back at the next renewal round; a call takes up
   * to `timeout`.
   */
  serveAgain: RECONNECT_MS + s.leaseMs / 3 + 2 * s.timeoutMs + SLACK_MS,
  /** Once the work ends, everything is given back or has expired. */
  settle: s.leaseMs + s.leaseMs / 3 + s.timeoutMs + SLACK_MS,
  /**
   * After a restart without persistence a holder of the lost state is stopped on the first
   * answer its process gets (one reconnection pause, one call), if its own deadline did not
   * stop it first.
   */
  wipeOverlap: RECONNECT_MS + 2 * s.timeoutMs + SLACK_MS
})

/** A scenario's world: its own Redis, a proxy in front of it if asked for, and the witness. */
export interface Env {
  readonly settings: Settings
  readonly redis: RedisServer
  readonly proxy: Proxy | undefined
  readonly witness: Witness
  readonly witnessPort: number
  /** Where workers connect: through the proxy when there is one. */
  readonly url: string
  /** Warnings the test process's own managers logged. */
  readonly logs: Array<string>
}

/** Starts a scenario's world, stopped when the scope closes. */
export const environment = (
  settings: Settings,
  options: { readonly proxy?: boolean } = {}
): Effect.Effect<Env, never, Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* ownRedis
    const proxy = options.proxy === true ? yield* makeProxy(redis.port) : undefined
    const { port: witnessPort, witness } = yield* makeWitness(settings)
    const url = proxy === undefined ? redis.url : `redis://127.0.0.1:${proxy.port}`
    return { settings, redis, proxy, witness, witnessPort, url, logs: [] }
  })

/** The usual load: `loops` closed loops over every user, half reject, half wait, holding 0-20 ms. */
export const standardLoad = (settings: Settings, loops = 6): LoadSpec => ({
  users: settings.users,
  loops,
  onFull: "mixed",
  hold: [0, 20],
  waitTimeout: settings.leaseMs,
  think: [1, 5]
})

type Report = Extract<WorkerMessage, { type: "report" | "final" }>

/** A worker process, as the test sees it. */
export interface Worker {
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess
  /** Its last report (or final report). */
  latest: Report | undefined
  final: Report | undefined
  /** When it exited (test clock), once it has. */
  exitedAt: number | undefined
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly listeners: Set<(message: WorkerMessage) => void>
  /** The tail of its stderr. */
  stderr: string
}

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

/**
 * Starts a worker running `loads` in `env` and waits until it is ready; it is killed (by its
 * pid, SIGKILL) when the scope closes if it has not exited by then.
 */
export const spawnWorker = (
  env: Env,
  name: string,
  loads: ReadonlyArray<LoadSpec>,
  overrides: Partial<WorkerArgs> = {}
): Effect.Effect<Worker, string, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const { settings } = env
      const args: WorkerArgs = {
        name,
        redis: env.url,
        prefix: settings.prefix,
        witnessPort: env.witnessPort,
        maxUserQueue: settings.maxUserQueue,
        maxTotal: settings.maxTotal,
        leaseMs: settings.leaseMs,
        timeoutMs: settings.timeoutMs,
        loads,
        reportMs: 200,
        lifetimeMs: 110_000,
        ...overrides
      }
      const child = spawn(process.execPath, ["--import", "tsx", workerPath, JSON.stringify(args)], {
        stdio: ["ignore", "ignore", "pipe", "ipc"]
      })
      const worker: Worker = {
        name,
        pid: child.pid!,
        child,
        latest: undefined,
        final: undefined,
        exitedAt: undefined,
        exited: new Promise((resolve) =>
          child.once("exit", (code, signal) => {
            worker.exitedAt = now()
            resolve({ code, signal })
          })
        ),
        listeners: new Set(),
        stderr: ""
      }
      child.stderr!.on("data", (data: Buffer) => (worker.stderr = (worker.stderr + data.toString()).slice(-8000)))
      child.on("message", (message: WorkerMessage) => {
        if (message.type === "report" || message.type === "final") worker.latest = message
        if (message.type === "final") worker.final = message
        for (const listener of worker.listeners) listener(message)
      })
      child.on("error", () => {})
      return worker
    }),
    (worker) =>
      Effect.promise(async () => {
        if (worker.exitedAt !== undefined) return
        try {
          process.kill(worker.pid, "SIGKILL")
        } catch {
          return
        }
        await worker.exited
      })
  ).pipe(
    Effect.tap((worker) =>
      Effect.mapError(
        nextMessage(worker, "ready", 30_000),
        (error) => `worker ${name} did not start: ${error}\n${worker.stderr}`
      )
    )
  )

/** The messages of `type` (a union member may stand for several types). */
export type MessageOf<T extends WorkerMessage["type"]> = WorkerMessage & { readonly type: T }

/** The next message of `type` from `worker`, or a failure after `timeoutMs` (or if it exits first). */
export const nextMessage = <T extends WorkerMessage["type"]>(
  worker: Worker,
  type: T,
  timeoutMs: number
): Effect.Effect<MessageOf<T>, string> =>
  Effect.async((resume) => {
    const done = (result: Effect.Effect<MessageOf<T>, string>) => {
      clearTimeout(timer)
      worker.listeners.delete(listener)
      resume(result)
    }
    const listener = (message: WorkerMessage) => {
      if (message.type === type) done(Effect.succeed(message as MessageOf<T>))
    }
    const timer = setTimeout(() => done(Effect.fail(`no ${type} from ${worker.name} in ${timeoutMs} ms`)), timeoutMs)
    worker.listeners.add(listener)
    void worker.exited.then(({ code, signal }) =>
      // a message sent just before exiting arrives before the exit
      setImmediate(() => done(Effect.fail(`${worker.name} exited (${code ?? signal}) before ${type}`)))
    )
    return Effect.sync(() => {
      clearTimeout(timer)
      worker.listeners.delete(listener)
    })
  })

/** Sends `command` to `worker`. */
export const command = (worker: Worker, command: WorkerCommand) =>
  Effect.sync(() => {
    if (worker.child.connected) worker.child.send(command)
  })

/** Stops `worker` (it finishes, reports, closes its layer and exits 0); its final report. */
export const stopWorker = (worker: Worker, timeoutMs = 20_000) =>
  Effect.gen(function* () {
    yield* command(worker, "stop")
    const final = yield* nextMessage(worker, "final", timeoutMs)
    const { code, signal } = yield* Effect.promise(() => worker.exited).pipe(
      Effect.timeoutFail({ duration: timeoutMs, onTimeout: () => `${worker.name} did not exit after stop` })
    )
    if (code !== 0) return yield* Effect.fail(`${worker.name} exited with ${code ?? signal}:\n${worker.stderr}`)
    return final
  })

/** Known reasons a limit may be passed: a paused holder process, and a restart of Redis without persistence. */
export interface Exemptions {
  /** SIGSTOP..SIGCONT of a worker (test clock). */
  readonly pauses: Array<{ readonly pid: number; readonly from: number; readonly to: number }>
  readonly wipes: Array<Wipe>
}

export const noExemptions = (): Exemptions => ({ pauses: [], wipes: [] })

/**
 * Why a holder of `o` may overlap: it was paused past its lease (it entered before its process
 * ran again, and the overlap began after the pause did), or it holds a slot of a state Redis lost.
 */
const exemptionOf = (holder: Holder, o: Observation, exemptions: Exemptions): "pause" | "restart" | undefined => {
  for (const p of exemptions.pauses)
    if (holder.pid === p.pid && holder.enteredAt < p.to && o.at >= p.from) return "pause"
  for (const w of exemptions.wipes) if (holder.token < w.tokenBelow && o.at >= w.at) return "restart"
  return undefined
}

/** The documented exception an observation falls under, if any (a pause first). */
export const classify = (o: Observation, exemptions: Exemptions): "valid" | "pause" | "restart" => {
  const reasons = o.holders.map((h) => exemptionOf(h, o, exemptions))
  return reasons.includes("pause") ? "pause" : reasons.includes("restart") ? "restart" : "valid"
}

/** The over-limit observations by kind, and how long exempt holders overlapped others. */
export interface OverLimit {
  valid: number
  pause: number
  restart: number
  /** The longest time from an exempt holder's first overlap to its exit, ms, per exemption. */
  pauseOverlapMs: number
  restartOverlapMs: number
  /** The first few observations among valid leases, described. */
  examples: Array<string>
}

export const noOverLimit = (): OverLimit => ({
  valid: 0,
  pause: 0,
  restart: 0,
  pauseOverlapMs: 0,
  restartOverlapMs: 0,
  examples: []
})

/** Describes an observation for a failure message. */
export const describeObservation = (o: Observation) =>
  `${o.limit === "user" ? `user ${o.user}` : "in all"}: ${o.count} > ${o.bound} for ${
    o.endedAt === undefined ? "(still open)" : `${(o.endedAt - o.at).toFixed(1)} ms`
  }, holders ${o.holders
    .map(
      (h) =>
        `pid ${h.pid} token ${h.token} entered ${(h.enteredAt - o.at).toFixed(1)} ms` +
        (h.exitedAt === undefined ? "" : ` left ${(h.exitedAt - o.at).toFixed(1)} ms${h.removed ? " (died)" : ""}`)
    )
    .join("; ")}`

/** Classifies `observations` into `into`. */
export const judge = (observations: ReadonlyArray<Observation>, exemptions: Exemptions, into = noOverLimit()) => {
  const firstOverlap = new Map<Holder, { kind: "pause" | "restart"; at: number }>()
  for (const o of observations) {
    const kind = classify(o, exemptions)
    into[kind]++
    if (kind === "valid") {
      if (into.examples.length < 5) into.examples.push(describeObservation(o))
      continue
    }
    for (const h of o.holders) {
      if (exemptionOf(h, o, exemptions) !== kind) continue
      const seen = firstOverlap.get(h)
      if (seen === undefined || o.at < seen.at) firstOverlap.set(h, { kind, at: o.at })
    }
  }
  for (const [h, { at, kind }] of firstOverlap) {
    const overlap = (h.exitedAt ?? now()) - at
    if (kind === "pause") into.pauseOverlapMs = Math.max(into.pauseOverlapMs, overlap)
    else into.restartOverlapMs = Math.max(into.restartOverlapMs, overlap)
  }
  return into
}

/** What is left under the prefix once the work has ended. */
export interface Leftovers {
  readonly clean: boolean
  readonly keys: ReadonlyArray<string>
  readonly inFlight: number
  readonly waiting: number
  /** How long it took to become clean (or until the check gave up), ms. */
  readonly waitedMs: number
}

/**
 * Waits (until `since` + the settle bound) for Redis to hold nothing under the prefix, as a
 * fresh manager in the test process sees it (`stats` inFlight and waiting 0; its calls also
 * purge expired leases), then lists the keys: only `{prefix}:h` may be left.
 */
export const leftovers = (env: Env, since = now()): Effect.Effect<Leftovers> =>
  Effect.gen(function* () {
    const { settings } = env
    const deadline = since + bounds(settings).settle
    const start = now()
    // whatever logger the caller runs with (a runtime's pretty one), this manager's go to env.logs
    const collect = Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning" || logLevel._tag === "Error") env.logs.push(String(message))
    })
    const fresh = yield* RedisStore.make({
      maxUserQueue: settings.maxUserQueue,
      maxTotal: settings.maxTotal,
      redis: env.redis.url,
      prefix: settings.prefix,
      leaseTime: settings.leaseMs,
      timeout: settings.timeoutMs
    }).pipe(Effect.locally(FiberRef.currentLoggers, HashSet.make(collect)), Effect.orDie)
    let stats = yield* Effect.orDie(fresh.stats)
    while ((stats.inFlight > 0 || stats.waiting > 0) && now() < deadline) {
      yield* Effect.sleep("100 millis")
      stats = yield* Effect.orDie(fresh.stats)
    }
    const keys = yield* keysUnder(env.redis.port, settings.prefix)
    return {
      clean: stats.inFlight === 0 && stats.waiting === 0 && keys.length === 1 && keys[0] === `{${settings.prefix}}:h`,
      keys,
      inFlight: stats.inFlight,
      waiting: stats.waiting,
      waitedMs: now() - start
    }
  }).pipe(Effect.scoped)

/**
 * The longest reject-mode call of `workers` (their last reports) with the time its process's
 * fibers could not run taken out (what the library answers for), which worker made it, and the
 * longest call as measured.
 */
export const longestRejectCall = (workers: ReadonlyArray<Worker>) => {
  let longest = { ms: 0, worker: "", starvedMs: 0, measuredMs: 0 }
  for (const w of workers) {
    const total = w.latest?.total
    if (total === undefined) continue
    longest.measuredMs = Math.max(longest.measuredMs, total.rejectMax)
    if (total.ownMax > longest.ms)
      longest = { ...longest, ms: total.ownMax, worker: w.name, starvedMs: total.ownStarved }
  }
  return longest
}

/**
 * Watches, from now on, for the first holder entering for which `match` holds: resolves with
 * when it entered (test clock), or `undefined` if none did within `timeoutMs`. Call it before
 * the fault, so that nothing entering right after it is missed.
 */
export const watchEnter = (witness: Witness, match: (holder: Holder) => boolean, timeoutMs: number) => {
  const entered = witness.nextEnter(match, timeoutMs)
  return Effect.promise(() => entered.then((holder) => holder?.enteredAt))
}

/** Sums the counts of `workers`' last reports. */
export const totals = (workers: ReadonlyArray<Worker>) => {
  const sum: Record<string, number> = {}
  for (const w of workers)
    for (const [key, n] of Object.entries(w.latest?.total.counts ?? {})) sum[key] = (sum[key] ?? 0) + n
  return sum
}

/** Waits until `worker`'s reports satisfy `done` (bounded by `timeoutMs`). */
export const untilReport = (worker: Worker, done: (report: Report) => boolean, timeoutMs: number) =>
  Effect.gen(function* () {
    const deadline = now() + timeoutMs
    while (worker.latest === undefined || !done(worker.latest)) {
      if (now() > deadline) return yield* Effect.fail(`${worker.name}: the condition never held in ${timeoutMs} ms`)
      yield* Effect.sleep("20 millis")
    }
    return worker.latest
  })

/** Every window `workers` report from now on (their latency histograms per 200 ms). */
export const collectWindows = (workers: ReadonlyArray<Worker>) => {
  const windows: Array<Window> = []
  for (const w of workers)
    w.listeners.add((message) => {
      if (message.type === "report" || message.type === "final") windows.push(message.window)
    })
  return windows
}

/** The `q` quantile of the reject-mode call times of the windows that began within [from, to). */
export const rejectQuantile = (windows: ReadonlyArray<Window>, from: number, to: number, q = 0.99) => {
  const all: Histogram = {}
  for (const w of windows) if (w.from >= from && w.from < to) merge(all, w.reject)
  return quantile(all, q)
}
