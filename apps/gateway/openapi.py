"""The OpenAI-compatible endpoints in the OpenAPI document (/api/schema, /api/docs).

The gateway's views are plain async Django views (views.py), which drf-spectacular does not
see. Each endpoint gets here a documentation-only DRF view (never routed: ``ROUTES`` lists
them for the preprocessing hook ``gateway_endpoints``, SPECTACULAR_SETTINGS), so the
description uses drf-spectacular's own means: serializers become components, the ``ApiKey``
bearer scheme comes from the view's authentication class, errors and headers are
``extend_schema`` responses and parameters. The shapes are OpenAI's, with the fields Anvil adds.

When a view changes what it answers, change its description here:
``apps/gateway/tests/test_openapi.py`` checks the served document and the schemathesis run
(tests/test_api_schema_fuzz.py) sends generated requests to a live Anvil and checks every answer
against it.
"""

from __future__ import annotations

from django.urls import path as url_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from apps.catalog.models import PRICE_DIGITS, Kind
from apps.keys.authentication import ApiKeyAuthentication
from apps.keys.permissions import HasApiKey

EXAMPLE_MODEL = "anvil-chat-small"  # the demo catalog's chat model (`make run`)
EXAMPLE_EMBEDDING_MODEL = "anvil-embed-small"

# The error codes each status is answered with (errors.py, admission.py, parsing.py, relay.py,
# apps.keys.auth, lib.slots, apps.usage.exceptions). Each set is an enum of its own in the
# document (SPECTACULAR_SETTINGS' ENUM_NAME_OVERRIDES names them).
ERROR_CODES = {
    400: [
        "invalid_json",
        "invalid_value",
        "wrong_model_kind",
        "context_length_exceeded",
        "backend_rejected",
        "unsupported_content",
        "unsupported_value",
    ],
    401: ["invalid_api_key", "account_disabled"],
    403: ["wrong_key_kind", "grant_not_valid", "model_not_allowed"],
    404: ["model_not_found", "unknown_url", "not_found"],
    405: ["method_not_allowed"],
    413: ["request_too_large"],
    429: ["insufficient_quota", "backend_rate_limited"],
    502: ["backend_error"],
    503: [
        "model_inactive",
        "model_unavailable",
        "queue_full",
        "queue_timeout",
        "slots_unavailable",
        "backend_unavailable",
    ],
    504: ["backend_timeout"],
}
BAD_REQUEST_CODES = ERROR_CODES[400]
UNAUTHORIZED_CODES = ERROR_CODES[401]
FORBIDDEN_CODES = ERROR_CODES[403]
NOT_FOUND_CODES = ERROR_CODES[404]
METHOD_NOT_ALLOWED_CODES = ERROR_CODES[405]
TOO_LARGE_CODES = ERROR_CODES[413]
TOO_MANY_CODES = ERROR_CODES[429]
BAD_GATEWAY_CODES = ERROR_CODES[502]
UNAVAILABLE_CODES = ERROR_CODES[503]
TIMEOUT_CODES = ERROR_CODES[504]

