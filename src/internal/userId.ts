import { Cause, Effect } from "effect"
import type { UserId } from "../QueueManager.js"

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Why `userId` is not a valid user id, or `undefined` when it is one. */
const invalidReason = (userId: unknown): string | undefined => {
  if (typeof userId === "string") {
    if (userId.length === 0) return "a string id must not be empty"
    // Redis stores text as UTF-8, which has no lone surrogate: such an id would become another one
    return loneSurrogate.test(userId) ? "a string id must be well-formed Unicode (it has a lone surrogate)" : undefined
  }
  if (typeof userId === "number") return Number.isSafeInteger(userId) ? undefined : "a number id must be a safe integer"
  return "an id must be a number or a string"
}

const describe = (userId: unknown): string =>
  typeof userId === "string" ? JSON.stringify(userId) : typeof userId === "number" ? String(userId) : typeof userId

/** The `IllegalArgumentException` naming `userId` when it is not a valid user id; `undefined` when it is one. */
export const invalidUserId = (userId: unknown): Cause.IllegalArgumentException | undefined => {
  const reason = invalidReason(userId)
  return reason === undefined
    ? undefined
    : new Cause.IllegalArgumentException(`QueueManager: invalid userId ${describe(userId)}: ${reason}`)
}

/**
 * Runs `f` with `userId` once it is known to be a valid user id; otherwise dies with an
 * `IllegalArgumentException` naming the value, before anything is read or changed.
 */
export const withValidUserId = <A, E, R>(
  userId: UserId,
  f: (userId: UserId) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  const invalid = invalidUserId(userId)
  return invalid === undefined ? f(userId) : Effect.die(invalid)
}
