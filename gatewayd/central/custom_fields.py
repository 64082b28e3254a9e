"""Custom fields: typed, chain-defined extra fields on members, items, staff and gifts.

A definition names a field (``key``), its type (text, number, choice, date, boolean),
whether it is required, its default and whether search may filter on it. Values are
validated against the definitions on every write (``write_values``, called inside the
writer's transaction) and stored one typed row per field (see ``models_members_ext``), so
searchable fields are index-backed on both backends.

Rules: on create, a missing field takes its default; a required field without value or
default is refused. On update only the fields sent change; ``null`` clears an optional
field and is refused for a required one. Unknown keys are refused (a typo must not vanish).
Member fields flagged ``member_editable`` may also be changed by the member in the portal
(``portal.py``, through the same validation); the others are shown there read-only.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

import sqlalchemy as sa
from pydantic import Field, ValidationError, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from .clock import Clock, iso, to_millis
from .db import Database, is_unique_violation
from .errors import Conflict, Invalid, NotFound
from .models import members
from .models_catalog import catalog_products
from .models_members_ext import custom_field_defs, custom_values
from .models_staff_gifts import gifts, staff
from .schemas import MAX_ROW_ID, Body, Out

Entity = Literal["member", "item", "staff", "gift"]
FieldType = Literal["text", "number", "choice", "date", "boolean"]
FieldKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="a-z 0-9 _")]
Scalar = str | int | float | bool | None
MAX_TEXT: Final = 500
MAX_CHOICES: Final = 200
MAX_FIELDS_PER_ENTITY: Final = 200
# Entities whose values can be written (each has its registry: members, catalog products,
# staff and gifts).
VALUE_ENTITIES: Final = ("member", "item", "staff", "gift")
READ_BATCH: Final = 500  # ids per IN (...) when reading many entities' values
K = TypeVar("K", int, str)


class FieldCreate(Body):
    entity: Entity
    key: FieldKey
    label: Annotated[str, Field(min_length=1, max_length=200)]
    type: FieldType
    required: bool = False
    searchable: bool = False
    default: Scalar = None
    choices: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]] | None = Field(
        default=None, max_length=MAX_CHOICES, description="choice fields only"
    )
    member_editable: bool = Field(
        default=False, description="member fields only: members may change it in the portal"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FieldCreate:
        if (self.type == "choice") != (self.choices is not None):
            raise ValueError("choices are required for, and only for, choice fields")
        if self.member_editable and self.entity != "member":
            raise ValueError("only member fields can be member_editable")
        if self.choices is not None and len(set(self.choices)) != len(self.choices):
            raise ValueError("choices must be distinct")
        if self.default is not None:
            coerce(self.as_definition(0), self.default)
        return self

    def as_definition(self, field_id: int) -> Definition:
        return Definition(
            id=field_id,
            entity=self.entity,
            key=self.key,
            label=self.label,
            type=self.type,
            required=self.required,
            searchable=self.searchable,
            default=self.default,
            choices=tuple(self.choices or ()),
            active=True,
            member_editable=self.member_editable,
        )


class FieldUpdate(Body):
    """Label, flags, default, choices and active may change; key, entity and type may not."""

    label: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    required: bool | None = None
    searchable: bool | None = None
    member_editable: bool | None = None
    default: Scalar = None
    choices: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]] | None = Field(
        default=None, max_length=MAX_CHOICES
    )
    active: bool | None = None


class FieldOut(Out):
    id: int
    entity: str
    key: str
    label: str
    type: str
    required: bool
    searchable: bool
    default: Scalar
    choices: list[str] | None
    active: bool
    member_editable: bool
    created_at: str
    updated_at: str


class FieldList(Out):
    items: list[FieldOut]


class CustomValues(Body):
    """``PATCH /v1/custom-values/{entity}/{id}``: the fields to change (null clears)."""

    custom: dict[str, Scalar]


class CustomValuesOut(Out):
    entity: str
    entity_id: str
    custom: dict[str, Scalar]


@dataclass(frozen=True, kw_only=True)
class Definition:
    id: int
    entity: str
    key: str
    label: str
    type: str
    required: bool
    searchable: bool
    default: Scalar
    choices: tuple[str, ...]
    active: bool
    member_editable: bool = False


def _definition(row: Any) -> Definition:
    return Definition(
        id=row.id,
        entity=row.entity,
        key=row.key,
        label=row.label,
        type=row.type,
        required=row.required,
        searchable=row.searchable,
        default=json.loads(row.default_json) if row.default_json is not None else None,
        choices=tuple(json.loads(row.choices_json)) if row.choices_json else (),
        active=row.active,
        member_editable=row.member_editable,
    )


def coerce(field: Definition, value: Scalar) -> Scalar:
    """The stored form of ``value`` for ``field`` (JSON types only), or ``Invalid``.

    Strict like every request body: ``"5"`` is not a number, ``1`` is not ``true``; dates are
    ``YYYY-MM-DD`` strings. Imports convert their cells to these types before calling.
    """
    if value is None:
        return None
    where = f"custom.{field.key}"
    if field.type == "boolean":
        if not isinstance(value, bool):
            raise Invalid(f"{where}: must be true or false", code="invalid_custom_field")
        return value
    if field.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"{where}: must be a number", code="invalid_custom_field")
        if not math.isfinite(value) or abs(value) > 1e15:
            raise Invalid(f"{where}: must be a finite number", code="invalid_custom_field")
        return value
    if not isinstance(value, str):
        raise Invalid(f"{where}: must be a string", code="invalid_custom_field")
    if "\x00" in value or len(value) > MAX_TEXT:
        raise Invalid(f"{where}: at most {MAX_TEXT} characters", code="invalid_custom_field")
    if field.type == "choice" and value not in field.choices:
        raise Invalid(f"{where}: not one of the field's choices", code="invalid_custom_field")
    if field.type == "date":
        try:
            if len(value) != 10:
                raise ValueError(value)
            dt.date.fromisoformat(value)
        except ValueError as exc:
            raise Invalid(
                f"{where}: must be a date as YYYY-MM-DD", code="invalid_custom_field"
            ) from exc
    return value


def _columns(field: Definition, value: Scalar) -> dict[str, Any]:
    """The typed column(s) one value is stored in."""
    out: dict[str, Any] = {"value_text": None, "value_number": None, "value_date": None}
    if field.type in ("text", "choice"):
        out["value_text"] = value
    elif field.type == "number":
        out["value_number"] = float(value)  # type: ignore[arg-type]
    elif field.type == "boolean":
        out["value_number"] = 1.0 if value else 0.0
    else:
        out["value_date"] = dt.date.fromisoformat(str(value))
    return out


def _value(field: Definition, row: Any) -> Scalar:
    if field.type in ("text", "choice"):
        return row.value_text  # type: ignore[no-any-return]
    if field.type == "boolean":
        return None if row.value_number is None else bool(row.value_number)
    if field.type == "number":
        number = row.value_number
        if number is not None and float(number).is_integer():
            return int(number)
        return number  # type: ignore[no-any-return]
    return row.value_date.isoformat() if row.value_date is not None else None


async def definitions(
    conn: AsyncConnection, entity: str, *, active_only: bool = True
) -> dict[str, Definition]:
    query = sa.select(custom_field_defs).where(custom_field_defs.c.entity == entity)
    if active_only:
        query = query.where(custom_field_defs.c.active)
    rows = (await conn.execute(query.order_by(custom_field_defs.c.id))).all()
    return {row.key: _definition(row) for row in rows}


def validate(
    defs: Mapping[str, Definition], given: Mapping[str, Scalar] | None, *, creating: bool
) -> dict[str, Scalar]:
    """The values to store (``None`` = delete), checked against ``defs``; raises ``Invalid``.

    Pure, so imports check a whole file before writing anything.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(defs))
    if unknown:
        raise Invalid(
            f"unknown custom fields: {', '.join(unknown)[:200]}", code="unknown_custom_field"
        )
    out: dict[str, Scalar] = {}
    for key, field in defs.items():
        if key in given:
            value = coerce(field, given[key])
        elif creating:
            value = field.default
        else:
            continue
        if value is None and field.required:
            raise Invalid(f"custom.{key}: required", code="custom_field_required")
        out[key] = value
    return out