ERROR_TEXT = {
    400: "Bad request: not JSON or a field of the wrong shape (`invalid_json`, "
    "`invalid_value`, `param` names the field), a model of another kind "
    "(`wrong_model_kind`), a prompt and max_tokens over the model's context window "
    "(`context_length_exceeded`, in OpenAI's words: \"This model's maximum context length is N "
    'tokens. However, you requested M tokens…"), input or a setting Anvil can not give this '
    "model's backend (`unsupported_content`, `unsupported_value`: the Responses API's files, "
    "built-in tools, `previous_response_id`), or refused by the model's backend "
    "(`backend_rejected`, its message passed on).",
    401: "No key, an unknown, expired, revoked or archived one (`invalid_api_key`), or the key "
    "of a deactivated account (`account_disabled`).",
    403: "A management key (`wrong_key_kind`), a key whose grant is outside its validity dates "
    "(`grant_not_valid`), or a model the key's grant may not use or a non-commercial model "
    "for a commercial user (`model_not_allowed`).",
    404: "An unknown model, or one the key's grant may not see (`model_not_found`), an "
    "address Anvil does not have (`unknown_url`, naming the method and path), or a key no "
    "longer of its grant when the credits were held (`not_found`).",
    405: "A method the address does not take (`method_not_allowed`); `Allow` names the one it "
    "takes.",
    413: "The body is larger than GATEWAY_MAX_BODY_BYTES (`request_too_large`).",
    429: "A credit limit is reached (`insufficient_quota`, the message names it), or the "
    "model's backend is too busy (`backend_rate_limited`, with `Retry-After`; nothing "
    "charged).",
    502: "The model's backend failed or broke off the answer (`backend_error`).",
    503: "The model is inactive (`model_inactive`) or failed its health check "
    "(`model_unavailable`), its queue is full (`queue_full`), no slot came in time "
    "(`queue_timeout`), the slot store is unreachable (`slots_unavailable`), or the backend "
    "said it is unavailable (`backend_unavailable`). With `Retry-After`.",
    504: "The model's backend did not answer in time (`backend_timeout`).",
}


def _error_serializer(status: int) -> type[serializers.Serializer]:
    """``{"error": {"message", "type", "param", "code"}}`` with this status's codes."""
    detail = type(
        f"GatewayError{status}Detail",
        (serializers.Serializer,),
        {
            "message": serializers.CharField(),
            "type": serializers.CharField(help_text="OpenAI's error type for the status."),
            "param": serializers.CharField(allow_null=True, help_text="The field at fault."),
            "code": serializers.ChoiceField(choices=ERROR_CODES[status]),
            "__module__": __name__,
        },
    )
    return type(
        f"GatewayError{status}",
        (serializers.Serializer,),
        {"error": detail(), "__module__": __name__},
    )


ERROR_SERIALIZERS = {status: _error_serializer(status) for status in ERROR_CODES}
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before retrying.",
)
ALLOW = OpenApiParameter(
    "Allow",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[405],
    description="The method the address takes.",
)


def errors(*statuses: int) -> dict:
    return {
        status: OpenApiResponse(ERROR_SERIALIZERS[status], description=ERROR_TEXT[status])
        for status in statuses
    }


AUTH_ERRORS = (401, 403)
INFERENCE_ERRORS = errors(400, *AUTH_ERRORS, 404, 405, 413, 429, 502, 503, 504)

REQUEST_ID = OpenApiParameter(
    "X-Request-ID",
    str,
    OpenApiParameter.HEADER,
    description="Your own id for the request (1 to 128 letters, digits, `.`, `_`, `-`); "
    "Anvil makes one up otherwise. The answer carries it back.",
    pattern=r"^[A-Za-z0-9._-]{1,128}$",
)
REQUEST_ID_ANSWERED = OpenApiParameter(
    "X-Request-ID",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=True,
    description="The client's own X-Request-ID, else one made up: quote it to support.",
)
CREDIT_HEADERS = [
    OpenApiParameter(
        "X-Anvil-Credits-Charged",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        description="Credits the request cost (a decimal string). A stream says it in its "
        "`: anvil {...}` comment instead.",
    ),
    OpenApiParameter(
        "X-Anvil-Credits-Remaining",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        description="The least room left under the four budgets after this request.",
    ),
    OpenApiParameter(
        "X-Anvil-Limited-By",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        description="The budget that room is of: grant, key_total, key_monthly or member_monthly.",
    ),
    OpenApiParameter(
        "X-Anvil-Max-Tokens-Lowered",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[200],
        description="max_tokens as lowered to what the budgets afford (only when lowered).",
    ),
    OpenApiParameter(
        "X-Anvil-Usage-Estimated",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        description='"true" when the backend reported no usage and `usage` is Anvil\'s '
        "estimate, which it charged.",
    ),
]
INFERENCE_HEADERS = [REQUEST_ID, REQUEST_ID_ANSWERED, RETRY_AFTER, ALLOW, *CREDIT_HEADERS]
READ_HEADERS = [REQUEST_ID, REQUEST_ID_ANSWERED, ALLOW]


