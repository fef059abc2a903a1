/**
 * A fault-test worker: a separate Node process that builds the Redis store from its arguments
 * (one JSON argument, `WorkerArgs`), connects to the witness and runs a bounded load. Each
 * request is `withSlot(user)(slot => enter; hold; fenced write; exit)`, the enter and exit
 * reported to the witness (and acknowledged) from inside the body, the exit in a finalizer so
 * that an interrupted body reports too. It reports its counts over IPC every `reportMs` and at
 * the end, and obeys the commands of `WorkerCommand`. It exits by itself when its parent or the
 * witness goes away, and after `lifetimeMs` in any case.
 *
 * Run as `node --import tsx test/faults/worker.ts '<json args>'` with an IPC channel.
 */
import { monitorEventLoopDelay } from "node:perf_hooks"
import { Cause, Effect, Exit, Fiber, FiberSet, Logger, Option, Queue, Schedule, Scope } from "effect"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"
import {
  type Counts,
  type Histogram,
  type LoadSpec,
  now,
  record,
  type Window,
  type WorkerArgs,
  type WorkerCommand,
  type WorkerMessage,
  zeroCounts
} from "./protocol.js"
import { connectWitness, type WitnessClient } from "./witness.js"

const args = JSON.parse(process.argv[2]!) as WorkerArgs

const send = (message: WorkerMessage) =>
  new Promise<void>((resolve) => {
    if (!process.connected) return resolve()
    process.send!(message, undefined, {}, () => resolve())
  })

// never outlive the test: not its parent, not the witness, not the time it was given
if (process.send === undefined) process.exit(2)
process.on("disconnect", () => process.exit(2))
setTimeout(() => process.exit(3), args.lifetimeMs).unref()

const between = ([min, max]: readonly [number, number]) => min + Math.random() * (max - min)
const pick = <A>(all: ReadonlyArray<A>) => all[Math.floor(Math.random() * all.length)]!

/** What this worker counted: over the current window, and since it started. */
class Tally {
  counts = zeroCounts()
  reject: Histogram = {}
  grant: Histogram = {}
  rejectMax = 0
  rejectMaxAt = 0
  lagMax = 0
  fiberLagMax = 0
  ownMax = 0
  ownStarved = 0
  unavailable: Record<string, number> = {}
  constructor(readonly from: number) {}
  window(to: number): Window {
    const { counts, reject, grant, rejectMax, rejectMaxAt, lagMax, fiberLagMax, ownMax, ownStarved } = this
    const { unavailable, from } = this
    return {
      from,
      to,
      counts,
      reject,
      grant,
      rejectMax,
      rejectMaxAt,
      lagMax,
      fiberLagMax,
      ownMax,
      ownStarved,
      unavailable
    }
  }
}
let window = new Tally(now())
const total = new Tally(now())
const count = (key: keyof Counts) => {
  window.counts[key]++
  total.counts[key]++
}
let waiting = 0
let holding = 0
const logs: Record<string, number> = {}
const defects: Array<string> = []

const lag = monitorEventLoopDelay({ resolution: 10 })
lag.enable()

/**
 * The fiber probe's samples over the last 10 s, oldest first: when it woke, and how late (ms).
 * Its lateness is time this process's fibers could not run: CPU taken by the others, or
 * thousands of fibers queued in Effect's scheduler ahead of it.
 */
const probes: Array<readonly [at: number, late: number]> = []
const PROBE_MS = 10
const PROBE_NOISE_MS = 5

/**
 * How much of a reject-mode call over [start, end] the process's starvation explains: a stall
 * that began as the call did (within a probe's period) delayed all of it, so all of its overlap
 * counts; a later one counts only past `start + timeout`, as before that the call waits on Redis
 * and its deadline, whose timer a stall does not hold back.
 */
const starvedDuring = (start: number, end: number) => {
  let lo = 0
  let hi = probes.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (probes[mid]![0] <= start) lo = mid + 1
    else hi = mid
  }
  let starved = 0
  for (let i = lo; i < probes.length; i++) {
    const [at, late] = probes[i]!
    if (at - late - PROBE_MS >= end) break
    // a timer's usual few ms of lateness is not starvation: only what goes beyond counts
    const beyond = late - PROBE_NOISE_MS
    if (beyond <= 0) continue
    const from = at - beyond <= start + PROBE_MS ? start : start + args.timeoutMs
    starved += Math.max(0, Math.min(at, end) - Math.max(at - beyond, from))
  }
  return starved
}

/** Reject-mode calls longer than the timeout, judged once the probe has woken after their end. */
let longCalls: Array<{ readonly start: number; readonly end: number }> = []
/** The start of each reject-mode call not decided yet: one that hangs is judged while it hangs. */
const deciding = new Set<{ readonly start: number }>()

/** Judges `start`..`end` less what the process was starved of meanwhile: the part the library answers for. */
const judge = (start: number, end: number) => {
  const starved = starvedDuring(start, end)
  const own = end - start - starved
  for (const tally of [window, total]) {
    if (own > tally.ownMax) {
      tally.ownMax = own
      tally.ownStarved = starved
    }
  }
}

