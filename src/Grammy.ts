/**
 * Per-user limits for [grammY](https://grammy.dev) Telegram bots: a middleware that runs the
 * rest of each update's handling inside a slot, the way the bot this library comes from did —
 * the chat for messages (a group shares one allowance), the sender with bypass for inline
 * queries and chosen inline results — and answers a refused message in a private chat with
 * the seed's "Please wait! You already have {n} videos processing. Try again in a moment."
 *
 * Import it from its own entry point (it needs `grammy`, the core does not). Only grammY's
 * types are imported here: the module has no runtime dependency on it.
 *
 * @example
 * ```ts
 * import { Bot } from "grammy"
 * import { ManagedRuntime } from "effect"
 * import { QueueManager } from "effect-queue-manager"
 * import * as QueueGrammy from "effect-queue-manager/Grammy"
 *
 * const runtime = ManagedRuntime.make(QueueManager.layer({ maxUserQueue: 3 }))
 * const bot = new Bot(token)
 * bot.use(QueueGrammy.middleware(runtime))
 * bot.on("message:text", download) // at most 3 downloads per chat at once
 * ```
 * @since 0.1.0
 */
import { Cause, Effect, Exit, Option } from "effect"
import type { Context, MiddlewareFn, NextFunction } from "grammy"
import { makeRunner, type QueueRuntime, unstoppable } from "./internal/runner.js"
import { badOption, checkFunction, checkRule, decide } from "./internal/userKey.js"
import type { MissingKeyRule, MissingUserKey, SlotRefusal } from "./internal/userKey.js"
import { QueueManager } from "./index.js"

export { MissingUserKey } from "./internal/userKey.js"
export type { MissingKeyRule } from "./internal/userKey.js"

/**
 * Why an update was refused: the core's refusals of a slot (`QueueFull`, `QueueShutdown`,
 * `StoreUnavailable`) or {@link MissingUserKey} (no valid key under `onMissingKey: "reject"`).
 *
 * @since 0.1.0
 */
export type Refusal = SlotRefusal | MissingUserKey

/**
 * How the middleware finds the slot of an update and answers a refused one. Every field is
 * optional; the defaults reproduce the original bot.
 *
 * @since 0.1.0
 */
export interface Options<C extends Context = Context> {
  /** Whose slot an update takes. Default {@link defaultKey}. Nothing, or an invalid id, means "no key". */
  readonly key?: ((ctx: C) => QueueManager.UserId | undefined) | undefined
  /** Which updates skip the per-user check (still counted). Default {@link isInline}. */
  readonly bypass?: ((ctx: C) => boolean) | undefined
  /** Passed to every acquisition; `bypassUserLimit: true` here bypasses for every update. */
  readonly slotOptions?: QueueManager.SlotOptions | undefined
  /**
   * Updates without a key (neither a chat nor a sender, e.g. poll updates). Default `"allow"`:
   * they run without a slot. `"reject"` drops them (answered only where `replyWhen` says so).
   */
  readonly onMissingKey?: MissingKeyRule | undefined
  /** The text answering a refused update. Default {@link defaultReplyText}. */
  readonly replyText?: ((refusal: Refusal, ctx: C) => string) | undefined
  /**
   * Which refused updates get an answer (`ctx.reply`). Default {@link isPrivateChat}. Updates
   * without a chat (inline queries, chosen inline results) are never answered.
   */
  readonly replyWhen?: ((ctx: C) => boolean) | undefined
  /**
   * After a refusal reply in a chat, how long (milliseconds) further refusals in that chat get
   * none: a burst of refused links gets one reply, not one each, which would queue behind the
   * bot's real answers under Telegram's rate limits. Default 5000; 0 replies to every refusal.
   */
  readonly replyCooldown?: number | undefined
  /**
   * What a refused update does instead, in the shape of grammY plugins' hooks (ratelimiter's
   * `onLimitExceeded`): `next()` would run the rest of the chain without a slot. Default: the
   * reply above (`replyText`, `replyWhen`, `replyCooldown`). Its errors reach grammY.
   */
  readonly onRefused?: ((ctx: C, refusal: Refusal, next: NextFunction) => unknown) | undefined
}

