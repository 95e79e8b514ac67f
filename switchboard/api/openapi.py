"""The OpenAPI 3.1 document (`/openapi.json`) and a self-contained page that renders it (`/docs`): no
assets from the internet, so it works on a gateway with no way out."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "properties": {
        "Error ID": {"type": "string", "examples": ["125"]},
        "Status": {"type": "string", "examples": ["Received with error - Parameter Sender is missing or empty"]},
    },
    "required": ["Error ID", "Status"],
}
_DESTINATION = {
    "oneOf": [
        {
            "type": "array",
            "items": {
                "oneOf": [{"type": "string"}, {"type": "object", "properties": {"MobileNo": {"type": "string"}}}]
            },
        },
        {"type": "object", "properties": {"MobileNo": {"type": "string"}}},
        {"type": "string"},
    ],
    "description": "Up to 1,000 numbers: 0016175551212, +16175551212 and 16175551212 all mean +16175551212.",
}
_SEND_BODY = {
    "type": "object",
    "required": ["Destination", "Message", "Sender"],
    "properties": {
        "Destination": _DESTINATION,
        "Message": {"type": "string", "maxLength": 1000},
        "Sender": {"type": "string", "description": "Up to 11 letters/digits, or a number of up to 15 digits."},
        "ReferenceID": {"type": "string", "description": "Echoed back; need not be unique."},
        "CallBack": {"type": "string", "description": '"Yes", "No" (default) or an https URL (extension).'},
        "ScheduleAt": {"type": "string", "description": "Extension: ISO 8601 time or 'YYYY-MM-DD HH:MM:SS' UTC."},
        "ValidityPeriod": {"type": "integer", "description": "Extension: seconds the message may wait."},
    },
    "example": {
        "Destination": [{"MobileNo": "0016175551212"}, {"MobileNo": "+15005550001"}],
        "Message": "Welcome to Optimum Measures messaging solution",
        "Sender": "OM",
        "ReferenceID": "ID09890",
        "CallBack": "No",
    },
}
_STATUS = {
    "type": "object",
    "properties": {
        "ID": {"type": "string"},
        "Status": {"type": "string"},
        "Delivery Date": {"type": "string"},
        "ReferenceID": {"type": "string"},
        "DateTime": {"type": "string"},
        "Destinations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    k: {"type": "string"}
                    for k in ("MobileNo", "Status", "DateTime", "Delivery Date", "Error", "ErrorLogsID", "Carrier")
                }
                | {"Segments": {"type": "integer"}, "Simulated": {"type": "boolean"}},
            },
        },
    },
}


_VOICE_ERROR = {
    "type": "object",
    "properties": {
        "ID": {"type": "string", "description": "The request's ID; a refused Call gets one of its own."},
        "ErrorID": {"type": "string", "examples": ["5000"]},
        "Message": {
            "type": "string",
            "examples": ["Received with error - Parameter Destination/Mobile No is missing or empty"],
        },
    },
    "required": ["ID", "ErrorID", "Message"],
}
_CALL_BODY = {
    "type": "object",
    "required": ["Destination", "Sender"],
    "description": "Message + Locale (text to speech), or CampaignID: exactly one of the two.",
    "properties": {
        "Destination": _DESTINATION,
        "Sender": {"type": "string", "description": "The caller number shown: up to 15 digits, optional '+'."},
        "Message": {"type": "string", "maxLength": 2000, "description": "Text to speak."},
        "Locale": {"type": "string", "examples": ["hi-IN"], "description": "Required with Message."},
        "CampaignID": {"type": "string", "format": "uuid", "description": "A campaign of the account."},
        "ReferenceID": {"type": "string", "description": "Extension: echoed back; need not be unique."},
        "CallBack": {
            "type": "string",
            "description": 'Extension: call records go to the account\'s voice URL by default; "No" turns them '
            "off, an https URL overrides.",
        },
        "RingTimeout": {"type": "integer", "minimum": 5, "maximum": 120, "default": 30},
    },
    "example": {
        "Destination": [{"MobileNo": "0016175551212"}, {"MobileNo": "+15005550001"}],
        "Message": "Welcome to Optimum Measures Voice solution",
        "Sender": "00919833111380",
        "Locale": "hi-IN",
    },
}
_CALL_STATUS = {
    "type": "object",
    "properties": {
        "ID": {"type": "string"},
        "Status": {"type": "string", "description": "The least advanced of the calls' statuses."},
        "ReferenceID": {"type": "string"},
        "DateTime": {"type": "string"},
        "Calls": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    k: {"type": "string"}
                    for k in (
                        "GUID",
                        "MobileNo",
                        "Status",
                        "Reason",
                        "Calltime",
                        "AnswerTime",
                        "Duration",
                        "Trunk",
                        "Detail",
                    )
                }
                | {"Simulated": {"type": "boolean"}},
            },
        },
    },
}
_CAMPAIGN = {
    "type": "object",
    "properties": {
        "CampaignID": {"type": "string", "format": "uuid"},
        "Name": {"type": "string"},
        "Source": {"enum": ["wav", "tts"]},
        "Locale": {"type": "string"},
        "Text": {"type": "string"},
        "Duration": {"type": "number", "description": "Seconds, one decimal."},
        "Created": {"type": "string"},
    },
    "example": {
        "CampaignID": "fc46b682-b939-4fc2-81c3-891cfb23cd92",
        "Name": "welcome",
        "Source": "tts",
        "Locale": "hi-IN",
        "Text": "Welcome to Optimum Measures Voice solution",
        "Duration": 3.4,
        "Created": "2026-01-01 00:00:00.000",
    },
}


def _voice_errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request (5000-5005, 5009-5012, 5014)",
        401: "Authentication failed (5006)",
        404: "ID not found (5013), or Invalid Campaign (5002) in a campaign path",
        413: "Body too large (5008)",
        415: "A multipart form: send the WAV as the body (5014)",
        429: "Rate limit exceeded (5007), with Retry-After",
        503: "Database or text to speech unavailable (5015)",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VoiceError"}}},
        }
        for c in codes
    }


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string"},
    "description": "Extension: a repeated key answers the first request's ID and stores nothing.",
}


def _voice_paths() -> dict[str, Any]:
    call_op = {
        "summary": "Call one or more destinations and play text to speech or a campaign",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallRequest"}}},
        },
        "parameters": [_IDEMPOTENCY_KEY],
        "responses": {
            "200": {
                "description": "Stored durably; the calls are queued",
                "content": {"application/json": {"example": {"ID": "7865", "Status": "Received"}}},
            },
            **_voice_errors(400, 401, 413, 429, 503),
        },
    }
    lookup = [
        {"name": "ID", "in": "query", "schema": {"type": "string"}},
        {
            "name": "ReferenceID",
            "in": "query",
            "schema": {"type": "string"},
            "description": "The newest Call request with it.",
        },
    ]
    status_op = {
        "summary": "Extension: the call records of a Call request",
        "parameters": lookup,
        "responses": {
            "200": {
                "description": "Found",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallStatus"}}},
            },
            **_voice_errors(401, 404, 503),
        },
    }
    campaign_id = {"name": "CampaignID", "in": "path", "required": True, "schema": {"type": "string"}}
    campaign = {
        "description": "The campaign",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Campaign"}}},
    }
    return {
        "/api/Voice": {"post": call_op | {"operationId": "voice"}},
        "/api/Voice/Call": {"post": call_op | {"operationId": "voiceCall"}},
        "/api/Voice/GetStatus": {
            "get": status_op | {"operationId": "voiceGetStatus"},
            "post": status_op | {"operationId": "voiceGetStatusPost"},
        },
        "/api/Voice/Cancel": {
            "post": {
                "summary": "Extension: cancel a request's calls (or those to MobileNo); they end Failed / Cancel",
                "operationId": "voiceCancel",
                "parameters": [
                    {"name": "ID", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "MobileNo", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "Cancelled: not dialled yet, ended now; Stopping: under way, being hung up",
                        "content": {
                            "application/json": {
                                "example": {"ID": "7865", "Cancelled": 3, "Stopping": 1, "AlreadyEnded": 2}
                            }
                        },
                    },
                    **_voice_errors(401, 404, 503),
                },
            }
        },
        "/api/Campaigns": {
            "post": {
                "summary": "Extension: a campaign from a WAV upload (raw body, ?Name=) or from JSON Name, Text, Locale",
                "parameters": [{"name": "Name", "in": "query", "schema": {"type": "string", "maxLength": 100}}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "audio/wav": {"schema": {"type": "string", "format": "binary", "maxLength": 20 * 1024 * 1024}},
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["Text", "Locale"],
                                "properties": {
                                    "Name": {"type": "string", "maxLength": 100},
                                    "Text": {"type": "string", "maxLength": 2000},
                                    "Locale": {"type": "string", "examples": ["hi-IN"]},
                                },
                            }
                        },
                    },
                },
                "responses": {"201": campaign, **_voice_errors(400, 401, 413, 415, 503)},
            },
            "get": {
                "summary": "Extension: the account's campaigns, newest first",
                "responses": {"200": {"description": "{Campaigns: [...]}"}, **_voice_errors(401, 503)},
            },
        },
        "/api/Campaigns/{CampaignID}": {
            "get": {
                "summary": "Extension: one campaign",
                "parameters": [campaign_id],
                "responses": {"200": campaign, **_voice_errors(401, 404, 503)},
            },
            "delete": {
                "summary": "Extension: delete a campaign (new calls may not use it; queued calls still play it)",
                "parameters": [campaign_id],
                "responses": {"204": {"description": "Deleted"}, **_voice_errors(401, 404, 503)},
            },
        },
    }


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request",
        401: "Authentication failed (128)",
        404: "ID not found (131)",
        413: "Body too large (130)",
        429: "Rate limit exceeded (129), with Retry-After",
        503: "Database unavailable (140)",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def openapi_document(version: str) -> dict[str, Any]:
    send_op = {
        "summary": "Send SMS to one or more destinations",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendRequest"}}},
        },
        "parameters": [_IDEMPOTENCY_KEY],
        "responses": {
            "200": {
                "description": "Stored durably",
                "content": {"application/json": {"example": {"ID": "7865", "Status": "Received"}}},
            },
            **_errors(400, 401, 413, 429, 503),
        },
    }
    status_op = {
        "summary": "Status of a Send request and each of its destinations",
        "parameters": [
            {"name": "ID", "in": "query", "schema": {"type": "string"}},
            {
                "name": "ReferenceID",
                "in": "query",
                "schema": {"type": "string"},
                "description": "Extension: the newest send with it.",
            },
        ],
        "responses": {
            "200": {
                "description": "Found",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
            },
            **_errors(401, 404, 503),
        },
    }
    plain_error = {
        "description": "Error",
        "content": {"application/json": {"schema": {"type": "object", "properties": {"Error": {"type": "string"}}}}},
    }
    account_doc = {
        "description": "The account's callback URLs and webhook secret",
        "content": {
            "application/json": {
                "example": {
                    "Name": "acme",
                    "SmsCallbackUrl": "https://hooks.acme.example/sms",
                    "SmsCallbackDisabled": "",
                    "VoiceCallbackUrl": "",
                    "VoiceCallbackDisabled": "",
                    "InboundCallbackUrl": "",
                    "InboundCallbackDisabled": "",
                    "OptOutReply": "You are unsubscribed from acme and will receive no more messages. "
                    "Reply START to resubscribe.",
                    "OptInReply": "You are subscribed to acme again. Reply STOP to unsubscribe, HELP for help.",
                    "HelpReply": "acme: reply STOP to unsubscribe, START to subscribe again.",
                    "WebhookSecret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "PreviousSecretValidUntil": "",
                }
            }
        },
    }
    callback_id = {"name": "ID", "in": "path", "required": True, "schema": {"type": "string"}}
    extension_paths = {
        "/api/Account": {
            "get": {"summary": "Extension: the account", "responses": {"200": account_doc, "401": plain_error}},
            "put": {
                "summary": 'Extension: set or clear ("" or null) the callback URLs, and the replies to opt-out '
                'keywords ("" for none, null for the default)',
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "SmsCallbackUrl": {"type": ["string", "null"]},
                                    "VoiceCallbackUrl": {"type": ["string", "null"]},
                                    "InboundCallbackUrl": {"type": ["string", "null"]},
                                    "OptOutReply": {"type": ["string", "null"], "maxLength": 1000},
                                    "OptInReply": {"type": ["string", "null"], "maxLength": 1000},
                                    "HelpReply": {"type": ["string", "null"], "maxLength": 1000},
                                },
                            }
                        }
                    }
                },
                "responses": {"200": account_doc, "400": plain_error, "401": plain_error, "413": plain_error},
            },
        },
        "/api/SMS/Inbound": {
            "get": {
                "summary": "Extension: inbound (MO) messages to the account's numbers, newest first",
                "parameters": [
                    {"name": name, "in": "query", "schema": {"type": "string"}}
                    for name in ("Since", "MobileNo", "To", "Before")
                ]
                + [{"name": "Limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                "responses": {
                    "200": {
                        "description": "{Messages, Next}: each message has the fields of its inbound callback",
                        "content": {
                            "application/json": {
                                "example": {
                                    "Messages": [
                                        {
                                            "ID": "4",
                                            "MobileNo": "+4915100000077",
                                            "To": "+16175550100",
                                            "Message": "Hello",
                                            "DateTime": "2026-12-08 10:14:02.287",
                                            "Segments": 1,
                                            "Keyword": "",
                                        }
                                    ],
                                    "Next": "",
                                }
                            }
                        },
                    },
                    "400": plain_error,
                    "401": plain_error,
                },
            }
        },
        "/api/OptOuts": {
            "get": {
                "summary": "Extension: the account's opt-out list, in number order (keyset pages: After=Next)",
                "parameters": [
                    {"name": "Limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "After", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "{OptOuts: [{MobileNo, Source, Created}], Next}"},
                    "400": plain_error,
                    "401": plain_error,
                },
            },
            "post": {
                "summary": "Extension: put a number on the opt-out list (any written form; stored in E.164)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["MobileNo"],
                                "properties": {"MobileNo": {"type": "string"}},
                            }
                        }
                    }
                },
                "responses": {
                    "200": {"description": "{MobileNo, Added}"},
                    "400": plain_error,
                    "401": plain_error,
                    "413": plain_error,
                },
            },
        },
        "/api/OptOuts/{MobileNo}": {
            "delete": {
                "summary": "Extension: take a number off the opt-out list",
                "parameters": [{"name": "MobileNo", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "{MobileNo, Removed}"},
                    "400": plain_error,
                    "401": plain_error,
                    "404": plain_error,
                },
            }
        },
        "/api/Numbers": {
            "get": {
                "summary": "Extension: the numbers (and keywords) the operator assigned to the account",
                "responses": {"200": {"description": "{Numbers: [{Number, Keyword, Assigned}]}"}, "401": plain_error},
            }
        },
        "/api/Account/RotateSecret": {
            "post": {
                "summary": "Extension: a new webhook secret; the previous one also signs for 24 hours",
                "responses": {"200": account_doc, "401": plain_error},
            }
        },
        "/api/Callbacks": {
            "get": {
                "summary": "Extension: the account's callbacks, newest first",
                "parameters": [
                    {
                        "name": "Status",
                        "in": "query",
                        "schema": {"enum": ["pending", "delivered", "failed", "cancelled"]},
                    },
                    {"name": "Limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "Before", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "{Callbacks, Next}"}, "400": plain_error, "401": plain_error},
            }
        },
        "/api/Callbacks/{ID}": {
            "get": {
                "summary": "Extension: one callback with every attempt",
                "parameters": [callback_id],
                "responses": {"200": {"description": "The callback"}, "401": plain_error, "404": plain_error},
            }
        },
        "/api/Callbacks/{ID}/Replay": {
            "post": {
                "summary": "Extension: post a callback again, its retry schedule started afresh",
                "parameters": [callback_id],
                "responses": {
                    "200": {"description": "{ID, State}"},
                    "401": plain_error,
                    "404": plain_error,
                    "409": plain_error | {"description": "It is pending already"},
                },
            }
        },
        "/api/Callbacks/{ID}/Cancel": {
            "post": {
                "summary": "Extension: stop a pending callback; its destination's next callback becomes due",
                "parameters": [callback_id],
                "responses": {
                    "200": {"description": "{ID, State: cancelled}"},
                    "401": plain_error,
                    "404": plain_error,
                    "409": plain_error | {"description": "It is not pending (delivered, failed or cancelled)"},
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard — Optimum Measures messaging API",
            "version": version,
            "description": "Authenticate with `Authorization: Bearer <key>`, `X-API-Key: <key>`, or the vendor's "
            "`UserName` (account) and `Password` (key) query parameters.",
        },
        "components": {
            "schemas": {
                "Error": _ERROR,
                "SendRequest": _SEND_BODY,
                "Status": _STATUS,
                "VoiceError": _VOICE_ERROR,
                "CallRequest": _CALL_BODY,
                "CallStatus": _CALL_STATUS,
                "Campaign": _CAMPAIGN,
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/api/SMS": {"post": send_op | {"operationId": "sms"}},
            "/api/SMS/Send": {"post": send_op | {"operationId": "smsSend"}},
            "/api/SMS/GetStatus": {
                "get": status_op | {"operationId": "smsGetStatus"},
                "post": status_op | {"operationId": "smsGetStatusPost"},
            },
            "/api/SMS/Cancel": {
                "post": {
                    "summary": "Extension: cancel a scheduled Send's destinations (or the one to MobileNo) that no "
                    "worker has taken yet; they end Cancelled, with a callback each when asked for",
                    "operationId": "smsCancel",
                    "parameters": [
                        {"name": "ID", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "MobileNo", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "How many were cancelled, and where each destination looked at stands",
                            "content": {
                                "application/json": {
                                    "example": {
                                        "ID": "1234",
                                        "Cancelled": 1,
                                        "Destinations": [
                                            {"MobileNo": "0016175551212", "Status": "Cancelled"},
                                            {"MobileNo": "12", "Status": "Failed"},
                                        ],
                                    }
                                }
                            },
                        },
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "Alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the database answers",
                    "security": [],
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
            **_voice_paths(),
            **extension_paths,
        },
    }


DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Switchboard API</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
.op{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.5em 1em}
.m{font-weight:bold;text-transform:uppercase;margin-right:.5em}
pre{background:#f5f5f5;padding:.5em;overflow:auto}
</style></head>
<body><h1 id="title">Switchboard API</h1><p id="desc"></p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. The full reference with curl examples is
docs/api.md in the source.</p><div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('title').textContent = doc.info.title + ' ' + doc.info.version;
  document.getElementById('desc').textContent = doc.info.description;
  const ops = document.getElementById('ops'); ops.textContent = '';
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const div = document.createElement('div'); div.className = 'op';
      const h = document.createElement('h3');
      const m = document.createElement('span'); m.className = 'm'; m.textContent = method;
      h.append(m, path); div.append(h);
      const p = document.createElement('p'); p.textContent = op.summary; div.append(p);
      const body = op.requestBody && op.requestBody.content['application/json'].schema;
      if (body && body.$ref) {
        const schema = doc.components.schemas[body.$ref.split('/').pop()];
        const pre = document.createElement('pre');
        pre.textContent = JSON.stringify(schema.example || schema.properties, null, 2); div.append(pre);
      }
      const ul = document.createElement('ul');
      for (const [code, r] of Object.entries(op.responses)) {
        const li = document.createElement('li'); li.textContent = code + ': ' + r.description; ul.append(li);
      }
      div.append(ul); ops.append(div);
    }
  }
});
</script></body></html>
"""
