/**
 * The model of the bot's own TypeScript rewrite, configured as this library: each chat runs its
 * requests one at a time, first in first out; a chat has at most 3 requests counting queued and
 * running (private chats) or 10 (groups); at most 25 run across all chats, which are served
 * round-robin; a handler asks why a request would be refused before starting any work, to word
 * its reply; shutdown refuses what is queued and lets what runs finish (`drain`).
 * `npx tsx examples/sequential-chats.ts` runs a short burst on the in-memory store, with
 * `REDIS_URL` set on Redis.
 */
import { Console, Effect, Option } from "effect"
import { QueueManager } from "../src/index.js"
import * as RedisStore from "../src/RedisStore.js"
import { runMain } from "./main.js"

/** Telegram group chats have negative ids. */
export const isGroup = (chatId: QueueManager.UserId) => typeof chatId === "number" && chatId < 0

/** The rewrite's limits: one running per chat; 3 queued + running in a private chat, 10 in a group; 25 running in all. */
export const sequentialChats: QueueManager.Options = {
  maxUserQueue: 1,
  maxTotal: 25,
  userLimit: (chatId) => (isGroup(chatId) ? { running: 1, waiting: 9 } : { running: 1, waiting: 2 })
}

/** The reply to a refusal, worded from its reason (the rewrite's `rejectionReason`). */
export const wording = (refusal: QueueManager.QueueFull | QueueManager.QueueShutdown): string => {
  if (refusal._tag === "QueueShutdown") return "The bot is restarting. Try again in a minute."
  switch (refusal.reason) {
    case "waiting":
      return `You already have ${refusal.active} requests queued. Wait for them to finish.`
    case "user":
      return "Your previous request is still running."
    case "global":
      return "The bot is busy right now. Try again in a moment."
  }
}

const isRefusal = (error: unknown): error is QueueManager.QueueFull | QueueManager.QueueShutdown =>
  error instanceof QueueManager.QueueFull || error instanceof QueueManager.QueueShutdown

/**
 * One request of `chatId`: asks first whether it would be refused (and replies with why, doing
 * no work), then waits its turn and runs `job`. The check is advisory, so a refusal of the
 * acquisition itself is replied to alike. `Some` of the job's result, or `None` when refused.
 */
export const handle = <A, E, R>(
  chatId: QueueManager.UserId,
  job: Effect.Effect<A, E, R>,
  reply: (text: string) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const queue = yield* QueueManager.QueueManager
    const refusal = yield* queue.check(chatId, { onFull: "wait" })
    if (Option.isSome(refusal)) {
      yield* reply(wording(refusal.value))
      return Option.none<A>()
    }
    const { active, waiting } = yield* queue.status(chatId)
    if (active + waiting > 0) yield* reply(`Queued behind ${active + waiting} of your requests.`)
    return yield* queue
      .withSlot(chatId, { onFull: "wait" })(Effect.map(job, Option.some))
      .pipe(Effect.catchIf(isRefusal, (refusal) => Effect.as(reply(wording(refusal)), Option.none<A>())))
  })

/** A burst: four private chats and a group each send more requests than they may have. */
const burst = Effect.gen(function* () {
  const chats = [1, 2, 3, 4, -100]
  const replies: Array<string> = []
  const results = yield* Effect.forEach(
    chats.flatMap((chatId) => Array.from({ length: isGroup(chatId) ? 12 : 4 }, (_, i) => [chatId, i] as const)),
    ([chatId, i]) =>
      handle(chatId, Effect.as(Effect.sleep("20 millis"), `chat ${chatId} #${i}`), (text) =>
        Effect.sync(() => replies.push(`chat ${chatId}: ${text}`))
      ),
    { concurrency: "unbounded" }
  )
  yield* Console.log(`${results.filter(Option.isSome).length} requests ran, ${results.length} were sent`)
  yield* Console.log(replies.filter((text) => !text.includes("Queued")).join("\n"))
  yield* Effect.flatMap(QueueManager.QueueManager, (queue) => queue.drain)
})

const main = burst.pipe(
  Effect.provide(
    process.env["REDIS_URL"]
      ? RedisStore.layer({ ...sequentialChats, redis: process.env["REDIS_URL"], prefix: "sequential-chats" })
      : QueueManager.layer(sequentialChats)
  )
)

if (import.meta.url === `file://${process.argv[1]}`) runMain(main)