class KeyDoc(APIView):
    """A gateway endpoint: an API key (the ``ApiKey`` scheme), JSON bodies."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    parser_classes = [JSONParser]


# --- Fields that take several JSON shapes ------------------------------------------------------

TOKEN_IDS = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
TEXTS_SCHEMA = {
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        TOKEN_IDS,
        {"type": "array", "items": TOKEN_IDS, "minItems": 1},
    ],
}


@extend_schema_field(
    {
        **TEXTS_SCHEMA,
        "description": "A text, a non-empty list of texts, a list of token ids, or a list of "
        "lists of token ids (a list is all of one kind).",
    }
)
class TextsField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        ],
        "nullable": True,
        "description": "A text, or a list of content parts ({type: text, text}, …).",
    }
)
class ContentField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "maxLength": 400},
            {"type": "array", "items": {"type": "string", "maxLength": 400}, "maxItems": 4},
        ],
        "nullable": True,
    }
)
class StopField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "function": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "required": ["name"],
                    },
                },
                "required": ["type", "function"],
            },
        ],
        "description": "Whether and which tool the model must call.",
    }
)
class ChatToolChoiceField(serializers.JSONField):
    pass


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    pass


# --- Chat completions ---------------------------------------------------------------------------


class FunctionDefinition(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    description = serializers.CharField(required=False)
    parameters = JSONObjectField(required=False, help_text="A JSON Schema of the arguments.")


class ChatCompletionTool(serializers.Serializer):
    type = serializers.ChoiceField(choices=["function"])
    function = FunctionDefinition()


class ToolCallFunction(serializers.Serializer):
    name = serializers.CharField()
    arguments = serializers.CharField(help_text="The arguments as a JSON text.")


class ChatCompletionToolCall(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.ChoiceField(choices=["function"])
    function = ToolCallFunction()


class ChatMessage(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=["system", "developer", "user", "assistant", "tool"],
    )
    content = ContentField(required=False)
    name = serializers.CharField(required=False)
    tool_calls = ChatCompletionToolCall(many=True, required=False)
    tool_call_id = serializers.CharField(required=False, help_text="role tool: the call answered")


class StreamOptions(serializers.Serializer):
    include_usage = serializers.BooleanField(
        required=False, help_text="A last chunk with `usage` (and no choices) before [DONE]."
    )


MODEL_HELP = "A model of the catalog that the key's grant may use (GET /api/v1/models)."
MAX_TOKENS_HELP = (
    "Completion tokens at most, per choice. Prompt plus max_tokens must fit the model's "
    "context window. Anvil holds credits for it and may lower it to what the budgets afford "
    "(X-Anvil-Max-Tokens-Lowered)."
)
STREAM_HELP = (
    "true: the answer is a text/event-stream of chunks, ended by an `: anvil {...}` comment "
    "with the credits charged and `data: [DONE]`."
)


class SamplingFields(serializers.Serializer):
    """What chat and text completions share."""

    max_tokens = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text=MAX_TOKENS_HELP
    )
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    n = serializers.IntegerField(
        min_value=1,
        max_value=128,
        required=False,
        allow_null=True,
        help_text="Choices to generate; credits are held for each.",
    )
    stream = serializers.BooleanField(required=False, allow_null=True, help_text=STREAM_HELP)
    stream_options = StreamOptions(required=False, allow_null=True)
    stop = StopField(required=False)
    presence_penalty = serializers.FloatField(
        min_value=-2, max_value=2, required=False, allow_null=True
    )
    frequency_penalty = serializers.FloatField(
        min_value=-2, max_value=2, required=False, allow_null=True
    )
    seed = serializers.IntegerField(required=False, allow_null=True)
    user = serializers.CharField(required=False)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Chat",
            value={
                "model": EXAMPLE_MODEL,
                "messages": [{"role": "user", "content": "Say hello"}],
                "max_tokens": 50,
                "stream": False,
            },
            request_only=True,
        )
    ]
)
class ChatCompletionRequest(SamplingFields):
    model = serializers.CharField(help_text=MODEL_HELP)
    messages = serializers.ListField(child=ChatMessage(), min_length=1)
    max_completion_tokens = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="OpenAI's newer name of max_tokens; with both, the smaller counts.",
    )
    tools = ChatCompletionTool(many=True, required=False)
    tool_choice = ChatToolChoiceField(required=False)
    response_format = JSONObjectField(required=False)


class CompletionUsage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(min_value=0)
    completion_tokens = serializers.IntegerField(min_value=0)
    total_tokens = serializers.IntegerField(min_value=0)


USAGE_HELP = (
    "The backend's counts, or, when it reported none, what Anvil estimated and charged "
    "(X-Anvil-Usage-Estimated: true)."
)


class AnswerMessage(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True)
    tool_calls = ChatCompletionToolCall(many=True, required=False, allow_null=True)


class ChatCompletionChoice(serializers.Serializer):
    index = serializers.IntegerField()
    message = AnswerMessage()
    finish_reason = serializers.CharField(allow_null=True, help_text="stop, length, tool_calls, …")


class ChatCompletion(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["chat.completion"])
    created = serializers.IntegerField()
    model = serializers.CharField(help_text="The backend's name of the model.")
    choices = ChatCompletionChoice(many=True)
    usage = CompletionUsage(help_text=USAGE_HELP)


CHAT_STREAM_EXAMPLE = (
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1767225600,'
    '"model":"org/chat-small","choices":[{"index":0,"delta":{"role":"assistant",'
    '"content":"Hello"},"finish_reason":null}]}\n\n'
    'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1767225600,'
    '"model":"org/chat-small","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    ': anvil {"credits_charged": "0.000012", "remaining": "999.99", '
    '"limited_by": "grant"}\n\n'
    "data: [DONE]\n\n"
)


class ServerSentEvent(serializers.Serializer):
    """One event of a text/event-stream answer, as an SSE client reads it (OpenAPI 3.0 has a
    stream's schema describe each event). Comment lines (``: anvil {...}``) are no events."""

    event = serializers.CharField(
        required=False, help_text="The event's type (the Responses API names its events)."
    )
    data = serializers.CharField(
        allow_blank=True, help_text="One chunk as JSON, or [DONE] at the end of a completion."
    )
    id = serializers.CharField(required=False)
    retry = serializers.IntegerField(required=False)


def event_stream(description: str, example: str) -> OpenApiResponse:
    return OpenApiResponse(
        ServerSentEvent,
        description=description,
        examples=[OpenApiExample("Stream", value=example, response_only=True)],
    )


class ChatCompletionsDoc(KeyDoc):
    @extend_schema(
        operation_id="chat_completions_create",
        summary="Create a chat completion (stream: true for a stream)",
        description="OpenAI's chat completions. Anvil checks the key, the model and its "
        "context window, holds the largest cost the request can have against the four "
        "budgets, forwards the request to the model's backend and charges what it used.",
        tags=["Inference"],
        request=ChatCompletionRequest,
        parameters=INFERENCE_HEADERS,
        responses={
            (200, "application/json"): OpenApiResponse(
                ChatCompletion,
                description="The completion; with stream: true, a text/event-stream of "
                "chat.completion.chunk events ending with `: anvil {...}` and `data: [DONE]`.",
            ),
            (200, "text/event-stream"): event_stream(
                "stream: true — chat.completion.chunk events as the model generates them.",
                CHAT_STREAM_EXAMPLE,
            ),
            **INFERENCE_ERRORS,
        },
    )
    def post(self, request):
        raise NotImplementedError  # served by apps.gateway.views.chat_completions


# --- Text completions ---------------------------------------------------------------------------


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Completion",
            value={"model": EXAMPLE_MODEL, "prompt": "Once upon a time", "max_tokens": 20},
            request_only=True,
        )
    ]
)
class CompletionRequest(SamplingFields):
    model = serializers.CharField(help_text=MODEL_HELP)
    prompt = TextsField(
        help_text="The prompt, or prompts: n completions of each. (A chat body with "
        "`messages` and no `prompt` is served as a chat completion.)"
    )
    best_of = serializers.IntegerField(min_value=1, max_value=128, required=False, allow_null=True)
    echo = serializers.BooleanField(required=False, allow_null=True)
    suffix = serializers.CharField(required=False, allow_null=True)


