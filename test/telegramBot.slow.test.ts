/**
 * `npm run example:telegram` (examples/telegram-bot.ts) as a process, against a stand-in Bot
 * API server: what it answers, how it stops, how it lives through Bot API errors. In the slow
 * suite: each test starts a process.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { startBotApi } from "./botApiStandIn.js"
import { runExample } from "./exampleProcess.js"
import { groupMessage, inlineQuery, message, seedReply } from "./telegramUpdates.js"

describe("the example bot (npm run example:telegram)", () => {
  it.scopedLive("downloads links per chat against a Bot API server; replies to a refusal in a private chat", () =>
    Effect.gen(function* () {
      const api = yield* startBotApi
      const link = (chatId: number, url: string) => message({ id: chatId, type: "private" }, chatId, url)
      api.pushUpdates(
        link(7, "https://example.com/a"),
        link(7, "https://example.com/b"),
        inlineQuery(7),
        groupMessage(-100, 1),
        groupMessage(-100, 2),
        message({ id: 8, type: "private" }, 8, "hello")
      )
      const example = yield* runExample("examples/telegram-bot.ts", {
        BOT_TOKEN: "42:TEST",
        TELEGRAM_API_ROOT: api.apiRoot,
        MAX_USER_QUEUE_SIZE: "1",
        // long enough for the second link to find the slot taken; SIGTERM then waits for it
        DOWNLOAD_SECONDS: "3"
      })
      yield* example.waitFor(/@downloader_bot is running/)

      const sent = yield* api.waitForCalls("sendMessage", 4)
      expect(sent.map((c) => `${c.payload.chat_id}: ${c.payload.text}`).sort()).toEqual([
        "-100: Downloading https://example.com/v …",
        // the two links of chat 7 arrive together: either one gets the slot
        expect.stringMatching(/^7: Downloading https:\/\/example\.com\/[ab] …$/),
        `7: ${seedReply(1)}`,
        "8: Send me a link to a video."
      ])
      // chat 7 is at its limit, but the inline query bypasses it
      const [answered] = yield* api.waitForCalls("answerInlineQuery", 1)
      expect(answered?.payload).toMatchObject({ results: [{ title: "Download cats" }] })

      example.child.kill("SIGTERM")
      expect(yield* example.exited).toBe(0)
    })
  )

  it.scopedLive("on SIGTERM the download running finishes and replies before the process exits", () =>
    Effect.gen(function* () {
      const api = yield* startBotApi
      const example = yield* runExample("examples/telegram-bot.ts", {
        BOT_TOKEN: "42:TEST",
        TELEGRAM_API_ROOT: api.apiRoot,
        DOWNLOAD_SECONDS: "1"
      })
      yield* example.waitFor(/@downloader_bot is running/)
      api.pushUpdates(message({ id: 7, type: "private" }, 7, "https://example.com/long"))
      yield* api.waitForCalls("sendMessage", 1) // "Downloading …": the download runs
      example.child.kill("SIGTERM")
      expect(yield* example.exited).toBe(0)
      expect(api.callsOf("sendMessage").map((c) => c.payload.text)).toEqual([
        "Downloading https://example.com/long …",
        "Done: https://example.com/long (simulated)"
      ])
    })
  )

  it.scopedLive("survives a Bot API answering 502, and stops on Ctrl+C while it cannot be reached", () =>
    Effect.gen(function* () {
      const api = yield* startBotApi
      const example = yield* runExample("examples/telegram-bot.ts", {
        BOT_TOKEN: "42:TEST",
        TELEGRAM_API_ROOT: api.apiRoot,
        DOWNLOAD_SECONDS: "0"
      })
      yield* example.waitFor(/@downloader_bot is running/)
      // the long poll is answered 502, and so is every call for a while: the bot keeps trying
      api.setDown(true)
      const polls = api.callsOf("getUpdates").length
      yield* api.waitForCalls("getUpdates", polls + 2)
      api.setDown(false)
      api.pushUpdates(message({ id: 9, type: "private" }, 9, "https://example.com/after"))
      const sent = yield* api.waitForCalls("sendMessage", 1)
      expect(sent[0]!.payload.text).toBe("Downloading https://example.com/after …")
      expect(example.child.exitCode).toBeNull()

      // down again, for good: Ctrl+C still stops it at once
      api.setDown(true)
      const polled = api.callsOf("getUpdates").length
      yield* api.waitForCalls("getUpdates", polled + 1)
      example.child.kill("SIGINT")
      expect(yield* example.exited).toBe(0)
    })
  )

  it.scopedLive("started while the Bot API cannot be reached, it keeps trying, and Ctrl+C stops it", () =>
    Effect.gen(function* () {
      const api = yield* startBotApi
      api.setDown(true)
      const example = yield* runExample("examples/telegram-bot.ts", {
        BOT_TOKEN: "42:TEST",
        TELEGRAM_API_ROOT: api.apiRoot
      })
      yield* example.waitFor(/The Bot API does not answer yet; still trying/)
      yield* api.waitForCalls("getMe", 2)
      example.child.kill("SIGINT")
      expect(yield* example.exited).toBe(0)
    })
  )

  it.scopedLive("a bad MAX_USER_QUEUE_SIZE stops it at start, before the Bot API is called, saying which", () =>
    Effect.gen(function* () {
      const api = yield* startBotApi
      const example = yield* runExample("examples/telegram-bot.ts", {
        BOT_TOKEN: "42:TEST",
        TELEGRAM_API_ROOT: api.apiRoot,
        MAX_USER_QUEUE_SIZE: "-1"
      })
      expect(yield* example.exited).toBe(1)
      expect(example.output()).toBe(
        'bad configuration:\nMAX_USER_QUEUE_SIZE must be a whole number >= 0 (0 = no limit), got "-1"\n'
      )
      expect(api.calls).toEqual([])
    })
  )

  it.live("without BOT_TOKEN prints what to do and exits with code 1", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const example = yield* runExample("examples/telegram-bot.ts", { BOT_TOKEN: "" })
        expect(yield* example.exited).toBe(1)
        expect(example.output()).toContain("BOT_TOKEN is not set")
      })
    )
  )
})
