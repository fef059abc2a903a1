import { HttpApp, HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import type { Service, UserId } from "../QueueManager.js"
import { badOption } from "./userKey.js"
import type { MissingUserKey, SlotRefusal } from "./userKey.js"

/** When a refused client may try again: seconds for every refusal, seconds per refusal (`undefined`: no header), or never said. */
export type RetryAfter = number | false | ((refusal: SlotRefusal) => number | undefined)

const isSeconds = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 0

/** Checks `retryAfter`, throwing naming the option and the value when it is not one. */
export const checkRetryAfter = (module: string, value: unknown): RetryAfter => {
  if (value === undefined) return 1
  if (value === false || typeof value === "function" || isSeconds(value)) return value as RetryAfter
  return badOption(module, "retryAfter", "whole seconds >= 0, a function of the refusal, or false", value)
}

/** The IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers) of a concurrency policy: its quota and what remains. */
const rateLimitFields = (policy: "user" | "global", quota: number, remaining: number) => ({
  "ratelimit-policy": `"${policy}";q=${quota};qu="concurrent-requests"`,
  ratelimit: `"${policy}";r=${remaining}`
})

/**
 * The headers of a refused request's response: `Retry-After` (unless the response has its own)
 * for the core's refusals, and with `rateLimit` the RateLimit fields of the limit it hit (the
 * user's or `maxTotal`; none for a full waiting line).
 */
export const refusalHeaders = (
  response: HttpServerResponse.HttpServerResponse,
  refusal: SlotRefusal | MissingUserKey,
  retryAfter: RetryAfter,
  rateLimit: boolean
): HttpServerResponse.HttpServerResponse => {
  if (refusal._tag === "MissingUserKey") return response
  const chosen = typeof retryAfter === "function" ? retryAfter(refusal) : retryAfter
  // a function may add jitter (1 + Math.random()): the header takes whole seconds, rounded up
  const seconds = typeof chosen === "number" && Number.isFinite(chosen) && chosen >= 0 ? Math.ceil(chosen) : undefined
  const headers: Record<string, string> = {}
  if (seconds !== undefined && response.headers["retry-after"] === undefined) headers["retry-after"] = String(seconds)
  if (rateLimit && refusal._tag === "QueueFull" && refusal.reason !== "waiting" && refusal.limit > 0) {
    Object.assign(headers, rateLimitFields(refusal.reason, refusal.limit, 0))
  }
  return HttpServerResponse.setHeaders(response, headers)
}

/**
 * Adds to the response of a request holding a slot of `userId` the RateLimit fields of the
 * user's limit: what remains for it now (one more read of the store; none for a user without
 * a limit, or if the store cannot be read).
 */
export const announceRemaining = (queue: Service, userId: UserId) =>
  queue.status(userId).pipe(
    Effect.flatMap(({ active, limit }) =>
      limit === 0
        ? Effect.void
        : HttpApp.appendPreResponseHandler((_request, response) =>
            Effect.succeed(
              HttpServerResponse.setHeaders(response, rateLimitFields("user", limit, Math.max(0, limit - active)))
            )
          )
    ),
    Effect.catchTag("StoreUnavailable", () => Effect.void)
  )