class CompletionChoice(serializers.Serializer):
    index = serializers.IntegerField()
    text = serializers.CharField(allow_blank=True)
    finish_reason = serializers.CharField(allow_null=True)


class Completion(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["text_completion"])
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = CompletionChoice(many=True)
    usage = CompletionUsage(help_text=USAGE_HELP)


class CompletionsDoc(KeyDoc):
    @extend_schema(
        operation_id="completions_create",
        summary="Create a text completion (stream: true for a stream)",
        tags=["Inference"],
        request=CompletionRequest,
        parameters=INFERENCE_HEADERS,
        responses={
            (200, "application/json"): OpenApiResponse(
                Completion,
                description="The completion (a chat body's answer is a chat completion); with "
                "stream: true, a text/event-stream of chunks.",
            ),
            (200, "text/event-stream"): event_stream(
                "stream: true — text_completion chunks as the model generates them.",
                'data: {"id":"cmpl-1","object":"text_completion","created":1767225600,'
                '"model":"org/chat-small","choices":[{"index":0,"text":" there was",'
                '"finish_reason":null}]}\n\n: anvil {"credits_charged": "0.00001"}\n\n'
                "data: [DONE]\n\n",
            ),
            **INFERENCE_ERRORS,
        },
    )
    def post(self, request):
        raise NotImplementedError  # served by apps.gateway.views.completions