async def write_values(
    conn: AsyncConnection,
    entity: str,
    entity_id: int | str,
    given: Mapping[str, Scalar] | None,
    *,
    creating: bool,
) -> None:
    """Validate and store custom values in the caller's transaction."""
    defs = await definitions(conn, entity)
    if not defs and not given:
        return
    await store(conn, entity, entity_id, defs, validate(defs, given, creating=creating))


async def store(
    conn: AsyncConnection,
    entity: str,
    entity_id: int | str,
    defs: Mapping[str, Definition],
    values: Mapping[str, Scalar],
) -> None:
    """Write already validated values (delete then insert: one small row per field)."""
    key = str(entity_id)
    for name, value in values.items():
        field = defs[name]
        where = (
            (custom_values.c.entity == entity)
            & (custom_values.c.entity_id == key)
            & (custom_values.c.field_id == field.id)
        )
        await conn.execute(custom_values.delete().where(where))
        if value is not None:
            await conn.execute(
                custom_values.insert().values(
                    entity=entity, entity_id=key, field_id=field.id, **_columns(field, value)
                )
            )


async def read_values(
    conn: AsyncConnection, entity: str, entity_id: int | str
) -> dict[str, Scalar]:
    """Every active field of the entity (``None`` when it has no value)."""
    defs = await definitions(conn, entity)
    if not defs:
        return {}
    by_id = {field.id: field for field in defs.values()}
    rows = (
        await conn.execute(
            sa.select(custom_values).where(
                custom_values.c.entity == entity, custom_values.c.entity_id == str(entity_id)
            )
        )
    ).all()
    out: dict[str, Scalar] = {key: None for key in defs}
    for row in rows:
        field = by_id.get(row.field_id)
        if field is not None:
            out[field.key] = _value(field, row)
    return out


