"""OpenAI's Responses API spoken by clients (``POST /v1/responses``), for deployments that do not serve it (chat-only
hosts, Anthropic): the request becomes a chat completions request, the answer (unary or streamed) a response again.

Request (Responses → chat): ``instructions`` → a leading ``system`` message; ``input`` as a string (one user
message) or items: messages with a role (``user``, ``assistant``, ``system``, ``developer``) and ``input_text`` /
``output_text`` / ``input_image`` parts, ``function_call`` items (→ an assistant message's ``tool_calls``, consecutive
calls merged) and ``function_call_output`` items (→ ``tool`` messages); ``reasoning`` items are dropped. ``tools``
(function tools) and ``tool_choice``, ``text.format`` (``json_schema`` / ``json_object``) → ``response_format``,
``max_output_tokens`` → ``max_tokens``, ``temperature``, ``top_p``, ``parallel_tool_calls``, ``user``,
``reasoning.effort`` → ``reasoning_effort``, ``stream``. The gateway keeps no state: ``previous_response_id`` is
refused with a 400 (send the whole conversation as ``input``), and the answer says ``store: false``. Built-in tools
(web search, file search, computer use, ...) are refused by name.

Response (chat → Responses): a ``message`` item with one ``output_text`` part, one ``function_call`` item per tool
call, ``status`` ``completed`` (``incomplete`` with ``max_output_tokens`` when the answer was cut), ``usage``
(``input_tokens``, ``input_tokens_details.cached_tokens``, ``output_tokens``, ``output_tokens_details``,
``total_tokens``). Streamed: ``response.created``, ``response.in_progress``, then per item
``response.output_item.added``, (``response.content_part.added``, ``response.output_text.delta`` …,
``response.output_text.done``, ``response.content_part.done``) or (``response.function_call_arguments.delta`` …,
``.done``), ``response.output_item.done``, and ``response.completed`` with the usage; every event numbered
(``sequence_number``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from gateway.errors import GatewayError, bad_request
from gateway.inbound.chat_chunks import ChatChunkReader

_ROLES = ("user", "assistant", "system", "developer")


def check_request(payload: dict[str, Any]) -> None:
    """Nothing beyond ``input``, which the gateway checks for every route."""


def _content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"'{where}.content' must be a string or a list of content parts.", param=where)
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            at = f"{where}.content[{position}]"
            raise bad_request(f"'{at}': content parts of type {kind!r} cannot be sent to this model.", param=at)
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _messages(items: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise bad_request(f"'{where}.role' must be one of {', '.join(_ROLES)}.", param=f"{where}.role")
            messages.append({"role": role, "content": _content(item.get("content"), where)})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind == "reasoning":
            continue
        else:
            raise bad_request(f"'{where}': items of type {kind!r} cannot be sent to this model.", param=where)
    return messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise bad_request(
                f"'tools[{index}]': built-in tools ({kind}) cannot be used with this model; use function tools.",
                param=f"tools[{index}]",
            )
        function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
        out.append({"type": "function", "function": function})
    return out


def _response_format(text: Any) -> dict[str, Any] | None:
    form = text.get("format") if isinstance(text, dict) else None
    if not isinstance(form, dict) or form.get("type") in (None, "text"):
        return None
    if form.get("type") == "json_object":
        return {"type": "json_object"}
    if form.get("type") == "json_schema":
        schema = {key: form[key] for key in ("name", "schema", "strict", "description") if key in form}
        return {"type": "json_schema", "json_schema": schema}
    raise bad_request("'text.format.type' must be 'text', 'json_object' or 'json_schema'.", param="text.format")


def to_chat_request(payload: dict[str, Any]) -> dict[str, Any]:
    """A Responses API request → an OpenAI chat request (same ``model``)."""
    if payload.get("previous_response_id") is not None:
        raise bad_request(
            "previous_response_id is not supported for this model: the gateway keeps no responses. Send the whole "
            "conversation as 'input'.",
            param="previous_response_id",
        )
    messages: list[dict[str, Any]] = []
    if isinstance(payload.get("instructions"), str) and payload["instructions"]:
        messages.append({"role": "system", "content": payload["instructions"]})
    items = payload["input"]
    messages += [{"role": "user", "content": items}] if isinstance(items, str) else _messages(items)
    chat: dict[str, Any] = {"model": payload["model"], "messages": messages}
    if payload.get("max_output_tokens") is not None:
        chat["max_tokens"] = payload["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "user", "stream", "top_logprobs"):
        if payload.get(name) is not None:
            chat[name] = payload[name]
    if payload.get("tools"):
        chat["tools"] = _tools(payload["tools"])
    choice = payload.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    response_format = _response_format(payload.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = payload.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    return chat


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def responses_usage(usage: Any) -> dict[str, Any]:
    """The Responses API's ``usage`` for an OpenAI chat ``usage`` object."""
    usage = usage if isinstance(usage, dict) else {}
    prompt, output = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out_details = usage.get("completion_tokens_details")
    reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output,
    }


