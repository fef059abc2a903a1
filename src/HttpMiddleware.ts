/**
 * Per-user limits for `@effect/platform` HTTP servers: a middleware that runs each request
 * inside a slot of the user the request belongs to, and answers `429 Too Many Requests` when
 * that user already has as many requests in flight as the limit allows.
 *
 * Import it from its own entry point (it needs `@effect/platform`, the core does not):
 *
 * @example
 * ```ts
 * import { HttpRouter, HttpServerResponse } from "@effect/platform"
 * import * as QueueHttp from "effect-queue-manager/HttpMiddleware"
 *
 * const perUser = QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id") })
 *
 * const router = HttpRouter.empty.pipe(HttpRouter.get("/download", download.pipe(perUser)))
 * ```
 * @since 0.1.0
 */
import { Headers, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"
import type { Scope } from "effect"
import { holdUntilSent } from "./internal/httpSlot.js"
import { announceRemaining, checkRetryAfter, refusalHeaders } from "./internal/rateLimitHeaders.js"
import { badOption, checkFunction, checkRule, decide } from "./internal/userKey.js"
import type { MissingKeyRule, MissingUserKey, SlotRefusal } from "./internal/userKey.js"
import type { RetryAfter } from "./internal/rateLimitHeaders.js"
import { QueueManager } from "./index.js"

export { MissingUserKey } from "./internal/userKey.js"
export type { MissingKeyRule } from "./internal/userKey.js"
export type { RetryAfter } from "./internal/rateLimitHeaders.js"

/**
 * Why a request was refused: the core's refusals of a slot (`QueueFull`, `QueueShutdown`,
 * `StoreUnavailable`) or {@link MissingUserKey} (no valid user key under `onMissingKey: "reject"`).
 *
 * @since 0.1.0
 */
export type Refusal = SlotRefusal | MissingUserKey

/**
 * What a key function may give: a user id, or nothing (`undefined` or `Option.none()`), either
 * directly or as the result of an `Effect`.
 *
 * @since 0.1.0
 */
export type UserKey = QueueManager.UserId | undefined | Option.Option<QueueManager.UserId>

/**
 * How the middleware finds the user of a request and answers a refused one.
 *
 * @since 0.1.0
 */
export interface Options<E = never, R = never> {
  /**
   * The user a request belongs to: a header, an auth claim, the client address. An `Effect`
   * may fail (for instance an authentication error); that failure is the middleware's.
   * Nothing, or a value that is not a valid user id (`""`, `NaN`, `1.5`), means "no user key".
   */
  readonly userKey: (request: HttpServerRequest.HttpServerRequest) => UserKey | Effect.Effect<UserKey, E, R>
  /** What to do with a request without a valid user key. Default `"reject"` (a `400`). */
  readonly onMissingKey?: MissingKeyRule | undefined
  /** Passed to every acquisition, e.g. `{ bypassUserLimit: true }` for an internal route. */
  readonly slotOptions?: QueueManager.SlotOptions | undefined
  /** The response to a refused request. Default {@link defaultResponse}. */
  readonly onRefused?:
    | ((
        refusal: Refusal,
        request: HttpServerRequest.HttpServerRequest
      ) => HttpServerResponse.HttpServerResponse | Effect.Effect<HttpServerResponse.HttpServerResponse>)
    | undefined
  /**
   * `Retry-After` on the answer to a refused request (429 or 503, not a 400), in whole seconds:
   * default `1`; a number for every refusal; a function choosing per refusal (rounded up to
   * whole seconds; `undefined`: no header); `false`: never. A response from `onRefused` that has its own is left as it is.
   */
  readonly retryAfter?: RetryAfter | undefined
  /**
   * Adds the IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers)
   * for the concurrency limit: `"user"` (or `"global"`, `maxTotal`) with its quota `q` and
   * `qu="concurrent-requests"`, and `r`, how many more requests the user may have in flight
   * now (`0` on a 429). On a served request this reads the user's status once more (a round trip
   * on Redis). Default `false`.
   */
  readonly rateLimitHeaders?: boolean | undefined
}

const statusOf: { readonly [K in Refusal["_tag"]]: number } = {
  QueueFull: 429,
  QueueShutdown: 503,
  StoreUnavailable: 503,
  MissingUserKey: 400
}

/**
 * The default answer to a refusal: `429 Too Many Requests` for `QueueFull`, `503 Service
 * Unavailable` for `QueueShutdown` and `StoreUnavailable`, `400 Bad Request` for
 * {@link MissingUserKey}, with a JSON body holding the error's tag, its fields and its message,
 * e.g. `{"error":"QueueFull","userId":"alice","reason":"user","active":3,"limit":3,"message":"user alice already holds 3 of 3 slots"}`.
 * The fields of `StoreUnavailable` (which host failed, and how) stay out of the answer.
 *
 * @since 0.1.0
 */
export const defaultResponse = (refusal: Refusal): HttpServerResponse.HttpServerResponse => {
  const { _tag, ...fields } = { ...refusal }
  const body =
    _tag === "StoreUnavailable"
      ? { error: _tag, message: "the limiter is unavailable, try again later" }
      : { error: _tag, ...fields, message: refusal.message }
  return HttpServerResponse.unsafeJson(body, { status: statusOf[_tag] })
}

/**
 * A key function reading the user from a request header (names are case-insensitive). A
 * missing or empty header means "no user key". The key is the header's text: `"42"`, not `42`.
 *
 * @since 0.1.0
 */
export const fromHeader =
  (name: string) =>
  (request: HttpServerRequest.HttpServerRequest): Option.Option<string> =>
    Headers.get(request.headers, name)

/**
 * A key function reading the user from the client address. Behind a proxy, put
 * `HttpMiddleware.xForwardedHeaders` of `@effect/platform` in front so it is the client's.
 *
 * @since 0.1.0
 */
export const fromRemoteAddress = (request: HttpServerRequest.HttpServerRequest): Option.Option<string> =>
  request.remoteAddress

const module = "effect-queue-manager/HttpMiddleware"

/**
 * The middleware: runs the app or handler it wraps inside a slot of the request's user and
 * holds the slot until the response has been written (also a streaming body), or until the
 * client disconnects; answers a refused request with `onRefused` (adding `Retry-After`, see
 * `retryAfter`) without running it.
 *
 * Apply it to a single route handler, to a router (`HttpRouter.use`) or to the whole server
 * (`HttpServer.serve(middleware)`); it needs the `QueueManager` service. Throws an
 * `IllegalArgumentException` naming the option and the value when an option is invalid.
 *
 * @example
 * ```ts
 * const perUser = QueueHttp.make({
 *   userKey: (request) => Effect.map(currentUser(request), (user) => user.id),
 *   onMissingKey: { shared: "anonymous" }
 * })
 * ```
 * @since 0.1.0
 */
export const make = <KE = never, KR = never>(options: Options<KE, KR>) => {
  if (typeof options !== "object" || options === null) badOption(module, "options", "an object", options)
  checkFunction(module, "userKey", options.userKey, true)
  checkFunction(module, "onRefused", options.onRefused)
  const rule = checkRule(module, options.onMissingKey) ?? "reject"
  const onRefused = options.onRefused ?? defaultResponse
  const retryAfter = checkRetryAfter(module, options.retryAfter)
  const rateLimit = options.rateLimitHeaders ?? false
  if (typeof rateLimit !== "boolean") badOption(module, "rateLimitHeaders", "a boolean", rateLimit)
  return <A, E, R>(
    self: Effect.Effect<A, E, R>
  ): Effect.Effect<
    A | HttpServerResponse.HttpServerResponse,
    E | KE,
    R | KR | QueueManager.QueueManager | HttpServerRequest.HttpServerRequest | Scope.Scope
  > =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const given = options.userKey(request)
      // an Option is also an Effect: look for it first
      const decision = decide(rule, !Option.isOption(given) && Effect.isEffect(given) ? yield* given : given)
      if (decision._tag === "Pass") return yield* self
      const respond = (refusal: Refusal) => {
        const response = onRefused(refusal, request)
        const answer = Effect.map(Effect.isEffect(response) ? response : Effect.succeed(response), (response) =>
          refusalHeaders(response, refusal, retryAfter, rateLimit)
        )
        // the client is told little about a failing store: the logs get all of it
        return refusal._tag === "StoreUnavailable"
          ? Effect.zipRight(Effect.logWarning("request refused: the queue store is unavailable", refusal), answer)
          : answer
      }
      if (decision._tag === "Refuse") return yield* respond(decision.error)
      const queue = yield* QueueManager.QueueManager
      const slot = queue.slot(decision.userId, options.slotOptions)
      const acquire = rateLimit ? Effect.zipRight(slot, announceRemaining(queue, decision.userId)) : slot
      return yield* holdUntilSent(acquire, respond, request.source, self)
    })
}