# --- Embeddings ---------------------------------------------------------------------------------


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Embedding",
            value={"model": EXAMPLE_EMBEDDING_MODEL, "input": ["A sentence to embed."]},
            request_only=True,
        )
    ]
)
class EmbeddingRequest(serializers.Serializer):
    model = serializers.CharField(help_text=MODEL_HELP)
    input = TextsField(
        help_text="What to embed; each input must fit the model's context window on its own."
    )
    encoding_format = serializers.ChoiceField(
        choices=["float", "base64"],
        required=False,
        help_text="base64: little-endian float32s, whatever the backend returned.",
    )
    dimensions = serializers.IntegerField(min_value=1, required=False)
    user = serializers.CharField(required=False)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "array", "items": {"type": "number"}},
            {"type": "string", "description": "base64 of little-endian float32s"},
        ]
    }
)
class VectorField(serializers.JSONField):
    pass


class Embedding(serializers.Serializer):
    object = serializers.ChoiceField(choices=["embedding"])
    index = serializers.IntegerField()
    embedding = VectorField()


class EmbeddingUsage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(min_value=0)
    total_tokens = serializers.IntegerField(min_value=0)


class EmbeddingList(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = Embedding(many=True)
    model = serializers.CharField()
    usage = EmbeddingUsage(help_text=USAGE_HELP)


class EmbeddingsDoc(KeyDoc):
    @extend_schema(
        operation_id="embeddings_create",
        summary="Create embeddings",
        tags=["Inference"],
        request=EmbeddingRequest,
        parameters=INFERENCE_HEADERS,
        responses={200: EmbeddingList, **INFERENCE_ERRORS},
    )
    def post(self, request):
        raise NotImplementedError  # served by apps.gateway.views.embeddings


# --- Responses (OpenAI's Responses API) --------------------------------------------------------

INPUT_TEXT = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["input_text"]}, "text": {"type": "string"}},
    "required": ["type", "text"],
}
RESPONSE_INPUT_ITEMS = [
    {
        "title": "message",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["message"]},
            "role": {"type": "string", "enum": ["user", "assistant", "system", "developer"]},
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": INPUT_TEXT}]},
        },
        "required": ["role", "content"],
    },
    {
        "title": "function_call",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["function_call"]},
            "call_id": {"type": "string"},
            "name": {"type": "string"},
            "arguments": {"type": "string", "description": "The arguments as a JSON text."},
        },
        "required": ["type", "call_id", "name", "arguments"],
    },
    {
        "title": "function_call_output",
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["function_call_output"]},
            "call_id": {"type": "string"},
            "output": {"type": "string"},
        },
        "required": ["type", "call_id", "output"],
    },
]


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"oneOf": RESPONSE_INPUT_ITEMS}, "minItems": 1},
        ],
        "description": "A text, or a list of message, function_call and function_call_output "
        "items. Other item types are refused with 400 unless the backend serves the Responses "
        "API itself.",
    }
)
class ResponseInputField(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": ["function"]},
                    "name": {"type": "string"},
                },
                "required": ["type", "name"],
            },
        ]
    }
)
class ResponseToolChoiceField(serializers.JSONField):
    pass


