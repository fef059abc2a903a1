/**
 * The bot this library came from, simulated: chats send bursts of video links, each accepted
 * link holds a slot of its chat for a random "download" time, inline-mode requests bypass
 * the per-user limit, refused ones get the seed's reply built from `QueueFull`.
 */
import { Effect, Random } from "effect"
import { QueueManager } from "../src/index.js"

/** How big the simulated load is. */
export interface SimulationOptions {
  readonly privateChats: number
  readonly groups: number
  readonly burstsPerChat: number
  readonly maxBurst: number
  /** Longest simulated download, in milliseconds. */
  readonly maxDownloadMillis: number
  /** Share of requests that arrive through inline mode (bypassing the per-user limit). */
  readonly inlineShare: number
}

/** The load `npm start` simulates: 40 chats (10 groups) sending bursts of links. */
export const botLoad: SimulationOptions = {
  privateChats: 30,
  groups: 10,
  burstsPerChat: 3,
  maxBurst: 6,
  maxDownloadMillis: 400,
  inlineShare: 0.1
}

/** What happened, per user and in total. */
export interface Report {
  readonly limit: number
  readonly accepted: number
  readonly inline: number
  readonly refused: number
  readonly sampleReply: string | undefined
  /** Per user: the most normal (non-bypass) downloads in flight at once, and with inline ones. */
  readonly peaks: ReadonlyMap<QueueManager.UserId, InFlight>
  readonly activeUsersAfter: number
  readonly slotsHeldAfter: number
}

/** Downloads in flight for one user: those holding a normal slot, and all of them (with inline bypass). */
export interface InFlight {
  readonly normal: number
  readonly all: number
}

/**
 * Counts downloads in flight per user, so the report can show the highest concurrency seen:
 * in this process by default, or across processes (e.g. counters in Redis).
 */
export interface Tracker {
  /** Counts a download in; the counts right after it. */
  readonly enter: (userId: QueueManager.UserId, bypass: boolean) => Effect.Effect<InFlight>
  readonly exit: (userId: QueueManager.UserId, bypass: boolean) => Effect.Effect<void>
}

/** A tracker for one process. */
export const localTracker = (): Tracker => {
  const inFlight = new Map<QueueManager.UserId, InFlight>()
  const add = (userId: QueueManager.UserId, bypass: boolean, delta: number) => {
    const now = inFlight.get(userId) ?? { normal: 0, all: 0 }
    const next = { normal: now.normal + (bypass ? 0 : delta), all: now.all + delta }
    inFlight.set(userId, next)
    return next
  }
  return {
    enter: (userId, bypass) => Effect.sync(() => add(userId, bypass, 1)),
    exit: (userId, bypass) => Effect.sync(() => void add(userId, bypass, -1))
  }
}

/** The seed's `error_queue_full` reply. */
export const queueFullReply = (error: QueueManager.QueueFull): string =>
  `Please wait! You already have ${error.active} videos processing. Try again in a moment.`

/** Runs the simulation against the provided QueueManager and reports what it saw. */
export const simulate = (options: SimulationOptions, tracker: Tracker = localTracker()) =>
  Effect.gen(function* () {
    const queue = yield* QueueManager.QueueManager
    const chats: Array<number> = [
      ...Array.from({ length: options.privateChats }, (_, i) => 100_000_000 + i * 7919),
      ...Array.from({ length: options.groups }, (_, i) => -1_001_000_000_000 - i * 104729)
    ]
    const peaks = new Map<QueueManager.UserId, InFlight>()
    let accepted = 0
    let inline = 0
    let refused = 0
    let sampleReply: string | undefined

    const download = (userId: QueueManager.UserId, bypass: boolean) =>
      Effect.acquireUseRelease(
        tracker.enter(userId, bypass),
        (next) =>
          Effect.gen(function* () {
            const peak = peaks.get(userId) ?? { normal: 0, all: 0 }
            peaks.set(userId, { normal: Math.max(peak.normal, next.normal), all: Math.max(peak.all, next.all) })
            yield* Effect.sleep(yield* Random.nextIntBetween(10, options.maxDownloadMillis))
          }),
        () => tracker.exit(userId, bypass)
      )

    /** One link: from a chat message (the chat's slot) or inline mode (the sender's slot, bypassing). */
    const request = (chatId: number) =>
      Effect.gen(function* () {
        const viaInline = chatId > 0 && (yield* Random.next) < options.inlineShare
        yield* queue.withSlot(chatId, { bypassUserLimit: viaInline })(download(chatId, viaInline))
        accepted++
        if (viaInline) inline++
      }).pipe(
        Effect.catchTag("QueueFull", (error) =>
          Effect.sync(() => {
            refused++
            sampleReply ??= queueFullReply(error)
          })
        )
      )

    const chat = (chatId: number) =>
      Effect.forEach(
        Array.from({ length: options.burstsPerChat }),
        () =>
          Effect.gen(function* () {
            yield* Effect.sleep(yield* Random.nextIntBetween(0, options.maxDownloadMillis))
            const links = yield* Random.nextIntBetween(1, options.maxBurst + 1)
            yield* Effect.forEach(Array.from({ length: links }), () => request(chatId), { concurrency: "unbounded" })
          }),
        { concurrency: "unbounded" }
      )

    yield* Effect.forEach(chats, chat, { concurrency: "unbounded" })
    const snapshot = yield* queue.snapshot
    let slotsHeldAfter = 0
    for (const [, n] of snapshot) slotsHeldAfter += n
    return {
      limit: queue.maxUserQueue,
      accepted,
      inline,
      refused,
      sampleReply,
      peaks,
      activeUsersAfter: yield* queue.activeUsers,
      slotsHeldAfter
    } satisfies Report
  })

/** True when no user ever had more normal downloads in flight than the limit, and nothing is held at the end. */
export const limitsHeld = (report: Report): boolean =>
  report.activeUsersAfter === 0 &&
  report.slotsHeldAfter === 0 &&
  (report.limit === 0 || Array.from(report.peaks.values()).every((peak) => peak.normal <= report.limit))

/** The report as a few lines of text. */
export const formatReport = (report: Report): string => {
  const peaks = Array.from(report.peaks.entries())
  const highest = Math.max(0, ...peaks.map(([, p]) => p.normal))
  const highestAll = Math.max(0, ...peaks.map(([, p]) => p.all))
  const atLimit = peaks.filter(([, p]) => report.limit > 0 && p.normal === report.limit).length
  const groups = peaks.filter(([id]) => typeof id === "number" && id < 0)
  return [
    `limit per user: ${report.limit === 0 ? "none (0)" : report.limit}`,
    `requests: ${report.accepted + report.refused} (accepted ${report.accepted}, of which ${report.inline} inline with bypass; refused ${report.refused})`,
    `reply to a refused request: ${report.sampleReply ?? "(none refused)"}`,
    `users: ${peaks.length} (${groups.length} groups), ${atLimit} of them reached the limit`,
    `highest concurrency of one user: ${highest} normal${report.limit === 0 ? "" : ` (limit ${report.limit})`}, ${highestAll} counting inline bypass`,
    `after the run: ${report.activeUsersAfter} users active, ${report.slotsHeldAfter} slots held`,
    limitsHeld(report)
      ? "OK: no user ever went above the limit, and every count returned to zero"
      : "FAILED: a limit was exceeded or a slot was leaked"
  ].join("\n")
}
