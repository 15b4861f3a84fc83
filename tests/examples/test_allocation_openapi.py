"""The allocation service against its own OpenAPI document, with requests hypothesis makes.

For every operation the document lists, requests are generated from the
schema it declares (valid ones, some over a small pool of references so that
batches exist and collide), valid ones with one part broken, and arbitrary
JSON. Each answer must:

- never be a 5xx other than a declared 503;
- have a status the operation declares, and a body its schema for that status admits;
- be a 422 exactly when the request breaks the declared schema: the service
  refuses what its schema forbids, and accepts (perhaps with a 400, 404 or
  409 of the rules) what it allows.

The schema is read as the service reads JSON: an integer is a JSON number
without a fraction or exponent (not `1.0`), a query's integer is written in
decimal digits, a `date` is text of the form YYYY-MM-DD, and a `pattern` is
read as ECMA-262 reads it (`$` ends the text, not a line). Run on SQLite
and PostgreSQL; the seed is printed, and `TIDINGS_SEED` replays a run.
"""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import hypothesis
import hypothesis.strategies as st
import jsonschema
import pytest
from fastapi.testclient import TestClient

from examples.allocation import service as allocation_service
from tests.services import postgres_dsn

SEED_ENV = "TIDINGS_SEED"
EXAMPLES = 250
ROUNDS = 4
RULE_ANSWERS = {200, 201, 202, 400, 404, 409, 422}
"""What the generated requests must meet: every rule of the service, not only the door."""
POOL = ["b1", "b2", "LAMP", "TABLE", "o1"]
"""Values string fields often take, so that batches exist, collide and get allocated to."""

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
"""Any JSON value."""