/**
 * The answer to a refusal, by kind: for a user at its limit the seed's text with `n` = the
 * slots the user holds.
 *
 * @since 0.1.0
 */
export const defaultReplyText = (refusal: Refusal): string => {
  switch (refusal._tag) {
    case "QueueFull":
      return refusal.reason === "user"
        ? `Please wait! You already have ${refusal.active} videos processing. Try again in a moment.`
        : "The bot is busy right now. Try again in a moment."
    case "QueueShutdown":
      return "The bot is restarting. Try again in a moment."
    case "StoreUnavailable":
      return "The bot is busy right now. Try again in a moment."
    case "MissingUserKey":
      return "Sorry, I cannot tell who sent this."
  }
}

/**
 * Inline queries and chosen inline results: the updates the original bot let through with
 * bypass (they are counted, but never refused by the per-user limit).
 *
 * @since 0.1.0
 */
export const isInline = (ctx: Context): boolean => ctx.inlineQuery !== undefined || ctx.chosenInlineResult !== undefined

/**
 * The original bot's key: the sender for inline updates (they have no chat), otherwise the
 * chat (negative for groups, so a group shares one allowance), or the sender when there is
 * no chat (e.g. a callback query from an inline message).
 *
 * @since 0.1.0
 */
export const defaultKey = (ctx: Context): QueueManager.UserId | undefined =>
  isInline(ctx) ? ctx.from?.id : (ctx.chat?.id ?? ctx.from?.id)

/**
 * Whether an update comes from a private chat: only those get a refusal reply by default, so
 * a busy group is not flooded with "Please wait!".
 *
 * @since 0.1.0
 */
export const isPrivateChat = (ctx: Context): boolean => ctx.chat?.type === "private"

const module = "effect-queue-manager/Grammy"

/** How running an update inside a slot can fail: refused, or its slot lost while the update ran. */
type Failure = Refusal | QueueManager.LeaseLost

const refusals: ReadonlySet<unknown> = new Set<Refusal["_tag"]>([
  "QueueFull",
  "QueueShutdown",
  "StoreUnavailable",
  "MissingUserKey"
])

/** Whether a failure is a refusal (not a lost lease, nor the error of a layer that failed to build). */
const isRefusal = (failure: unknown): failure is Refusal =>
  typeof failure === "object" && failure !== null && refusals.has((failure as { readonly _tag?: unknown })._tag)

/**
 * The middleware, running on an Effect runtime the bot already has — a `ManagedRuntime`
 * or a `Runtime` — that provides the `QueueManager`. The rest of the chain (`next()`) runs
 * inside the update's slot, released when it settles however it settles; its errors reach
 * grammY unchanged. A refused update goes to `onRefused` (by default a reply, one per chat per
 * `replyCooldown`), not to `next()`. With the Redis store, a slot
 * whose lease is lost while the chain runs stays counted until the chain settles, and the
 * middleware then throws `LeaseLost`. When the runtime is disposed (the Redis store's closing
 * stops holders and waiters), an update whose chain had fulfilled ends as handled, and one not
 * yet started goes to `onRefused` with `QueueShutdown`. Throws an `IllegalArgumentException`
 * naming the option and the value when an option is invalid.
 *
 * The limit counts updates handled at the same time: with `bot.start()` grammY handles one
 * update after the other, so use webhooks or a concurrent runner (`@grammyjs/runner`).
 *
 * @example
 * ```ts
 * bot.use(QueueGrammy.middleware(runtime, { replyWhen: () => true, key: (ctx) => ctx.from?.id }))
 * ```
 * @since 0.1.0
 */