/** Judges the long calls the probe has covered up to `covered`, and the calls undecided so far. */
const judgeLongCalls = (covered: number) => {
  const later: typeof longCalls = []
  for (const call of longCalls) {
    if (call.end > covered) later.push(call)
    else judge(call.start, call.end)
  }
  longCalls = later
  for (const call of deciding) if (covered - call.start > args.timeoutMs) judge(call.start, covered)
}

/** The library's warnings and errors, counted (passing tests stay quiet). */
const logger = Logger.make(({ logLevel, message }) => {
  if (logLevel._tag !== "Warning" && logLevel._tag !== "Error" && logLevel._tag !== "Fatal") return
  const text = String(Array.isArray(message) ? message[0] : message)
  const key = text.split(":")[0]!.slice(0, 80)
  logs[key] = (logs[key] ?? 0) + 1
})

const report = (type: "report" | "final") => {
  const at = now()
  judgeLongCalls(type === "final" ? at : (probes.at(-1)?.[0] ?? 0))
  const lagMs = lag.max / 1e6
  lag.reset()
  window.lagMax = lagMs
  total.lagMax = Math.max(total.lagMax, lagMs)
  const message: WorkerMessage = {
    type,
    pid: process.pid,
    at,
    window: window.window(at),
    total: total.window(at),
    waiting,
    holding,
    logs,
    defects
  }
  window = new Tally(at)
  return send(message)
}

let holderIds = 0

/** One request: a slot of `user`, its body reporting to the witness. */
const request = (queue: QueueManager.Service, witness: WitnessClient, spec: LoadSpec, user: string) =>
  Effect.suspend(() => {
    const mode = spec.onFull === "mixed" ? (Math.random() < 0.5 ? "reject" : "wait") : spec.onFull
    const id = `${process.pid}:${(holderIds++).toString(36)}`
    const start = now()
    const undecided = { start }
    if (mode === "reject") deciding.add(undecided)
    let bodyAt: number | undefined
    const body = (slot: QueueManager.Slot) =>
      Effect.acquireUseRelease(
        // the first thing the body does; uninterruptible, so an exit always follows an enter
        Effect.promise(() => {
          bodyAt = now()
          deciding.delete(undecided)
          holding++
          if (mode === "wait") waiting--
          return witness.enter(id, user, slot.token)
        }),
        () =>
          Effect.zipRight(
            Effect.sleep(between(spec.hold)),
            Effect.promise(() => witness.write(id, user, slot.token))
          ),
        // the last thing: before withSlot gives the slot back
        () =>
          Effect.promise(() => {
            holding--
            return witness.exit(id)
          })
      )
    if (mode === "wait") waiting++
    const call = queue.withSlot(user, { onFull: mode })(body)
    return (mode === "wait" ? Effect.timeout(call, spec.waitTimeout) : call).pipe(
      Effect.exit,
      Effect.ensuring(Effect.sync(() => deciding.delete(undecided))),
      Effect.map((exit) => {
        const end = now()
        if (mode === "wait" && bodyAt === undefined) waiting--
        if (bodyAt !== undefined) {
          count("granted")
          record(window.grant, bodyAt - start)
          record(total.grant, bodyAt - start)
        }
        if (mode === "reject") {
          const took = (bodyAt ?? end) - start
          record(window.reject, took)
          record(total.reject, took)
          for (const tally of [window, total]) {
            if (took > tally.rejectMax) {
              tally.rejectMax = took
              tally.rejectMaxAt = start
            }
            if (took <= args.timeoutMs && took > tally.ownMax) {
              tally.ownMax = took
              tally.ownStarved = 0
            }
          }
          if (took > args.timeoutMs) longCalls.push({ start, end: start + took })
        }
        return classify(exit)
      })
    )
  })

/** Counts how a request ended, and says whether the store failed it (a loop then backs off). */
const classify = (exit: Exit.Exit<unknown, unknown>): "failed" | "done" => {
  if (Exit.isSuccess(exit)) {
    count("ok")
    return "done"
  }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value as { _tag?: string; reason?: string }
    switch (error._tag) {
      case "QueueFull":
        count(error.reason === "user" ? "fullUser" : error.reason === "global" ? "fullGlobal" : "fullWaiting")
        return "done"
      case "StoreUnavailable": {
        count("unavailable")
        const reason = String((error as { reason?: unknown }).reason).slice(0, 60)
        for (const tally of [window, total]) tally.unavailable[reason] = (tally.unavailable[reason] ?? 0) + 1
        return "failed"
      }
      case "LeaseLost":
        count("leaseLost")
        return "done"
      case "QueueShutdown":
        count("shutdown")
        return "failed"
      case "TimeoutException":
        count("waitTimeout")
        return "done"
    }
  }
  if (Cause.isInterruptedOnly(exit.cause)) {
    count("interrupted")
    return "failed"
  }
  count("defect")
  if (defects.length < 5) defects.push(Cause.pretty(exit.cause).slice(0, 2000))
  return "failed"
}