NASTY_TEXT = st.sampled_from(["", "a\x00b", "x" * 256, "é" * 300, "\x00", "a\n", "\t"]) | st.text()
NASTY_NUMBER = st.sampled_from([-1, 0, 2**31 - 1, 2**31, 2**63, 2**64, -(2**63), 1.0, True])


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    document: dict[str, Any]

    @property
    def parameters(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.document.get("parameters", [])
        return found

    @property
    def body_schema(self) -> dict[str, Any] | None:
        body = self.document.get("requestBody")
        if body is None:
            return None
        schema: dict[str, Any] = body["content"]["application/json"]["schema"]
        return schema

    def declared(self) -> dict[int, dict[str, Any] | None]:
        """Each status the operation declares, with the schema of its JSON body."""
        found: dict[int, dict[str, Any] | None] = {}
        for status, response in self.document["responses"].items():
            content = response.get("content", {}).get("application/json")
            found[int(status)] = None if content is None else content.get("schema", {})
        return found


@dataclass(frozen=True)
class Request:
    operation: Operation
    url: str
    body: Any
    has_body: bool
    valid: bool
    """Whether the request keeps to the declared schema."""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    with _store_url(request.param, tmp_path_factory) as url, pytest.MonkeyPatch.context() as patch:
        # A read waiting for a position the read model never reaches answers 503 at once.
        patch.setattr(allocation_service, "READ_MODEL_WAIT", 0.01)
        app = allocation_service.create_app(url)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


def test_every_answer_is_declared_and_the_schema_is_enforced(
    client: TestClient, record_property: Callable[[str, object], None]
) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    record_property("seed", seed)
    print(f"\n[{SEED_ENV}={seed}]", end=" ")
    document = client.get("/openapi.json").json()
    components = {"components": document["components"]}
    operations = [
        Operation(method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert {op.path for op in operations} >= {"/add_batch", "/allocate", "/allocations/{orderid}"}
    statuses: dict[tuple[str, int], int] = {}
    # State for the generated requests to meet: every pooled reference names a batch
    # already, so that a valid batch reusing one is refused (409) often, not by chance.
    for ref in POOL:
        batch = {"ref": ref, "sku": POOL[0], "qty": 10, "eta": None}
        assert client.post("/add_batch", json=batch).status_code == 201

    def one_request(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(operations), label="operation")
        request = data.draw(requests(operation, components), label="request")
        if request.has_body:
            response = client.request(operation.method, request.url, json=request.body)
        else:
            response = client.request(operation.method, request.url)
        status = response.status_code
        key = (f"{operation.method.upper()} {operation.path}", status)
        statuses[key] = statuses.get(key, 0) + 1
        declared = operation.declared()
        assert status in declared, f"{status} is not declared: {response.text[:300]}"
        schema = declared[status]
        if schema is not None:
            body = response.json()
            errors = [e.message for e in validator(schema, components).iter_errors(body)]
            assert not errors, f"the {status} body {body!r} breaks its schema: {errors}"
        if request.valid:
            assert status != 422, f"a request the schema allows was refused: {response.text}"
        else:
            assert status == 422, f"a request the schema forbids got {status}: {response.text}"

    settings = hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    # A round of generated requests may miss one of the rules by chance; more rounds (each
    # seeded from the printed seed) make a miss that is no defect vanishingly rare.
    for round_seed in range(seed, seed + ROUNDS):
        hypothesis.seed(round_seed)(settings(hypothesis.given(st.data())(one_request)))()
        if {status for _, status in statuses} >= RULE_ANSWERS:
            break
    record_property("statuses", json.dumps({f"{k[0]} {k[1]}": n for k, n in statuses.items()}))
    # The generated requests reached the rules, not only the door.
    seen = {status for _, status in statuses}
    assert seen >= RULE_ANSWERS, statuses


def requests(operation: Operation, components: dict[str, Any]) -> st.SearchStrategy[Request]:
    """Requests of `operation`: its parameters and body, valid or with one part broken."""

    @st.composite
    def build(draw: st.DrawFn) -> Request:
        valid = True
        path, query = operation.path, {}
        for parameter in operation.parameters:
            schema = parameter["schema"]
            name = parameter["name"]
            if parameter["in"] == "path":
                # Text a URL can carry as one segment: "." and ".." would move up a level.
                segment = from_schema(schema, components).filter(lambda v: v not in (".", ".."))
                value = draw(segment | POOL_TEXT)
                if draw(st.booleans()):
                    value = draw(NASTY_TEXT.filter(lambda v: v not in ("", ".", "..")))
                path = path.replace(f"{{{name}}}", quote(value, safe=""))
                valid &= allows(schema, components, value)
            elif draw(st.booleans()):
                value = draw(from_schema(schema, components) | NASTY_NUMBER | NASTY_TEXT)
                query[name] = value
                valid &= allows(schema, components, _query_value(value))
        if query:
            path += "?" + "&".join(
                f"{quote(name)}={quote(_query_text(v), safe='')}" for name, v in query.items()
            )
        body_schema = operation.body_schema
        if body_schema is None:
            return Request(operation, path, None, False, valid)
        body = draw(
            st.one_of(
                bodies(body_schema, components),
                bodies(body_schema, components).flatmap(broken),
                JSON,
            )
        )
        return Request(operation, path, body, True, valid and allows(body_schema, components, body))

    return build()


POOL_TEXT = st.sampled_from(POOL)


def from_schema(schema: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values `schema` allows, for the part of JSON Schema the document uses.

    `root` holds what `$ref`s point into. Anything else in a schema fails
    loudly, so the document cannot outgrow what is tested unseen.
    """
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return from_schema(target, root)
    if "anyOf" in schema:
        return st.one_of([from_schema(option, root) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**70) - 1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**70 + 1) - 1)
        return st.integers(low, high) | st.sampled_from([low, high])
    if kind == "string":
        if schema.get("format") == "date":
            return st.dates().map(date.isoformat)
        pattern = schema.get("pattern")
        text = st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength"))
        if schema.get("maxLength"):
            text |= st.text(min_size=schema["maxLength"], max_size=schema["maxLength"])
        return text if pattern is None else text.filter(lambda t: matches(pattern, t))
    if kind == "object":
        properties = {
            name: from_schema(value, root) for name, value in schema.get("properties", {}).items()
        }
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: v for k, v in properties.items() if k in required},
            optional={k: v for k, v in properties.items() if k not in required},
        )
    raise NotImplementedError(f"no strategy for the schema {schema!r}")


def bodies(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Bodies the schema allows; their text fields often from `POOL`."""

    @st.composite
    def with_pool(draw: st.DrawFn) -> Any:
        body = draw(from_schema(schema, components))
        if isinstance(body, dict):
            for key, value in body.items():
                if isinstance(value, str) and key != "eta" and draw(st.booleans()):
                    body[key] = draw(POOL_TEXT)
        return body

    return with_pool()


def broken(body: Any) -> st.SearchStrategy[Any]:
    """`body` with one field replaced, dropped, or one added."""
    if not isinstance(body, dict) or not body:
        return st.just(body)
    keys = sorted(body)
    replaced = st.tuples(st.sampled_from(keys), JSON | NASTY_TEXT | NASTY_NUMBER).map(
        lambda change: {**body, change[0]: change[1]}
    )
    dropped = st.sampled_from(keys).map(lambda key: {k: v for k, v in body.items() if k != key})
    added = (
        st.text(min_size=1).filter(lambda key: key not in body).map(lambda key: {**body, key: 1})
    )
    return replaced | dropped | added


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def matches(pattern: str, text: str) -> bool:
    """Whether `text` matches an ECMA-262 `pattern`: a last `$` ends the text, not a line."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, text) is not None


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and not matches(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_formats = jsonschema.FormatChecker(formats=())
_formats.checks("date")(_is_date)
_types = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, value: type(value) is int
)
_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, validators={"pattern": _pattern}, type_checker=_types
)


def validator(schema: dict[str, Any], components: dict[str, Any]) -> jsonschema.protocols.Validator:
    validating: jsonschema.protocols.Validator = _Validator(
        {**schema, **components}, format_checker=_formats
    )
    return validating


def allows(schema: dict[str, Any], components: dict[str, Any], value: Any) -> bool:
    return validator(schema, components).is_valid(value)


def _query_text(value: Any) -> str:
    """How a value is written in a query string."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _query_value(value: Any) -> Any:
    """The JSON value a query parameter stands for: decimal digits are an integer, the rest text."""
    text = _query_text(value)
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else text


@contextmanager
def _store_url(backend: str, tmp: pytest.TempPathFactory) -> Iterator[str]:
    """A store URL of its own on `backend`, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp.mktemp('openapi') / 'events.db'}"
        return
    dsn = postgres_dsn()
    schema = f"openapi_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