class ResponseTool(serializers.Serializer):
    type = serializers.ChoiceField(choices=["function"])
    name = serializers.CharField(max_length=64)
    description = serializers.CharField(required=False)
    parameters = JSONObjectField(required=False)
    strict = serializers.BooleanField(required=False)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Response",
            value={"model": EXAMPLE_MODEL, "input": "Say hello", "max_output_tokens": 50},
            request_only=True,
        )
    ]
)
class ResponseRequest(serializers.Serializer):
    model = serializers.CharField(help_text=MODEL_HELP)
    input = ResponseInputField()
    instructions = serializers.CharField(
        required=False, allow_null=True, help_text="A system message put before the input."
    )
    tools = ResponseTool(many=True, required=False)
    tool_choice = ResponseToolChoiceField(required=False)
    max_output_tokens = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text=MAX_TOKENS_HELP
    )
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    stream = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="true: a text/event-stream of response.* events.",
    )
    previous_response_id = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Only for a backend that serves the Responses API itself (Anvil stores no "
        "content): otherwise refused with 400.",
    )
    metadata = serializers.DictField(child=serializers.CharField(), required=False)
    store = serializers.BooleanField(required=False, allow_null=True)


class OutputText(serializers.Serializer):
    type = serializers.ChoiceField(choices=["output_text"])
    text = serializers.CharField(allow_blank=True)
    annotations = serializers.ListField(child=JSONObjectField(), required=False)


class ResponseOutputMessage(serializers.Serializer):
    type = serializers.ChoiceField(choices=["message"])
    id = serializers.CharField()
    role = serializers.ChoiceField(choices=["assistant"])
    status = serializers.CharField()
    content = OutputText(many=True)


class ResponseFunctionCall(serializers.Serializer):
    type = serializers.ChoiceField(choices=["function_call"])
    id = serializers.CharField(required=False)
    call_id = serializers.CharField()
    name = serializers.CharField()
    arguments = serializers.CharField(help_text="The arguments as a JSON text.")
    status = serializers.CharField(required=False)


class ResponseUsage(serializers.Serializer):
    input_tokens = serializers.IntegerField(min_value=0)
    output_tokens = serializers.IntegerField(min_value=0)
    total_tokens = serializers.IntegerField(min_value=0)


