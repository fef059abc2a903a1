/**
 * A separate Node process for the multi-process tests: `hammer` runs many slots against
 * shared users and reports the most slots it ever saw in flight per user (a witness counter
 * in Redis, incremented inside each slot); `hold` takes slots and waits to be killed.
 */
import { Effect, Random } from "effect"
import type { Scope } from "effect"
import { Redis } from "ioredis"
import { QueueManager } from "../../src/index.js"
import * as RedisStore from "../../src/RedisStore.js"

const [mode, json] = process.argv.slice(2)
const args = JSON.parse(json!) as {
  redis: string
  prefix: string
  users: Array<number>
  requests: number
  limit: number
  leaseTime?: string
}

const layer = RedisStore.layer({
  maxUserQueue: args.limit,
  redis: args.redis,
  prefix: args.prefix,
  leaseTime: (args.leaseTime ?? "30 seconds") as never
})

const hammer = Effect.gen(function* () {
  const queue = yield* QueueManager.QueueManager
  const witness = new Redis(args.redis)
  const maxSeen: Record<number, number> = {}
  let accepted = 0
  let refused = 0
  const body = (user: number) =>
    Effect.acquireUseRelease(
      Effect.promise(() => witness.incr(`{${args.prefix}}:witness:${user}`)),
      (inFlight) =>
        Effect.gen(function* () {
          maxSeen[user] = Math.max(maxSeen[user] ?? 0, inFlight)
          yield* Effect.sleep(yield* Random.nextIntBetween(0, 4))
        }),
      () => Effect.promise(() => witness.decr(`{${args.prefix}}:witness:${user}`))
    )
  yield* Effect.forEach(
    Array.from({ length: args.requests }, (_, i) => args.users[i % args.users.length]!),
    (user, i) =>
      queue
        .withSlot(user, { onFull: i % 2 === 0 ? "wait" : "reject" })(body(user))
        .pipe(
          Effect.matchEffect({
            onSuccess: () => Effect.sync(() => accepted++),
            onFailure: (error) => (error._tag === "QueueFull" ? Effect.sync(() => refused++) : Effect.fail(error))
          })
        ),
    { concurrency: 16 }
  )
  yield* Effect.promise(() => witness.quit())
  process.stdout.write(JSON.stringify({ maxSeen, accepted, refused }) + "\n")
})

const hold = Effect.gen(function* () {
  const queue = yield* QueueManager.QueueManager
  for (let i = 0; i < args.limit; i++) yield* queue.slot(args.users[0]!)
  process.stdout.write("held\n")
  yield* Effect.never
})

const chosen: Effect.Effect<void, unknown, QueueManager.QueueManager | Scope.Scope> = mode === "hold" ? hold : hammer
const program = Effect.scoped(chosen)

Effect.runPromise(program.pipe(Effect.provide(layer))).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(String(error) + "\n")
    process.exit(1)
  }
)
