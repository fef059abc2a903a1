/** Telegram updates as the Bot API sends them, and the seed's reply, for the grammY tests. */
import type { Update } from "grammy/types"

/** The seed's answer to a private chat over its limit of `n`. */
export const seedReply = (n: number) => `Please wait! You already have ${n} videos processing. Try again in a moment.`

let nextUpdateId = 1
const user = (id: number) => ({ id, is_bot: false, first_name: `user ${id}` })
/** A text message (a link by default) from `from` in `chat`. */
export const message = (
  chat: { id: number; type: "private" | "group" },
  from: number,
  text = "https://example.com/v"
): Update => ({
  update_id: nextUpdateId++,
  message: {
    message_id: nextUpdateId,
    date: 0,
    chat:
      chat.type === "private"
        ? { id: chat.id, type: "private", first_name: "x" }
        : { ...chat, type: "group", title: "g" },
    from: user(from),
    text
  }
})
/** A link sent in a private chat. */
export const privateMessage = (chatId: number) => message({ id: chatId, type: "private" }, chatId)
/** A link sent by `from` in a group. */
export const groupMessage = (groupId: number, from: number) => message({ id: groupId, type: "group" }, from)
/** An inline query from `from` (no chat). */
export const inlineQuery = (from: number): Update => ({
  update_id: nextUpdateId++,
  inline_query: { id: `q${nextUpdateId}`, from: user(from), query: "cats", offset: "" }
})
/** A chosen inline result from `from` (no chat). */
export const chosenInlineResult = (from: number): Update => ({
  update_id: nextUpdateId++,
  chosen_inline_result: { result_id: "r", from: user(from), query: "cats" }
})
/** A poll update: neither a chat nor a sender. */
export const pollUpdate = (): Update => ({
  update_id: nextUpdateId++,
  poll: {
    id: "p",
    question: "?",
    options: [],
    total_voter_count: 0,
    is_closed: false,
    is_anonymous: true,
    type: "regular",
    allows_multiple_answers: false,
    allows_revoting: false,
    members_only: false
  }
})
