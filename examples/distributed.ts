/**
 * The simulation across several processes sharing one Redis: each worker process runs the
 * bot against `RedisStore.layerConfig()` (the same chats, as replicas behind a load balancer
 * would see them), counting downloads in flight in Redis so the peaks are across all processes.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Effect } from "effect"
import { Redis } from "ioredis"
import { QueueManager } from "../src/index.js"
import * as RedisStore from "../src/RedisStore.js"
import { type InFlight, type Report, type SimulationOptions, simulate, type Tracker } from "./simulation.js"

/** Counts downloads in flight per user in Redis, so every process sees the same numbers. */
export const redisTracker = (redis: Redis, prefix: string): Tracker => {
  const keys = (userId: QueueManager.UserId) => [
    `{${prefix}}:witness:normal:${userId}`,
    `{${prefix}}:witness:all:${userId}`
  ]
  const change = (userId: QueueManager.UserId, bypass: boolean, delta: number) => {
    const [normal, all] = keys(userId) as [string, string]
    return Effect.promise(() =>
      redis
        .multi()
        .incrby(normal, bypass ? 0 : delta)
        .incrby(all, delta)
        .exec()
    ).pipe(Effect.map((replies): InFlight => ({ normal: Number(replies![0]![1]), all: Number(replies![1]![1]) })))
  }
  return {
    enter: (userId, bypass) => change(userId, bypass, 1),
    exit: (userId, bypass) => Effect.asVoid(change(userId, bypass, -1))
  }
}

/** A worker process: the simulation on the Redis store, its report printed as one JSON line. */
export const runWorker = (options: SimulationOptions) =>
  Effect.gen(function* () {
    const prefix = process.env["REDIS_PREFIX"]!
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => new Redis(process.env["REDIS_URL"]!)),
      (r) => Effect.promise(() => r.quit())
    )
    const report = yield* simulate(options, redisTracker(redis, prefix))
    process.stdout.write(JSON.stringify({ ...report, peaks: Array.from(report.peaks) }) + "\n")
  }).pipe(Effect.scoped, Effect.provide(RedisStore.layerConfig()))

/** Runs `workers` worker processes on a fresh key prefix and merges their reports; Redis is read at the end. */
export const runDistributed = (workers: number) =>
  Effect.gen(function* () {
    const prefix = `simulation:${Date.now().toString(36)}`
    const env = { ...process.env, REDIS_PREFIX: prefix }
    const runs = yield* Effect.forEach(
      Array.from({ length: workers }),
      () =>
        Effect.tryPromise({
          try: () => promisify(execFile)(process.execPath, ["--import", "tsx", "examples/bot-worker.ts"], { env }),
          // the worker has said what went wrong on its stderr
          catch: (error) => new Error(`a worker process failed: ${(error as { stderr: string }).stderr.trim()}`)
        }),
      { concurrency: "unbounded" }
    )
    const reports = runs.map(
      ({ stdout }) =>
        JSON.parse(stdout.trim().split("\n").pop()!) as Report & { peaks: Array<[QueueManager.UserId, InFlight]> }
    )
    const peaks = new Map<QueueManager.UserId, InFlight>()
    for (const report of reports) {
      for (const [userId, peak] of report.peaks) {
        const seen = peaks.get(userId) ?? { normal: 0, all: 0 }
        peaks.set(userId, { normal: Math.max(seen.normal, peak.normal), all: Math.max(seen.all, peak.all) })
      }
    }
    const after = yield* Effect.gen(function* () {
      const queue = yield* RedisStore.make({ maxUserQueue: 0, redis: process.env["REDIS_URL"]!, prefix })
      const stats = yield* queue.stats
      const redis = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(process.env["REDIS_URL"]!)),
        (r) => Effect.promise(() => r.quit())
      )
      const keys = yield* Effect.promise(() => redis.keys(`{${prefix}}:*`))
      if (keys.length > 0) yield* Effect.promise(() => redis.del(...keys))
      return stats
    }).pipe(Effect.scoped)
    return {
      limit: reports[0]!.limit,
      accepted: reports.reduce((n, r) => n + r.accepted, 0),
      inline: reports.reduce((n, r) => n + r.inline, 0),
      refused: reports.reduce((n, r) => n + r.refused, 0),
      sampleReply: reports.find((r) => r.sampleReply !== undefined)?.sampleReply,
      peaks,
      activeUsersAfter: after.activeUsers,
      slotsHeldAfter: after.inFlight
    } satisfies Report
  })