/** A closed loop: one request after another, a short pause between them (longer after a failure: no spinning). */
const closedLoop = (queue: QueueManager.Service, witness: WitnessClient, spec: LoadSpec) =>
  Effect.forever(
    Effect.flatMap(request(queue, witness, spec, pick(spec.users)), (outcome) =>
      Effect.sleep(outcome === "failed" ? between([10, 30]) : between(spec.think ?? [1, 5]))
    )
  )

/** An open loop: `rate` requests a second, each in a fiber of its own, whatever the answers (at most `maxInFlight` at once). */
const openLoop = (queue: QueueManager.Service, witness: WitnessClient, spec: LoadSpec, rate: number) =>
  Effect.gen(function* () {
    const fibers = yield* FiberSet.make()
    const start = now()
    let issued = 0
    const bound = args.maxInFlight ?? 2000
    while (true) {
      yield* Effect.sleep(5)
      const due = Math.floor(((now() - start) * rate) / 1000) - issued
      for (let i = 0; i < due; i++) {
        issued++
        if ((yield* FiberSet.size(fibers)) >= bound) count("shed")
        else yield* FiberSet.run(fibers, request(queue, witness, spec, pick(spec.users)))
      }
    }
  }).pipe(Effect.scoped)

const program = Effect.gen(function* () {
  const witness = yield* Effect.promise(() => connectWitness(args.witnessPort, () => process.exit(4)))
  // the store on a scope of this program's own, so that a command can close it while the load runs
  const build = Effect.gen(function* () {
    const scope = yield* Scope.make()
    const queue = yield* RedisStore.make({
      maxUserQueue: args.maxUserQueue,
      maxTotal: args.maxTotal,
      redis: args.redis,
      prefix: args.prefix,
      leaseTime: args.leaseMs,
      timeout: args.timeoutMs,
      onUnavailable: "fail"
    }).pipe(
      Scope.extend(scope),
      Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : Scope.close(scope, exit)))
    )
    return { queue, scope }
  })
  // a worker started while Redis is down (the runner replaces killed workers) waits for it
  const { queue, scope } = yield* Effect.retry(build, { schedule: Schedule.spaced("200 millis"), times: 150 })
  const commands = yield* Queue.unbounded<Exclude<WorkerCommand, object>>()
  process.on("message", (command: WorkerCommand) => {
    if (typeof command === "object") {
      setTimeout(() => {
        const end = performance.now() + command.block
        while (performance.now() < end) {
          // blocked: nothing else of this process runs
        }
        void send({ type: "unblocked", pid: process.pid, at: now(), ms: command.block })
      }, 0)
    } else Queue.unsafeOffer(commands, command)
  })
  const load = yield* Effect.fork(
    Effect.forEach(
      args.loads,
      (spec) =>
        spec.rate !== undefined
          ? openLoop(queue, witness, spec, spec.rate)
          : Effect.forEach(Array.from({ length: spec.loops ?? 1 }), () => closedLoop(queue, witness, spec), {
              concurrency: "unbounded",
              discard: true
            }),
      { concurrency: "unbounded", discard: true }
    )
  )
  // how late a fiber woken by a timer runs: the event loop may turn on time while fibers queue
  // in Effect's scheduler behind thousands of others (this process short of CPU)
  const fiberLag = yield* Effect.fork(
    Effect.forever(
      Effect.gen(function* () {
        const from = now()
        yield* Effect.sleep(PROBE_MS)
        const at = now()
        const late = Math.max(0, at - from - PROBE_MS)
        probes.push([at, late])
        while (probes[0]![0] < at - 10_000) probes.shift()
        window.fiberLagMax = Math.max(window.fiberLagMax, late)
        total.fiberLagMax = Math.max(total.fiberLagMax, late)
      })
    )
  )
  const reporter = yield* Effect.fork(
    Effect.repeat(
      Effect.promise(() => report("report")),
      Schedule.spaced(args.reportMs)
    )
  )
  yield* Effect.promise(() => send({ type: "ready", pid: process.pid, at: now() }))

  const closeLayer = Effect.gen(function* () {
    const since = now()
    yield* Scope.close(scope, Exit.void)
    yield* Effect.promise(() => send({ type: "closed", pid: process.pid, at: now(), ms: now() - since }))
  })
  while (true) {
    const command = yield* Queue.take(commands)
    switch (command) {
      case "drain":
      case "shutdown": {
        const since = now()
        yield* command === "drain" ? queue.drain : queue.shutdown
        yield* Effect.promise(() =>
          send({ type: command === "drain" ? "drained" : "shut", pid: process.pid, at: now(), ms: now() - since })
        )
        continue
      }
      case "close":
      case "stop": {
        // "close": the layer closes under the load (which is refused from then on), then stops as for "stop"
        if (command === "close") yield* closeLayer
        yield* Fiber.interrupt(load)
        yield* Fiber.interrupt(reporter)
        // the probe runs on until the final report has judged every call
        yield* Effect.promise(() => report("final"))
        yield* Fiber.interrupt(fiberLag)
        if (command === "stop") yield* closeLayer
        return
      }
    }
  }
})

Effect.runPromise(program.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`worker ${args.name}: ${String(error)}\n`)
    process.exit(1)
  }
)
