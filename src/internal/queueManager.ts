import { Effect } from "effect"
import type { ConfigError } from "effect"
import type { Options, Service, SlotOptions, UserId } from "../QueueManager.js"
import { validateLimit } from "./config.js"
import { QueueFull } from "./errors.js"
import { makeMemoryStore } from "./memoryStore.js"
import { withValidUserId } from "./userId.js"

const logAt = (message: string, annotations: Record<string, unknown>) =>
  Effect.annotateLogs(Effect.logDebug(message), annotations)

/** Builds the QueueManager service over a fresh in-memory store. */
export const make = (options: Options): Effect.Effect<Service, ConfigError.ConfigError> =>
  Effect.gen(function* () {
    const limit = yield* validateLimit("maxUserQueue", options.maxUserQueue)
    const store = yield* makeMemoryStore

    const acquire = (userId: UserId, options: SlotOptions | undefined) => {
      const bypass = options?.bypassUserLimit === true
      return Effect.tap(store.acquire(userId, limit, bypass), ({ acquired, active }) =>
        logAt(acquired ? "slot acquired" : "slot refused", { userId, active, limit, bypass })
      )
    }

    const take = (userId: UserId, options: SlotOptions | undefined) =>
      Effect.flatMap(acquire(userId, options), ({ acquired, active }) =>
        acquired ? Effect.void : Effect.fail(new QueueFull({ userId, reason: "user", active, limit }))
      )

    const release = (userId: UserId) =>
      Effect.flatMap(store.release(userId), (active) =>
        active === undefined
          ? logAt("release ignored: no slot held", { userId, limit })
          : logAt("slot released", { userId, active, limit })
      )

    yield* Effect.annotateLogs(Effect.logInfo("QueueManager ready"), { maxUserQueue: limit })

    return {
      maxUserQueue: limit,
      activeCount: (userId) => withValidUserId(userId, store.count),
      activeUsers: store.users,
      tryAcquire: (userId, options) =>
        withValidUserId(userId, (id) => Effect.map(acquire(id, options), ({ acquired }) => acquired)),
      release: (userId) => withValidUserId(userId, release),
      slot: (userId, options) =>
        withValidUserId(userId, (id) => Effect.acquireRelease(take(id, options), () => release(id))),
      withSlot: (userId, options) => (self) =>
        withValidUserId(userId, (id) =>
          Effect.uninterruptibleMask((restore) =>
            Effect.zipRight(take(id, options), Effect.ensuring(restore(self), release(id)))
          )
        ),
      snapshot: store.snapshot
    }
  })