export const middleware = <C extends Context = Context>(
  runtime: QueueRuntime,
  options: Options<C> = {}
): MiddlewareFn<C> => {
  if (typeof options !== "object" || options === null) badOption(module, "options", "an object", options)
  for (const name of ["key", "bypass", "replyText", "replyWhen", "onRefused"] as const) {
    checkFunction(module, name, options[name])
  }
  const cooldown = options.replyCooldown ?? 5000
  if (!Number.isSafeInteger(cooldown) || cooldown < 0) {
    badOption(module, "replyCooldown", "whole milliseconds >= 0", options.replyCooldown)
  }
  const rule = checkRule(module, options.onMissingKey) ?? "allow"
  // a layer that fails to build rejects every update's handling, and grammY gets that error
  const { run } = makeRunner(module, runtime)
  const { key = defaultKey, bypass = isInline, replyText = defaultReplyText, replyWhen = isPrivateChat } = options
  const alwaysBypass = options.slotOptions?.bypassUserLimit === true
  const replied = makeCooldown(cooldown)
  const onRefused =
    options.onRefused ??
    (async (ctx: C, refusal: Refusal) => {
      // an update without a chat (an inline query) has nowhere to be answered
      if (ctx.chat !== undefined && replyWhen(ctx) && replied.take(ctx.chat.id)) {
        await ctx.reply(replyText(refusal, ctx))
      }
    })

  return async (ctx, next) => {
    const decision = decide(rule, key(ctx))
    if (decision._tag === "Pass") return next()
    // the slot stays counted until the rest of the chain has settled, and a lease lost meanwhile
    // (Redis) is reported after it
    const chain = unstoppable(next)
    const guarded: Effect.Effect<void, Failure, QueueManager.QueueManager> =
      decision._tag === "Refuse"
        ? Effect.fail(decision.error)
        : Effect.flatMap(QueueManager.QueueManager, (queue) =>
            queue.withSlot(decision.userId, { ...options.slotOptions, bypassUserLimit: alwaysBypass || bypass(ctx) })(
              chain.effect
            )
          )
    const exit = await run(guarded)
    if (Exit.isSuccess(exit)) return
    // interrupted only: the manager closed with its runtime (disposed) while the update was on
    // its way; handled by then, it is done, otherwise it is refused as a shutdown refuses
    if (Cause.isInterruptedOnly(exit.cause) && decision._tag === "Slot") {
      if (chain.fulfilled() !== undefined) return
      return onRefused(ctx, new QueueManager.QueueShutdown({ userId: decision.userId }), next)
    }
    const refusal = Cause.failureOption(exit.cause)
    // a defect is an error of the rest of the chain, and a lost lease (Redis) comes after the
    // handling started: grammY gets them as they were
    if (Option.isNone(refusal) || !isRefusal(refusal.value)) throw Cause.squash(exit.cause)
    await onRefused(ctx, refusal.value, next)
  }
}

/**
 * Which chats may get a refusal reply now: one per chat per `millis`. Entries of chats whose
 * cooldown ended are swept out as the map grows, so it holds about the chats refused lately.
 */
const makeCooldown = (millis: number) => {
  const until = new Map<number, number>()
  let sweepAt = 1024
  return {
    /** Whether `chatId` may be replied to now; if so, it may not again for `millis`. */
    take: (chatId: number): boolean => {
      if (millis === 0) return true
      const now = performance.now()
      if ((until.get(chatId) ?? 0) > now) return false
      until.set(chatId, now + millis)
      if (until.size >= sweepAt) {
        for (const [chat, end] of until) if (end <= now) until.delete(chat)
        sweepAt = Math.max(1024, 2 * until.size)
      }
      return true
    }
  }
}

/**
 * The middleware on the runtime of the current Effect program, for bots set up inside one.
 *
 * @example
 * ```ts
 * const program = Effect.gen(function* () {
 *   bot.use(yield* QueueGrammy.make())
 *   ...
 * }).pipe(Effect.provide(QueueManager.layerConfig()))
 * ```
 * @since 0.1.0
 */
export const make = <C extends Context = Context>(
  options?: Options<C>
): Effect.Effect<MiddlewareFn<C>, never, QueueManager.QueueManager> =>
  Effect.map(Effect.runtime<QueueManager.QueueManager>(), (runtime) => middleware(runtime, options))
