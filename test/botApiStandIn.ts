import { Effect } from "effect"
import { createServer } from "node:http"
import type { ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import type { Update, UserFromGetMe } from "grammy/types"

/** One Bot API call the stand-in received. */
export interface Call {
  readonly method: string
  readonly payload: Record<string, unknown>
}

export interface BotApi {
  /** What to give a `Bot` as `client.apiRoot`. */
  readonly apiRoot: string
  /** Every call received so far, in order. */
  readonly calls: ReadonlyArray<Call>
  /** The calls of one method. */
  readonly callsOf: (method: string) => ReadonlyArray<Call>
  /** Waits until `count` calls of `method` have been received; gives them. */
  readonly waitForCalls: (method: string, count: number) => Effect.Effect<ReadonlyArray<Call>>
  /** Queues updates for `getUpdates` (long polling). */
  readonly pushUpdates: (...updates: ReadonlyArray<Update>) => void
  /** While down, every call (and every poll held open) is answered `502 Bad Gateway`. */
  readonly setDown: (down: boolean) => void
}

export const botInfo: UserFromGetMe = {
  id: 42,
  is_bot: true,
  first_name: "Downloader",
  username: "downloader_bot",
  can_join_groups: true,
  can_read_all_group_messages: false,
  supports_inline_queries: true,
  can_connect_to_business: false,
  has_main_web_app: false,
  has_topics_enabled: false,
  allows_users_to_create_topics: false,
  can_manage_bots: false,
  supports_join_request_queries: false
}

/**
 * A stand-in for the Telegram Bot API on a free loopback port: a real HTTP server that records
 * each `POST /bot<token>/<method>` with its JSON body and answers `{ ok: true, result }` — the
 * bot for `getMe`, a message for `sendMessage`, queued updates for `getUpdates` (held open
 * until there are some, like Telegram's long polling), `true` otherwise. Closed with the scope.
 */
export const startBotApi: Effect.Effect<BotApi, never, import("effect").Scope.Scope> = Effect.gen(function* () {
  const calls: Array<Call> = []
  const updates: Array<Update> = []
  const waiting = new Set<() => void>()
  const polls = new Set<ServerResponse>()
  const notify = () => waiting.forEach((f) => f())
  let messageId = 0
  let down = false

  const badGateway = (response: ServerResponse) => {
    response.writeHead(502, { "content-type": "application/json" })
    response.end(JSON.stringify({ ok: false, error_code: 502, description: "Bad Gateway" }))
  }

  const answer = (response: ServerResponse, result: unknown) => {
    response.writeHead(200, { "content-type": "application/json" })
    response.end(JSON.stringify({ ok: true, result }))
  }

  const getUpdates = (payload: Record<string, unknown>, response: ServerResponse) => {
    const offset = typeof payload.offset === "number" ? payload.offset : 0
    const ready = () => updates.filter((u) => u.update_id >= offset)
    if (ready().length > 0 || payload.timeout === 0) return answer(response, ready())
    polls.add(response)
    const check = () => {
      if (ready().length === 0) return
      waiting.delete(check)
      polls.delete(response)
      answer(response, ready())
    }
    waiting.add(check)
    response.on("close", () => (waiting.delete(check), polls.delete(response)))
  }

  const server = createServer((request, response) => {
    let body = ""
    request.on("data", (chunk: Buffer) => (body += chunk.toString()))
    request.on("end", () => {
      const method = request.url?.split("/").at(-1) ?? ""
      const payload = body === "" ? {} : (JSON.parse(body) as Record<string, unknown>)
      calls.push({ method, payload })
      notify()
      if (down) return badGateway(response)
      if (method === "getMe") return answer(response, botInfo)
      if (method === "getUpdates") return getUpdates(payload, response)
      if (method !== "sendMessage") return answer(response, true)
      answer(response, {
        message_id: ++messageId,
        date: Math.floor(Date.now() / 1000),
        chat: { id: payload.chat_id, type: "private", first_name: "someone" },
        text: payload.text
      })
    })
  })

  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () =>
      Effect.async<void>((resume) => {
        polls.forEach((response) => answer(response, []))
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )
  const { port } = server.address() as AddressInfo
  const callsOf = (method: string) => calls.filter((call) => call.method === method)

  return {
    apiRoot: `http://127.0.0.1:${port}`,
    calls,
    callsOf,
    waitForCalls: (method, count) =>
      Effect.async<ReadonlyArray<Call>>((resume) => {
        const check = () => {
          if (callsOf(method).length < count) return
          waiting.delete(check)
          resume(Effect.succeed(callsOf(method)))
        }
        waiting.add(check)
        check()
        return Effect.sync(() => waiting.delete(check))
      }),
    pushUpdates: (...pushed) => {
      updates.push(...pushed)
      notify()
    },
    setDown: (now) => {
      down = now
      if (!down) return
      for (const response of polls) badGateway(response)
      polls.clear()
    }
  }
})
