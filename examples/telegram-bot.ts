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
 * Updates are handled concurrently by `@grammyjs/runner`. It survives a Bot API that cannot be
 * reached (it keeps trying), and stops with Ctrl+C or SIGTERM (exit code 0) after the downloads
 * running have finished and replied, also while the Bot API cannot be reached.
 */
import { run } from "@grammyjs/runner"
import { Config, Duration, Effect, Exit, ManagedRuntime } from "effect"
import { Bot } from "grammy"
import * as QueueGrammy from "../src/Grammy.js"
import { QueueManager } from "../src/index.js"
import { describeFailure } from "./main.js"

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

const sleep = (millis: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, millis)
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true })
  })

/**
 * Reaches the Bot API (who the bot is, no webhook in the way), trying again while it cannot be
 * reached (grammY's `init` itself retries a 5xx or a network failure) until `signal` says stop;
 * false if it was stopped first.
 */
const reachApi = async (signal: AbortSignal) => {
  const slow = setTimeout(() => console.error("The Bot API does not answer yet; still trying (Ctrl+C stops)."), 2000)
  try {
    for (let delay = 500; !signal.aborted; delay = Math.min(2 * delay, 10_000)) {
      try {
        // grammY types its signal with the abort-controller shim; the platform's is the same at runtime
        await bot.init(signal as never)
        await bot.api.deleteWebhook(undefined, signal as never)
        return true
      } catch (error) {
        if (signal.aborted) break
        console.error(`The Bot API refused to start the bot (${String(error)}); trying again in ${delay / 1000} s`)
        await sleep(delay, signal)
      }
    }
    return false
  } finally {
    clearTimeout(slow)
  }
}

/**
 * Stopping (Ctrl+C, SIGTERM from a process manager): no new updates are fetched, updates that
 * are queued for a slot are refused, and the downloads running finish and reply before the
 * process exits (`drain`). The runner is not waited for: while the Bot API cannot be reached
 * it may be sleeping between retries. A second signal exits at once.
 */
const stopping = new AbortController()
const stop = async (runner?: ReturnType<typeof run>) => {
  if (runner?.isRunning()) void runner.stop()
  await runtime.runPromise(Effect.flatMap(QueueManager.QueueManager, (queue) => queue.drain))
  await runtime.dispose()
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping.signal.aborted) process.exit(130)
    stopping.abort()
  })
}

const main = async () => {
  // the runtime is built before the bot starts, so a bad setting stops it at once, saying which
  const built = await runtime.runPromiseExit(Effect.void)
  if (Exit.isFailure(built)) {
    console.error(describeFailure(built.cause))
    process.exit(1)
  }
  if (!(await reachApi(stopping.signal))) return stop()
  // updates are handled concurrently (grammY's bot.start() would handle one after the other, so
  // no chat could ever have two downloads at once); the runner retries getUpdates on Bot API
  // errors and network failures, and stops on 401 (a wrong token) and 409 (another instance)
  const runner = run(bot)
  console.log(`@${bot.botInfo.username} is running. Press Ctrl+C to stop.`)
  const crashed = runner.task()?.then(
    () => undefined,
    (error: unknown) => error
  )
  const stopped = new Promise<void>((resolve) => stopping.signal.addEventListener("abort", () => resolve()))
  const ended = await Promise.race([crashed, stopped])
  await stop(runner)
  if (ended !== undefined) throw ended
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(String(error))
    process.exit(1)
  }
)
