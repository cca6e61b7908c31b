"""The conversation a judged answer continues, as the LLM judges show it (MT-Bench's multi-turn prompts).

A chat request's ``messages`` hold the whole conversation so far: system (or developer) messages, earlier user and
assistant turns, tool calls and results, then the user's last message, which the sampled answer replies to.
:attr:`llmops.sample.Sample.question` is only that last user message: for a second turn such as "Rewrite your previous
response. Start every sentence with the letter A." a judge shown that one line and the answer judges blind. So when a
request **has earlier turns** (any user, assistant or tool message besides its last user message) the judges use
their multi-turn prompts, which show the whole conversation, system message included, and grade the answer to the
last user message (:func:`has_history`, :func:`render`).

Rendering: each message is one block, ``[The Start of Message 3 (Assistant)]`` ... ``[The End of Message 3
(Assistant)]``, its text defused (:func:`monitors.judges.prompting.defuse`), so no message can close its block or
fake another turn. Roles are shown from a fixed set (System, User, Assistant, Tool; anything else is "Other"); an
assistant turn that called tools shows the calls (name and arguments). Long conversations are cut to fit the judge
model: each message to :data:`MAX_MESSAGE_CHARS` (head and tail kept), and then the oldest turns are left out (with a
note saying how many) until the rendering fits :data:`MAX_CONVERSATION_CHARS`; system messages and the last user
message (with what follows it) are always kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.sample import Sample, content_text
from monitors.judges.prompting import defuse

#: One message's text is cut to this many characters (its head and tail kept).
MAX_MESSAGE_CHARS = 6000
#: The whole rendered conversation is kept under about this many characters by leaving out the oldest turns.
MAX_CONVERSATION_CHARS = 24000

_ROLES = {
    "system": "System",
    "developer": "System",
    "user": "User",
    "assistant": "Assistant",
    "tool": "Tool",
    "function": "Tool",
}


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation: ``role`` is one of System, User, Assistant, Tool, Other."""

    role: str
    text: str


def messages(sample: Sample) -> list[Message]:
    """The request's chat messages in order (empty for a completions request)."""
    raw = sample.request.get("messages")
    if not isinstance(raw, list):
        return []
    out = []
    for message in raw:
        if not isinstance(message, dict):
            continue
        role = _ROLES.get(str(message.get("role")), "Other")
        text = content_text(message.get("content"))
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            text = "\n".join(filter(None, [text, *(_call(c) for c in calls)]))
        out.append(Message(role, text))
    return out


def _call(call: Any) -> str:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return ""
    return f"(calls tool {function.get('name')!s} with arguments {function.get('arguments', '')!s})"


def _last_user(items: list[Message]) -> int:
    for i in range(len(items) - 1, -1, -1):
        if items[i].role == "User":
            return i
    return -1


def has_history(sample: Sample) -> bool:
    """Whether the request has earlier turns: a user, assistant, tool (or other) message besides its last user
    message. System messages alone do not count (a single-turn request with a system prompt stays single-turn)."""
    items = messages(sample)
    return sum(1 for m in items if m.role != "System") > 1


def history_key(sample: Sample) -> list[tuple[str, str]]:
    """What must be equal for two samples to answer the same conversation (the pairwise judge compares those)."""
    return [(m.role, m.text) for m in messages(sample)]


def _cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = (limit - 40) // 2
    return f"{text[:half]}\n… [{len(text) - 2 * half} characters left out] …\n{text[-half:]}"


def _block(number: int, message: Message) -> str:
    label = f"Message {number} ({message.role})"
    return f"[The Start of {label}]\n{defuse(_cut(message.text))}\n[The End of {label}]"


def render(sample: Sample, limit: int = MAX_CONVERSATION_CHARS) -> str:
    """The conversation as numbered, defused message blocks (a value to pass as ``raw``), cut to about ``limit``."""
    items = messages(sample)
    last_user = _last_user(items)
    blocks = [(i, m, _block(i + 1, m)) for i, m in enumerate(items)]
    kept = list(blocks)
    dropped = 0
    # the oldest droppable turn goes first: not a system message, not the last user message or what follows it
    while sum(len(b) for _, _, b in kept) > limit:
        victim = next((k for k, (i, m, _) in enumerate(kept) if m.role != "System" and i < last_user), None)
        if victim is None:
            break
        del kept[victim]
        dropped += 1
    parts = [b for _, _, b in kept]
    if dropped:
        first_kept = next((k for k, (i, m, _) in enumerate(kept) if m.role != "System"), len(kept))
        parts.insert(first_kept, f"({dropped} earlier message{'s' if dropped > 1 else ''} left out for length)")
    return "\n\n".join(parts)


def summary(sample: Sample) -> dict[str, Any]:
    """What results record about the conversation judged: message count and roles (not the texts)."""
    items = messages(sample)
    return {"messages": len(items), "roles": [m.role for m in items]}