class ResponseObject(serializers.Serializer):
    id = serializers.RegexField(r"^resp_", help_text='"resp_…"')
    object = serializers.ChoiceField(choices=["response"])
    created_at = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=["completed", "incomplete", "failed", "in_progress"],
    )
    model = serializers.CharField()
    output = PolymorphicProxySerializer(
        component_name="ResponseOutputItem",
        serializers={"message": ResponseOutputMessage, "function_call": ResponseFunctionCall},
        resource_type_field_name="type",
        many=True,
    )
    usage = ResponseUsage(help_text=USAGE_HELP)
    incomplete_details = JSONObjectField(required=False, allow_null=True)
    error = JSONObjectField(required=False, allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField(), required=False)


RESPONSES_STREAM_EXAMPLE = (
    "event: response.created\n"
    'data: {"type":"response.created","response":{"id":"resp_1","object":"response",'
    '"status":"in_progress","output":[]}}\n\n'
    "event: response.output_text.delta\n"
    'data: {"type":"response.output_text.delta","output_index":0,"content_index":0,'
    '"delta":"Hello"}\n\n'
    "event: response.completed\n"
    'data: {"type":"response.completed","response":{"id":"resp_1","object":"response",'
    '"status":"completed","output":[…],"usage":{"input_tokens":9,"output_tokens":2,'
    '"total_tokens":11}}}\n\n'
)


class ResponsesDoc(KeyDoc):
    @extend_schema(
        operation_id="responses_create",
        summary="Create a model response (OpenAI's Responses API)",
        description="Passed through to a backend that serves the Responses API, translated "
        "to and from a chat completion for the others (text, tools and function-call "
        "outputs). Held, charged and limited like every request.",
        tags=["Inference"],
        request=ResponseRequest,
        parameters=INFERENCE_HEADERS,
        responses={
            (200, "application/json"): OpenApiResponse(
                ResponseObject,
                description="The response; with stream: true, a text/event-stream of "
                "response.* events.",
            ),
            (200, "text/event-stream"): event_stream(
                "stream: true — response.created, response.output_text.delta, …, "
                "response.completed (whose `usage` is what is charged).",
                RESPONSES_STREAM_EXAMPLE,
            ),
            **INFERENCE_ERRORS,
        },
    )
    def post(self, request):
        raise NotImplementedError  # served by apps.gateway.views.responses


# --- Models -------------------------------------------------------------------------------------


class Model(serializers.Serializer):
    id = serializers.CharField(help_text="The model's name in Anvil's catalog.")
    object = serializers.ChoiceField(choices=["model"])
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelList(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = Model(many=True, help_text="The active models the key's grant may use, by name.")


PRICE_HELP = "Credits per 1M tokens, a decimal string."


class ModelFacts(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Kind.values)
    prompt_price = serializers.DecimalField(**PRICE_DIGITS, help_text=PRICE_HELP)
    completion_price = serializers.DecimalField(**PRICE_DIGITS, help_text=PRICE_HELP)
    price_unit = serializers.ChoiceField(choices=["credits per 1M tokens"])
    context_window = serializers.IntegerField(min_value=1, help_text="Tokens.")
    tags = serializers.ListField(child=serializers.CharField())


class ModelDetail(Model, ModelFacts):
    status = serializers.ChoiceField(
        choices=["active", "inactive"], help_text="inactive: switched off or failing its checks."
    )


MODEL_PATH = OpenApiParameter(
    "model",
    str,
    OpenApiParameter.PATH,
    description="The model's name; it may contain slashes (org/model), sent as they are or "
    "percent-encoded.",
)


class ModelListDoc(KeyDoc):
    @extend_schema(
        operation_id="models_list",
        summary="The models this key may use",
        tags=["Inference"],
        parameters=READ_HEADERS,
        responses={200: ModelList, **errors(*AUTH_ERRORS, 405)},
    )
    def get(self, request):
        raise NotImplementedError  # served by apps.gateway.views.model_list


class ModelRetrieveDoc(KeyDoc):
    @extend_schema(
        operation_id="models_retrieve",
        summary="One model, with its prices, context window, tags and status",
        description="OpenAI's model object plus Anvil's fields. A model the key's grant may "
        "not use is not told apart from an unknown one (404 `model_not_found`).",
        tags=["Inference"],
        parameters=[MODEL_PATH, *READ_HEADERS],
        responses={200: ModelDetail, **errors(*AUTH_ERRORS, 404, 405)},
    )
    def get(self, request, model):
        raise NotImplementedError  # served by apps.gateway.views.model_retrieve


class PlgridModel(ModelFacts):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["Active", "Inactive"])
    tags = serializers.ListField(
        child=serializers.CharField(),
        help_text="Active or Inactive, Accessible or Inaccessible (to this key), then the "
        "model's own tags.",
    )


