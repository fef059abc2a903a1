/**
 * `npm run example:telegram`: the downloader bot this library comes from, on grammY. Send it a
 * link and it "downloads" it (simulated: it waits `DOWNLOAD_SECONDS`, default 5); each chat may
 * have `MAX_USER_QUEUE_SIZE` (default 3) downloads at once — a group shares one allowance — and
 * a private chat over the limit is told "Please wait! You already have {n} videos processing.
 * Try again in a moment."; inline queries and chosen inline results bypass the limit.
 *
 * - `BOT_TOKEN` (required): the token from @BotFather. Without it the example prints how to get
 *   one and exits with code 1.
 * - `TELEGRAM_API_ROOT` (optional): a Bot API server other than https://api.telegram.org, e.g.
 *   a self-hosted one.
 *
 * Stop it with Ctrl+C (exit code 0).
 */
import { Config, Duration, Effect, ManagedRuntime } from "effect"
import { Bot } from "grammy"
import * as QueueGrammy from "../src/Grammy.js"
import { QueueManager } from "../src/index.js"

const token = process.env.BOT_TOKEN?.trim()
if (token === undefined || token === "") {
  console.error(
    "BOT_TOKEN is not set. Create a bot with @BotFather on Telegram, then run:\n  BOT_TOKEN=123456:ABC-DEF npm run example:telegram"
  )
  process.exit(1)
}

// the Effect runtime of the bot: the QueueManager (MAX_USER_QUEUE_SIZE) is built once, here
const runtime = ManagedRuntime.make(QueueManager.layerConfig())
const downloadTime = Config.number("DOWNLOAD_SECONDS").pipe(Config.withDefault(5), Config.map(Duration.seconds))

/** The stand-in for the real download: takes `DOWNLOAD_SECONDS`. */
const download = (url: string) => runtime.runPromise(Effect.flatMap(downloadTime, Effect.sleep).pipe(Effect.as(url)))

const apiRoot = process.env.TELEGRAM_API_ROOT
const bot = new Bot(token, apiRoot ? { client: { apiRoot } } : {})
const perChat = QueueGrammy.middleware(runtime)

bot.hears(/https?:\/\/\S+/, perChat, async (ctx) => {
  const url = ctx.match[0]
  await ctx.reply(`Downloading ${url} …`)
  await download(url)
  await ctx.reply(`Done: ${url} (simulated)`)
})

bot.on("inline_query", perChat, (ctx) =>
  ctx.answerInlineQuery([
    {
      type: "article",
      id: "download",
      title: `Download ${ctx.inlineQuery.query || "a video"}`,
      input_message_content: { message_text: `Downloading ${ctx.inlineQuery.query} …` }
    }
  ])
)

bot.on("chosen_inline_result", perChat, async (ctx) => {
  await download(ctx.chosenInlineResult.query)
})

bot.on("message:text", (ctx) => ctx.reply("Send me a link to a video."))

bot.catch((error) => console.error(`update ${error.ctx.update.update_id} failed:`, error.error))

/**
 * Long polling that handles updates as they arrive. grammY's `bot.start()` handles one update
 * after the other, so no chat could ever have two downloads at once; in a real bot use
 * `run(bot)` from `@grammyjs/runner`, or webhooks.
 */
const poll = async (signal: AbortSignal) => {
  await bot.init()
  await bot.api.deleteWebhook()
  console.log(`@${bot.botInfo.username} is running. Press Ctrl+C to stop.`)
  let offset = 0
  while (!signal.aborted) {
    // grammY types its signal with the abort-controller shim; the platform's is the same at runtime
    const updates = await bot.api.getUpdates({ offset, timeout: 30 }, signal as never).catch((error: unknown) => {
      if (signal.aborted) return []
      throw error
    })
    for (const update of updates) {
      offset = update.update_id + 1
      void bot.handleUpdate(update).catch(() => {}) // bot.catch has reported it
    }
  }
}

const stop = new AbortController()
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => stop.abort())

poll(stop.signal)
  .then(() => runtime.dispose())
  .then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(String(error))
      process.exit(1)
    }
  )
