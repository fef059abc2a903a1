import { Cause, ConfigError, Effect } from "effect"
import type { Tier as QueueManagerTier, UserId, UserLimit } from "../QueueManager.js"
import type { Tier } from "./store.js"

/** `userLimit` as given: a function, or absent. */
export const validateUserLimit = (userLimit: unknown) =>
  userLimit === undefined || typeof userLimit === "function"
    ? Effect.succeed(userLimit as UserLimit | undefined)
    : Effect.fail(
        ConfigError.InvalidData(
          ["userLimit"],
          `userLimit must be a function (userId, maxUserQueue) => number | { running, waiting }, got ${typeof userLimit}`
        )
      )

const isLimit = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 0

const shownValue = (value: unknown) => (typeof value === "string" ? JSON.stringify(value) : String(value))

/** A value as the error shows it: an object by its own fields (`NaN` stays `NaN`, as JSON would not keep it). */
const shown = (value: unknown) =>
  typeof value === "object" && value !== null && !Array.isArray(value)
    ? `{ ${Object.entries(value)
        .map(([key, field]) => `${key}: ${shownValue(field)}`)
        .join(", ")} }`
    : Array.isArray(value)
      ? `[${value.map(shownValue).join(", ")}]`
      : shownValue(value)

/** Whether `tier` is a plain `{ running?, waiting? }` object, with no other field (a typo would drop a limit). */
const isTier = (tier: unknown): tier is QueueManagerTier =>
  typeof tier === "object" &&
  tier !== null &&
  Object.getPrototypeOf(tier) === Object.prototype &&
  Object.keys(tier).every((key) => key === "running" || key === "waiting")

/**
 * The limits of a user under a default `maxUserQueue`: those `userLimit` returns (a number is
 * the running limit; `{ running, waiting }` sets either, the other keeping its default), else
 * `maxUserQueue` and `maxWaitingPerUser`. A tier function returning anything else throws an
 * `IllegalArgumentException` naming the user and the value (the operation dies, nothing changes).
 */
export const makeTierOf = (
  userLimit: UserLimit | undefined,
  maxWaitingPerUser: number
): ((userId: UserId, maxUserQueue: number) => Tier) => {
  // one object per default, not one per acquisition
  let byDefault: Tier = { limit: -1, maxWaiting: maxWaitingPerUser }
  const defaultTier = (maxUserQueue: number) =>
    byDefault.limit === maxUserQueue ? byDefault : (byDefault = { limit: maxUserQueue, maxWaiting: maxWaitingPerUser })
  if (userLimit === undefined) return (_userId, maxUserQueue) => defaultTier(maxUserQueue)
  const invalid = (userId: UserId, tier: unknown, what: string) =>
    new Cause.IllegalArgumentException(
      `QueueManager: userLimit(${JSON.stringify(userId)}) returned ${shown(tier)}: ${what}`
    )
  return (userId, maxUserQueue) => {
    const tier = userLimit(userId, maxUserQueue)
    if (isLimit(tier))
      return tier === maxUserQueue ? defaultTier(maxUserQueue) : { limit: tier, maxWaiting: maxWaitingPerUser }
    if (!isTier(tier)) {
      throw invalid(userId, tier, "must be a whole number >= 0 (0 = no limit) or { running, waiting } of such numbers")
    }
    const { running = maxUserQueue, waiting = maxWaitingPerUser } = tier
    if (!isLimit(running)) throw invalid(userId, tier, "running must be a whole number >= 0 (0 = no limit)")
    if (!isLimit(waiting)) throw invalid(userId, tier, "waiting must be a whole number >= 0 (0 = no bound)")
    return { limit: running, maxWaiting: waiting }
  }
}