class PlgridModelList(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = PlgridModel(many=True, help_text="Every model of the catalog, by name.")


class PlgridModelListDoc(KeyDoc):
    @extend_schema(
        operation_id="models_plgrid_list",
        summary="Every model of the catalog, in PLGrid's format",
        tags=["Inference"],
        parameters=READ_HEADERS,
        responses={200: PlgridModelList, **errors(*AUTH_ERRORS, 405)},
    )
    def get(self, request):
        raise NotImplementedError  # served by apps.gateway.views.model_list_plgrid


# --- Health -------------------------------------------------------------------------------------


class ModelHealth(serializers.Serializer):
    model = serializers.CharField()
    status = serializers.ChoiceField(choices=["up", "down"])
    last_check = serializers.DateTimeField(allow_null=True)
    in_flight = serializers.IntegerField(
        allow_null=True, help_text="null: the slot store (Redis) is unreachable."
    )
    queued = serializers.IntegerField(allow_null=True)
    max_concurrency = serializers.IntegerField()
    queue_size = serializers.IntegerField()


class Health(serializers.Serializer):
    checked_at = serializers.FloatField(help_text="Unix time.")
    models = ModelHealth(many=True)


class HealthDoc(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="health",
        summary="Each model's health and load (no key needed)",
        tags=["Inference"],
        parameters=[
            OpenApiParameter(
                "model", str, description="One model's name: its object alone is answered."
            ),
            *READ_HEADERS,
        ],
        responses={
            200: PolymorphicProxySerializer(
                component_name="HealthAnswer",
                serializers=[Health, ModelHealth],
                resource_type_field_name=None,
            ),
            **errors(404, 405),
        },
    )
    def get(self, request):
        raise NotImplementedError  # served by apps.gateway.views.health


# --- The preprocessing hook ---------------------------------------------------------------------

# (path in the document, path in the URLconf, method, documentation view)
ROUTES = [
    ("/api/v1/chat/completions", "api/v1/chat/completions", "POST", ChatCompletionsDoc),
    ("/api/v1/completions", "api/v1/completions", "POST", CompletionsDoc),
    ("/api/v1/embeddings", "api/v1/embeddings", "POST", EmbeddingsDoc),
    ("/api/v1/responses", "api/v1/responses", "POST", ResponsesDoc),
    ("/api/v1/models", "api/v1/models", "GET", ModelListDoc),
    ("/api/v1/models/{model}", "api/v1/models/<path:model>", "GET", ModelRetrieveDoc),
    ("/api/v1/models-plgrid-format", "api/v1/models-plgrid-format", "GET", PlgridModelListDoc),
    ("/api/health", "api/health", "GET", HealthDoc),
]


def gateway_endpoints(endpoints: list) -> list:
    """drf-spectacular's PREPROCESSING_HOOKS: the URLconf's DRF endpoints, and the gateway's
    (documented by the views above)."""
    added = []
    for path, route, method, view in ROUTES:
        pattern = url_path(route, view.as_view())
        added.append((path, pattern.pattern.regex.pattern, method, pattern.callback))
    return [*endpoints, *added]