def _shell(response_id: str, public_model: str, created: int) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "model": public_model,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "previous_response_id": None,
        "store": False,
        "usage": None,
        "metadata": {},
    }


def _finish(response: dict[str, Any], finish_reason: Any, usage: Any) -> dict[str, Any]:
    response["usage"] = responses_usage(usage)
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"
    return response


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part]}


def _call_item(call_id: Any, name: Any, arguments: str, status: str = "completed") -> dict[str, Any]:
    item_id = f"fc_{uuid.uuid4().hex}"
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def to_response(data: dict[str, Any], public_model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` → a Responses API ``response`` named ``public_model``."""
    choices = data.get("choices")
    choice: dict[str, Any] = (
        choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    )
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    response = _shell(_response_id(data.get("id")), public_model, _created(data.get("created")))
    if isinstance(message.get("content"), str) and message["content"]:
        response["output"].append(_message_item(f"msg_{uuid.uuid4().hex}", message["content"]))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        response["output"].append(_call_item(call.get("id"), function.get("name"), function.get("arguments") or ""))
    return _finish(response, choice.get("finish_reason"), data.get("usage"))


def _response_id(chat_id: Any) -> str:
    return f"resp_{chat_id}" if isinstance(chat_id, str) and chat_id else f"resp_{uuid.uuid4().hex}"


def _created(value: Any) -> int:
    return value if isinstance(value, int) else int(time.time())


def error_payload(error: GatewayError) -> dict[str, Any]:
    """The Responses API's errors are OpenAI's."""
    return error.body()


class ChatToResponsesStream(ChatChunkReader):
    stop_when_finished = True

    """OpenAI chat completion chunks (SSE bytes) → the Responses API's typed events (see the module docstring)."""

    def __init__(self, public_model: str) -> None:
        super().__init__()
        self.sequence = 0
        self.response: dict[str, Any] | None = None
        self.public_model = public_model
        self.text_item: dict[str, Any] | None = None  # the open message item
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool call index → its item (arguments so far)
        self.open_call: int | None = None
        self.finish_reason: Any = None

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        self.sequence += 1
        body = {"type": name, "sequence_number": self.sequence - 1, **data}
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def _finish_reason(self, reason: Any) -> None:
        self.finish_reason = reason

    def _end(self, usage: dict[str, Any] | None) -> bytes:
        return self._complete(usage)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        if self.response is not None:
            return b""
        self.response = _shell(_response_id(chunk.get("id")), self.public_model, _created(chunk.get("created")))
        return self._event("response.created", {"response": self.response}) + self._event(
            "response.in_progress", {"response": self.response}
        )

    def _index(self) -> int:
        assert self.response is not None
        return len(self.response["output"])

    def _open_text(self) -> bytes:
        self.text_item = _message_item(f"msg_{uuid.uuid4().hex}", "", "in_progress")
        self.text_item["content"] = []
        out = self._event("response.output_item.added", {"output_index": self._index(), "item": self.text_item})
        part = {"type": "output_text", "text": "", "annotations": []}
        place = {"item_id": self.text_item["id"], "output_index": self._index(), "content_index": 0}
        return out + self._event("response.content_part.added", {**place, "part": part})

    def _close_text(self) -> bytes:
        item = self.text_item
        if item is None:
            return b""
        assert self.response is not None
        self.text_item = None
        text = "".join(self.text)
        index = self._index()
        place = {"item_id": item["id"], "output_index": index, "content_index": 0}
        part = {"type": "output_text", "text": text, "annotations": []}
        done = _message_item(item["id"], text)
        self.response["output"].append(done)
        return (
            self._event("response.output_text.done", {**place, "text": text})
            + self._event("response.content_part.done", {**place, "part": part})
            + self._event("response.output_item.done", {"output_index": index, "item": done})
        )

    def _close_call(self) -> bytes:
        if self.open_call is None:
            return b""
        assert self.response is not None
        item = self.calls[self.open_call]
        self.open_call = None
        index = self._index()
        done = {**item, "status": "completed"}
        self.response["output"].append(done)
        args = {"item_id": item["id"], "output_index": index, "arguments": item["arguments"]}
        return self._event("response.function_call_arguments.done", args) + self._event(
            "response.output_item.done", {"output_index": index, "item": done}
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        out = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.text_item is None:
                out += [self._close_call(), self._open_text()]
            self.text.append(text)
            assert self.text_item is not None
            place = {"item_id": self.text_item["id"], "output_index": self._index(), "content_index": 0}
            out.append(self._event("response.output_text.delta", {**place, "delta": text}))
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            position = call.get("index", 0)
            function = call.get("function") or {}
            if position not in self.calls:
                out += [self._close_text(), self._close_call()]
                item = _call_item(call.get("id") or f"call_{uuid.uuid4().hex}", function.get("name"), "", "in_progress")
                self.calls[position] = item
                self.open_call = position
                out.append(self._event("response.output_item.added", {"output_index": self._index(), "item": item}))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments and self.open_call == position:
                item = self.calls[position]
                item["arguments"] += arguments
                place = {"item_id": item["id"], "output_index": self._index()}
                out.append(self._event("response.function_call_arguments.delta", {**place, "delta": arguments}))
        return b"".join(out)

    def _complete(self, usage: Any) -> bytes:
        self.finished = True
        out = [self._start({}), self._close_text(), self._close_call()]
        assert self.response is not None
        _finish(self.response, self.finish_reason, usage)
        name = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        out.append(self._event(name, {"response": self.response}))
        return b"".join(out)

    def _error(self, error: Any) -> bytes:
        self.finished = True
        error = error if isinstance(error, dict) else {"message": str(error)}
        code = error.get("code")
        body = {
            "code": None if code is None else str(code),
            "message": str(error.get("message") or "The upstream failed mid-stream."),
            "param": error.get("param"),
        }
        return self._event("error", body)


def usage_of(usage: Any) -> tuple[int, int, int, int] | None:
    """``(input, output, cached input, reasoning)`` tokens of a Responses API ``usage`` object; ``None`` when
    missing."""
    if not isinstance(usage, dict) or not isinstance(usage.get("input_tokens"), int):
        return None
    details = usage.get("input_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out_details = usage.get("output_tokens_details")
    reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
    prompt, output = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    return prompt, output, min(cached, prompt), min(reasoning, output)


def as_chat_completion(response: dict[str, Any]) -> dict[str, Any]:
    """A Responses API ``response`` read as a ``chat.completion`` (what the gateway measures and samples)."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(str(part.get("text", "")))
        elif item.get("type") == "function_call":
            function = {"name": item.get("name"), "arguments": item.get("arguments")}
            calls.append({"id": item.get("call_id"), "type": "function", "function": function})
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    finish = "length" if reason == "max_output_tokens" else "content_filter" if reason else None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "finish_reason": finish or ("tool_calls" if calls else "stop")}
    return {"id": response.get("id"), "object": "chat.completion", "choices": [choice]}
