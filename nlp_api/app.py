"""The example NLP API: entity extraction behind the backoffice's forward-auth.

`POST /v1/entities {"text": "..."}` returns the entities found, with their
character offsets. A spaCy pipeline that needs no download: a blank English
pipeline with an entity ruler. The call's identity comes from the headers
forward-auth added (X-User-Id, X-Plan, X-Request-Id, X-Lease-Id; Traefik and
Caddy delete any a client sent). After answering, it reports the call's words
and characters to the backoffice and releases its concurrency lease.

Run: `uvicorn nlp_api.app:app`, with BACKOFFICE_URL and USAGE_SERVICE_TOKEN set.
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
    user_id: str | None
    plan: str | None


@app.post("/v1/entities")
def entities(
    body: Text,
    tasks: BackgroundTasks,
    x_user_id: str | None = Header(default=None),
    x_plan: str | None = Header(default=None),
    x_request_id: str | None = Header(default=None),
    x_lease_id: str | None = Header(default=None),
) -> Entities:
    doc = nlp(body.text)
    found = [Entity(start=e.start_char, end=e.end_char, type=e.label_, text=e.text) for e in doc.ents]
    words = sum(1 for token in doc if not token.is_punct and not token.is_space)
    tasks.add_task(report, x_request_id, words, len(body.text), x_lease_id)
    return Entities(entities=found, user_id=x_user_id, plan=x_plan)


def report(request_id: str | None, words: int, characters: int, lease: str | None) -> None:
    """After the answer: the quantities to the backoffice's usage, then the lease back."""
    try:
        if request_id:
            quantities = json.dumps([{"request_id": request_id, "words": words, "characters": characters}])
            post("/usage/quantities", quantities, {"Authorization": f"Bearer {USAGE_SERVICE_TOKEN}", "Content-Type": "application/json"})
        if lease:
            post("/forward-auth/release", "", {"X-Lease-Id": lease})
    except OSError:
        log.exception("Reporting call %s to the backoffice failed", request_id)


def post(path: str, body: str, headers: dict[str, str]) -> None:
    request = urllib.request.Request(BACKOFFICE_URL + path, data=body.encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=5):
        pass
