/**
 * The process `redis-reclaim` kills: takes every slot of one user, prints `held`, and keeps
 * them (renewing their leases) until it is killed. Arguments: `ours` or `peer`, then
 * {@link HolderArgs} as JSON.
 */
import { Duration, Effect, Logger, LogLevel } from "effect"
import { Redis } from "ioredis"
import { Semaphore } from "redis-semaphore"
import * as RedisStore from "../src/RedisStore.js"
import { peerKey, type HolderArgs } from "./redisPeers.js"

const [kind, json] = process.argv.slice(2)
const args = JSON.parse(json!) as HolderArgs
const held = () => process.stdout.write("held\n")

if (kind === "ours") {
  await Effect.runPromise(
    Effect.gen(function* () {
      const queue = yield* RedisStore.make({
        redis: args.redis,
        prefix: args.prefix,
        maxUserQueue: args.limit,
        leaseTime: Duration.millis(args.leaseMillis)
      })
      for (let i = 0; i < args.limit; i++) yield* queue.tryAcquire(args.user)
      held()
      return yield* Effect.never
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.None))
  )
} else {
  const client = new Redis(args.redis)
  for (let i = 0; i < args.limit; i++) {
    // its refresh timer (every 0.8 lease) keeps the permit, and this process, alive
    await new Semaphore(client, peerKey(args.prefix, args.user), args.limit, {
      lockTimeout: args.leaseMillis
    }).acquire()
  }
  held()
}
