"""The example NLP API: entity extraction behind the backoffice's forward-auth.

`POST /v1/entities {"text": "..."}` returns the entities found, with their
character offsets. A spaCy pipeline that needs no download: a blank English
pipeline with an entity ruler. The call's identity comes from the headers
forward-auth added (X-Organization-Id: the customer; X-User-Id: the member
who created the token; X-Plan, X-Request-Id, X-Lease-Id; Traefik deletes any
a client sent). It releases the call's concurrency lease
before answering, whatever happens (a client calling again at once must not
find its own finished call still in flight), and reports the call's words and
characters to the backoffice after answering.

Run: `uvicorn nlp_api.app:app`, with BACKOFFICE_URL, FORWARD_AUTH_URL (the forward-auth
server, which holds the leases; default BACKOFFICE_URL) and USAGE_SERVICE_TOKEN set.
"""

import json
import logging
import os
import urllib.request

import spacy
from fastapi import BackgroundTasks, FastAPI, Header
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

BACKOFFICE_URL = os.environ.get("BACKOFFICE_URL", "http://127.0.0.1:8000")
FORWARD_AUTH_URL = os.environ.get("FORWARD_AUTH_URL", BACKOFFICE_URL)
USAGE_SERVICE_TOKEN = os.environ.get("USAGE_SERVICE_TOKEN", "")

PATTERNS = [
    {"label": "PERSON", "pattern": "Ada Lovelace"},
    {"label": "PERSON", "pattern": "Alan Turing"},
    {"label": "PERSON", "pattern": "Grace Hopper"},
    {"label": "PERSON", "pattern": "Charles Babbage"},
    {"label": "GPE", "pattern": "London"},
    {"label": "GPE", "pattern": "Paris"},
    {"label": "GPE", "pattern": "Berlin"},
    {"label": "GPE", "pattern": [{"LOWER": "new"}, {"LOWER": "york"}]},
    {"label": "ORG", "pattern": "Royal Society"},
    {"label": "ORG", "pattern": [{"LOWER": "university"}, {"LOWER": "of"}, {"IS_TITLE": True}]},
    {"label": "DATE", "pattern": [{"SHAPE": "dddd"}]},
]

nlp = spacy.blank("en")
nlp.add_pipe("entity_ruler").add_patterns(PATTERNS)

app = FastAPI(title="Example NLP API")


class Text(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


class Entity(BaseModel):
    start: int
    end: int
    type: str
    text: str


class Entities(BaseModel):
    entities: list[Entity]
    organization_id: str | None
    user_id: str | None
    plan: str | None


@app.post("/v1/entities")
def entities(
    body: Text,
    tasks: BackgroundTasks,
    x_organization_id: str | None = Header(default=None),
    x_user_id: str | None = Header(default=None),
    x_plan: str | None = Header(default=None),
    x_request_id: str | None = Header(default=None),
    x_lease_id: str | None = Header(default=None),
) -> Entities:
    try:
        doc = nlp(body.text)
    finally:  # whatever happens, the call no longer counts against the concurrency limit
        if x_lease_id:
            report(FORWARD_AUTH_URL + "/forward-auth/release", "", {"X-Lease-Id": x_lease_id})
    found = [Entity(start=e.start_char, end=e.end_char, type=e.label_, text=e.text) for e in doc.ents]
    if x_request_id:
        words = sum(1 for token in doc if not token.is_punct and not token.is_space)
        quantities = json.dumps([{"request_id": x_request_id, "words": words, "characters": len(body.text)}])
        headers = {"Authorization": f"Bearer {USAGE_SERVICE_TOKEN}", "Content-Type": "application/json"}
        tasks.add_task(report, BACKOFFICE_URL + "/usage/quantities", quantities, headers)  # after the answer
    return Entities(entities=found, organization_id=x_organization_id, user_id=x_user_id, plan=x_plan)


def report(url: str, body: str, headers: dict[str, str]) -> None:
    """POST to the backoffice; a failure is logged, never the caller's problem."""
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except OSError:
        log.exception("POST %s failed", url)
