"""The parameters of the SMS and voice lookups (GetStatus, and the voice Cancel): `id`, `referenceid` and
`mobileno`, from the query string or from the JSON body of a POST that has neither ID there, and the
reading of an ID."""

from __future__ import annotations

from switchboard.api.http import Receive, Scope, read_body
from switchboard.domain.lenient_json import MAX_BODY_BYTES, parse_body
from switchboard.errors import BodyTooLarge, ClientGone, InvalidJson

LOOKUP_NAMES = ("id", "referenceid", "mobileno")


async def add_body_params(scope: Scope, receive: Receive, params: dict[str, str]) -> None:
    """Add the `LOOKUP_NAMES` a POST's JSON body carries (names in any case, values as `text` reads them) to
    `params` (from `http.query`) when it has no `id` nor `referenceid`; a name the query string has already
    keeps its value. A body that is not a JSON object, too large or cut off adds nothing."""
    if "id" in params or "referenceid" in params or scope["method"] != "POST":
        return
    try:
        doc = parse_body(await read_body(scope, receive, MAX_BODY_BYTES))
    except (BodyTooLarge, InvalidJson, ClientGone):
        return
    if isinstance(doc, dict):
        lowered = {str(k).lower(): v for k, v in doc.items()}
        for name in LOOKUP_NAMES:
            value = text(lowered.get(name))
            if value is not None and name not in params:
                params[name] = value


def id_number(ident: str) -> int | None:
    """An ID is a decimal 63-bit integer; anything else (including '²', which str.isdigit accepts) is not."""
    if not (ident.isascii() and ident.isdigit() and len(ident) <= 19):
        return None
    number = int(ident)
    return number if number < 2**63 else None


def text(value: object) -> str | None:
    """A JSON value as a parameter: a string or an integer, stripped; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        return str(value).strip()
    return None
