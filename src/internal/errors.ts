import { Schema } from "effect"

/**
 * A slot was refused because the user already holds as many slots as its limit allows.
 * Carries what a reply needs: whose request it was, how many slots it holds, the limit.
 *
 * @example
 * ```ts
 * Effect.catchTag("QueueFull", (e) =>
 *   reply(`Please wait! You already have ${e.active} videos processing. Try again in a moment.`))
 * ```
 * @since 0.1.0
 */
export class QueueFull extends Schema.TaggedError<QueueFull>()("QueueFull", {
  userId: Schema.Union(Schema.Number, Schema.String),
  active: Schema.Number,
  limit: Schema.Number
}) {
  override get message(): string {
    return `user ${this.userId} already holds ${this.active} of ${this.limit} slots`
  }
}
