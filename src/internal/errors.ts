import { Schema } from "effect"

/**
 * Why a request was refused: `"user"` — the user holds as many slots as its limit allows;
 * `"global"` — `maxTotal` slots are in flight across all users; `"waiting"` — the user
 * already has `maxWaitingPerUser` requests waiting.
 *
 * @since 0.1.0
 */
export const RefusalReason = Schema.Literal("user", "global", "waiting")

/**
 * @since 0.1.0
 */
export type RefusalReason = typeof RefusalReason.Type

/**
 * A request was refused. Carries what a reply needs: whose request it was, why, and the
 * numbers of the limit that refused it — `active` is what that limit counts (the user's
 * slots for `"user"`, all slots for `"global"`, the user's waiting requests for `"waiting"`)
 * and `limit` its bound.
 *
 * @example
 * ```ts
 * Effect.catchTag("QueueFull", (e) =>
 *   e.reason === "user"
 *     ? reply(`Please wait! You already have ${e.active} videos processing. Try again in a moment.`)
 *     : reply("The bot is busy. Try again in a moment."))
 * ```
 * @since 0.1.0
 */
export class QueueFull extends Schema.TaggedError<QueueFull>()("QueueFull", {
  userId: Schema.Union(Schema.Number, Schema.String),
  reason: RefusalReason,
  active: Schema.Number,
  limit: Schema.Number
}) {
  override get message(): string {
    switch (this.reason) {
      case "user":
        return `user ${this.userId} already holds ${this.active} of ${this.limit} slots`
      case "global":
        return `all ${this.limit} slots are in use (request of user ${this.userId})`
      case "waiting":
        return `user ${this.userId} already has ${this.active} of ${this.limit} requests waiting`
    }
  }
}

/**
 * The manager was shut down (`shutdown` or `drain`): new acquisitions and every request
 * still waiting fail with this. Slots already held finish normally.
 *
 * @since 0.1.0
 */
export class QueueShutdown extends Schema.TaggedError<QueueShutdown>()("QueueShutdown", {
  userId: Schema.Union(Schema.Number, Schema.String)
}) {
  override get message(): string {
    return `the queue manager is shut down (request of user ${this.userId})`
  }
}

/**
 * The store behind the manager (Redis) could not be reached, or answered something that
 * is not what it should be, within the time allowed. `operation` names what was tried,
 * `reason` says what happened, and `cause` keeps the underlying error, if any.
 * The in-memory store never fails this way.
 *
 * @since 0.1.0
 */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()("StoreUnavailable", {
  operation: Schema.String,
  reason: Schema.String,
  /** What failed underneath (the client's error), when there was one. */
  cause: Schema.optional(Schema.Defect)
}) {
  override get message(): string {
    return `the queue store is unavailable (${this.operation}): ${this.reason}`
  }
}

/**
 * A slot's lease expired before it could be renewed (a long pause, a network cut) and may
 * now belong to someone else: `withSlot` interrupts its body and fails with this.
 *
 * @since 0.1.0
 */
export class LeaseLost extends Schema.TaggedError<LeaseLost>()("LeaseLost", {
  userId: Schema.Union(Schema.Number, Schema.String)
}) {
  override get message(): string {
    return `the slot of user ${this.userId} was lost: its lease expired before it was renewed`
  }
}
