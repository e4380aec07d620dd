"""The development backend's native Responses API, read by the official openai client."""

from __future__ import annotations

import json

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_it_answers_a_response_with_the_chat_reply_and_its_usage(client):
    chat = client.chat.completions.create(
        model="chat-small", messages=[{"role": "user", "content": "Hello there"}], max_tokens=7
    )
    response = client.responses.create(model="chat-small", input="Hello there", max_output_tokens=7)
    assert response.output_text == chat.choices[0].message.content
    assert response.status == "incomplete"
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == 7


def test_it_streams_numbered_events_ending_in_the_usage(client):
    events = list(
        client.responses.create(
            model="chat-small", input="Hello there", max_output_tokens=5, stream=True
        )
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 5
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output_text == "".join(deltas)
    assert events[-1].response.usage.output_tokens == 5


def test_it_calls_a_function_and_answers_its_output(client):
    with client.responses.stream(
        model="chat-small", input="What is the weather in Paris?", tools=[WEATHER_TOOL]
    ) as stream:
        first = stream.get_final_response()
    [call] = first.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    second = client.responses.create(
        model="chat-small",
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "21 C"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.status == "completed" and second.output_text