async def read_many(
    conn: AsyncConnection,
    entity: str,
    entity_ids: Sequence[K],
    defs: Mapping[str, Definition] | None = None,
) -> dict[K, dict[str, Scalar]]:
    """Values of many entities at once, keyed by the ids as given (int member ids, str
    product ids); one query per ``READ_BATCH`` ids, for lists, search results and exports."""
    if defs is None:
        defs = await definitions(conn, entity)
    out: dict[K, dict[str, Scalar]] = {i: {k: None for k in defs} for i in entity_ids}
    if not defs or not entity_ids:
        return out
    by_id = {field.id: field for field in defs.values()}
    by_text = {str(i): i for i in entity_ids}
    texts = list(by_text)
    for start in range(0, len(texts), READ_BATCH):
        rows = (
            await conn.execute(
                sa.select(custom_values).where(
                    custom_values.c.entity == entity,
                    custom_values.c.entity_id.in_(texts[start : start + READ_BATCH]),
                )
            )
        ).all()
        for row in rows:
            field = by_id.get(row.field_id)
            if field is not None:
                out[by_text[row.entity_id]][field.key] = _value(field, row)
    return out


def _out(row: Any) -> dict[str, Any]:
    field = _definition(row)
    return {
        "id": field.id,
        "entity": field.entity,
        "key": field.key,
        "label": field.label,
        "type": field.type,
        "required": field.required,
        "searchable": field.searchable,
        "default": field.default,
        "choices": list(field.choices) if field.type == "choice" else None,
        "active": field.active,
        "member_editable": field.member_editable,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


class CustomFields:
    """Definitions (HQ) and the values of entities that have no endpoint of their own."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create(self, data: FieldCreate) -> dict[str, Any]:
        now = to_millis(self._clock.now())
        try:
            async with self._db.write() as conn:
                count = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(custom_field_defs)
                    .where(custom_field_defs.c.entity == data.entity)
                )
                if (count or 0) >= MAX_FIELDS_PER_ENTITY:
                    raise Conflict("too many custom fields", code="too_many_fields")
                field_id = await conn.scalar(
                    custom_field_defs.insert()
                    .values(
                        entity=data.entity,
                        key=data.key,
                        label=data.label,
                        type=data.type,
                        required=data.required,
                        searchable=data.searchable,
                        default_json=None if data.default is None else json.dumps(data.default),
                        choices_json=None if data.choices is None else json.dumps(data.choices),
                        active=True,
                        member_editable=data.member_editable,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(custom_field_defs.c.id)
                )
        except sa.exc.IntegrityError as exc:
            if is_unique_violation(exc):
                raise Conflict(
                    f"{data.entity} already has a field {data.key}", code="field_taken"
                ) from exc
            raise
        assert field_id is not None
        return await self.get(field_id)

    async def get(self, field_id: int) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(custom_field_defs).where(custom_field_defs.c.id == field_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no custom field {field_id}", code="field_not_found")
        return _out(row)

    async def list(self, entity: str | None) -> list[dict[str, Any]]:
        query = sa.select(custom_field_defs).order_by(custom_field_defs.c.id)
        if entity is not None:
            query = query.where(custom_field_defs.c.entity == entity)
        async with self._db.read() as conn:
            return [_out(row) for row in (await conn.execute(query)).all()]

    async def update(self, field_id: int, data: FieldUpdate) -> dict[str, Any]:
        for name in ("label", "required", "searchable", "active", "member_editable"):
            if name in data.model_fields_set and getattr(data, name) is None:
                raise Invalid(f"{name} cannot be null", code="invalid_request")
        current = await self.get(field_id)
        merged = {**current, **{k: getattr(data, k) for k in data.model_fields_set}}
        if "choices" in data.model_fields_set and current["type"] != "choice":
            raise Invalid("only choice fields have choices", code="invalid_request")
        try:
            checked = FieldCreate.model_validate(
                {k: merged[k] for k in ("entity", "key", "label", "type", "required", "searchable")}
                | {k: merged[k] for k in ("default", "choices", "member_editable")}
            )
        except ValidationError as exc:
            reasons = "; ".join(e["msg"] for e in exc.errors(include_url=False))
            raise Invalid(reasons[:500], code="invalid_request") from exc
        async with self._db.write() as conn:
            await conn.execute(
                custom_field_defs.update()
                .where(custom_field_defs.c.id == field_id)
                .values(
                    label=checked.label,
                    required=checked.required,
                    searchable=checked.searchable,
                    default_json=None if checked.default is None else json.dumps(checked.default),
                    choices_json=None if checked.choices is None else json.dumps(checked.choices),
                    active=merged["active"],
                    member_editable=checked.member_editable,
                    updated_at=to_millis(self._clock.now()),
                )
            )
        return await self.get(field_id)

    async def _exists(self, conn: AsyncConnection, entity: str, entity_id: str) -> None:
        if entity not in VALUE_ENTITIES:
            raise Invalid(
                f"{entity} has no registry yet: its fields can be defined, not filled",
                code="entity_unsupported",
            )
        if entity == "item":
            found = await conn.scalar(
                sa.select(catalog_products.c.id).where(catalog_products.c.id == entity_id)
            )
        else:  # integer row ids (an id beyond any row id cannot exist)
            table = {"member": members, "staff": staff, "gift": gifts}[entity]
            found = (
                entity_id.isdigit()
                and int(entity_id) <= MAX_ROW_ID
                and await conn.scalar(sa.select(table.c.id).where(table.c.id == int(entity_id)))
            )
        if not found:
            raise NotFound(f"no {entity} {entity_id}", code=f"{entity}_not_found")

    async def values(self, entity: str, entity_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            await self._exists(conn, entity, entity_id)
            custom = await read_values(conn, entity, entity_id)
        return {"entity": entity, "entity_id": entity_id, "custom": custom}

    async def set_values(
        self, entity: str, entity_id: str, given: Mapping[str, Scalar]
    ) -> dict[str, Any]:
        async with self._db.write() as conn:
            await self._exists(conn, entity, entity_id)
            await write_values(conn, entity, entity_id, given, creating=False)
        return await self.values(entity, entity_id)
