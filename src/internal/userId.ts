import { Cause, Effect } from "effect"
import type { UserId } from "../QueueManager.js"

/** Why `userId` is not a valid user id, or `undefined` when it is one. */
const invalidReason = (userId: unknown): string | undefined => {
  if (typeof userId === "string") return userId.length > 0 ? undefined : "a string id must not be empty"
  if (typeof userId === "number") return Number.isSafeInteger(userId) ? undefined : "a number id must be a safe integer"
  return "an id must be a number or a string"
}

const describe = (userId: unknown): string =>
  typeof userId === "string" ? JSON.stringify(userId) : typeof userId === "number" ? String(userId) : typeof userId

/**
 * Runs `f` with `userId` once it is known to be a valid user id; otherwise dies with an
 * `IllegalArgumentException` naming the value, before anything is read or changed.
 */
export const withValidUserId = <A, E, R>(
  userId: UserId,
  f: (userId: UserId) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  const reason = invalidReason(userId)
  return reason === undefined
    ? f(userId)
    : Effect.die(new Cause.IllegalArgumentException(`QueueManager: invalid userId ${describe(userId)}: ${reason}`))
}
