"""Catalog, pricing-rule and store pricing endpoints, and ``POST /v1/orders/quote``.

Catalog and level reads are for any key (a till lists products and prices); every write and
the rules themselves are for HQ (admin keys). A quote may be asked by any key of the store it
names: an admin for any store, a gateway only for its own. Products, categories, levels and
store settings are written with ``PUT`` (create or replace, so a retry is harmless); rules get
integer ids and are deactivated, never deleted, so a past quote's ``rule_id`` still resolves.
"""

from __future__ import annotations

import re

from aiohttp import web

from .api import ID_QUERY, Operation, QueryParam, parse_body, path_int, principal, respond
from .api import services as services_of
from .errors import Invalid, NotFound
from .pricing import Quote, QuoteRequest
from .schemas_catalog import (
    LEVEL_PATTERN,
    CategoryIn,
    CategoryList,
    CategoryOut,
    LevelIn,
    LevelList,
    LevelOut,
    ProductIn,
    ProductList,
    ProductOut,
    RuleIn,
    RuleList,
    RuleOut,
    StorePricingIn,
    StorePricingOut,
)

LEVEL_ID = re.compile(LEVEL_PATTERN)
KINDS = ("level", "product", "category", "birthday", "store", "time_slot", "order_amount")


def _id_query(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not ID_QUERY.fullmatch(value):
        raise Invalid(f"{name}: not a valid id", code="invalid_request")
    return value


def _path_id(request: web.Request, name: str) -> str:
    """A string id from the path; one outside the id alphabet cannot exist (404)."""
    value = request.match_info[name]
    if not ID_QUERY.fullmatch(value):
        what = name.removesuffix("_id")
        raise NotFound(f"no such {what} (ids are 1-64 of A-Z a-z 0-9 _ . -)", code="not_found")
    return value


async def quote(request: web.Request) -> web.Response:
    data = await parse_body(request, QuoteRequest)
    principal(request).require_store(data.store)
    priced = await services_of(request).pricing.quote(data)
    # pydantic's own JSON encoder: a 50-line quote is ~50 kB, several times faster than
    # model_dump + json.dumps; the shape is the Quote model's, as the document says.
    return web.Response(body=priced.model_dump_json().encode(), content_type="application/json")


async def list_categories(request: web.Request) -> web.Response:
    items = await services_of(request).catalog.list_categories()
    return respond(CategoryList, {"items": items})


async def put_category(request: web.Request) -> web.Response:
    category_id = _path_id(request, "category_id")
    data = await parse_body(request, CategoryIn)
    return respond(CategoryOut, await services_of(request).catalog.put_category(category_id, data))


async def list_products(request: web.Request) -> web.Response:
    category = _id_query(request, "category")
    items = await services_of(request).catalog.list_products(category)
    return respond(ProductList, {"items": items})


async def get_product(request: web.Request) -> web.Response:
    product_id = _path_id(request, "product_id")
    return respond(ProductOut, await services_of(request).catalog.get_product(product_id))


async def put_product(request: web.Request) -> web.Response:
    product_id = _path_id(request, "product_id")
    data = await parse_body(request, ProductIn)
    return respond(ProductOut, await services_of(request).catalog.put_product(product_id, data))


async def list_levels(request: web.Request) -> web.Response:
    return respond(LevelList, {"items": await services_of(request).catalog.list_levels()})


async def put_level(request: web.Request) -> web.Response:
    level = _path_id(request, "level")
    if not LEVEL_ID.fullmatch(level):
        raise Invalid("level: at most 32 characters (as members.level)", code="invalid_request")
    data = await parse_body(request, LevelIn)
    return respond(LevelOut, await services_of(request).catalog.put_level(level, data))


async def get_store_pricing(request: web.Request) -> web.Response:
    store_id = _path_id(request, "store_id")
    principal(request).require_store(store_id)
    settings = await services_of(request).catalog.get_store_pricing(store_id)
    return respond(StorePricingOut, settings)


async def put_store_pricing(request: web.Request) -> web.Response:
    store_id = _path_id(request, "store_id")
    data = await parse_body(request, StorePricingIn)
    settings = await services_of(request).catalog.put_store_pricing(store_id, data)
    return respond(StorePricingOut, settings)


async def list_rules(request: web.Request) -> web.Response:
    store = _id_query(request, "store")
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise Invalid(f"kind: one of {', '.join(KINDS)}", code="invalid_request")
    items = await services_of(request).catalog.list_rules(store, kind)
    return respond(RuleList, {"items": items})


async def create_rule(request: web.Request) -> web.Response:
    data = await parse_body(request, RuleIn)
    return respond(RuleOut, await services_of(request).catalog.create_rule(data), 201)


async def get_rule(request: web.Request) -> web.Response:
    rule_id = path_int(request, "rule_id")
    return respond(RuleOut, await services_of(request).catalog.get_rule(rule_id))


async def replace_rule(request: web.Request) -> web.Response:
    rule_id = path_int(request, "rule_id")
    data = await parse_body(request, RuleIn)
    return respond(RuleOut, await services_of(request).catalog.replace_rule(rule_id, data))


async def deactivate_rule(request: web.Request) -> web.Response:
    rule_id = path_int(request, "rule_id")
    return respond(RuleOut, await services_of(request).catalog.deactivate_rule(rule_id))


CATEGORY = "/v1/catalog/categories/{category_id}"
PRODUCT = "/v1/catalog/products/{product_id}"
LEVEL = "/v1/pricing/levels/{level}"
RULE = "/v1/pricing/rules/{rule_id}"
STORE_PRICING = "/v1/stores/{store_id}/pricing"
OPERATIONS = (
    Operation(
        method="POST",
        path="/v1/orders/quote",
        handler=quote,
        summary="Price an order: per line, every factor that applied and why",
        tag="pricing",
        request=QuoteRequest,
        response=Quote,
        errors=(404, 409),
        description=(
            "Send `lines` (product spend) or `amount_fen` (quick spend). Factors are decimal "
            "strings; the discount factor is the price multiplier (0.9 = 10 % off). Rounding: "
            "per line, half-up to the fen; points = floor(price in yuan × points factor). "
            "See docs/programme-pricing.md."
        ),
    ),
    Operation(
        method="GET",
        path="/v1/catalog/categories",
        handler=list_categories,
        summary="List product categories",
        tag="catalog",
        response=CategoryList,
    ),
    Operation(
        method="PUT",
        path=CATEGORY,
        handler=put_category,
        summary="Create or rename a category (admin)",
        tag="catalog",
        request=CategoryIn,
        response=CategoryOut,
        auth="admin",
        str_params=("category_id",),
    ),
    Operation(
        method="GET",
        path="/v1/catalog/products",
        handler=list_products,
        summary="List products with their list prices",
        tag="catalog",
        response=ProductList,
        errors=(422,),
        query=(QueryParam(name="category", description="only this category's products"),),
    ),
    Operation(
        method="GET",
        path=PRODUCT,
        handler=get_product,
        summary="Read a product",
        tag="catalog",
        response=ProductOut,
        str_params=("product_id",),
    ),
    Operation(
        method="PUT",
        path=PRODUCT,
        handler=put_product,
        summary="Create or replace a product (admin); active false stops it being sold",
        description=(
            "custom: the item's custom fields (see /v1/custom-fields), validated as a "
            "member's. Creating applies defaults and needs required fields (422 "
            "custom_field_required); replacing changes only the custom values sent."
        ),
        tag="catalog",
        request=ProductIn,
        response=ProductOut,
        auth="admin",
        str_params=("product_id",),
    ),
    Operation(
        method="GET",
        path="/v1/pricing/levels",
        handler=list_levels,
        summary="Member levels' price and points factors",
        tag="pricing",
        response=LevelList,
    ),
    Operation(
        method="PUT",
        path=LEVEL,
        handler=put_level,
        summary="Set a member level's price and points factors (admin)",
        tag="pricing",
        request=LevelIn,
        response=LevelOut,
        auth="admin",
        str_params=("level",),
    ),
    Operation(
        method="GET",
        path="/v1/pricing/rules",
        handler=list_rules,
        summary="List pricing rules, active and not (admin)",
        tag="pricing",
        response=RuleList,
        auth="admin",
        errors=(422,),
        query=(
            QueryParam(name="store", description="only this store's own rules"),
            QueryParam(name="kind", description="only rules of this kind"),
        ),
    ),
    Operation(
        method="POST",
        path="/v1/pricing/rules",
        handler=create_rule,
        summary="Create a pricing rule (admin)",
        tag="pricing",
        request=RuleIn,
        response=RuleOut,
        status=201,
        auth="admin",
        errors=(404,),
    ),
    Operation(
        method="GET",
        path=RULE,
        handler=get_rule,
        summary="Read a pricing rule (admin)",
        tag="pricing",
        response=RuleOut,
        auth="admin",
        int_params=("rule_id",),
    ),
    Operation(
        method="PUT",
        path=RULE,
        handler=replace_rule,
        summary="Replace a pricing rule (admin)",
        tag="pricing",
        request=RuleIn,
        response=RuleOut,
        auth="admin",
        int_params=("rule_id",),
    ),
    Operation(
        method="DELETE",
        path=RULE,
        handler=deactivate_rule,
        summary="Deactivate a pricing rule (admin); it stays readable",
        tag="pricing",
        response=RuleOut,
        auth="admin",
        int_params=("rule_id",),
    ),
    Operation(
        method="GET",
        path=STORE_PRICING,
        handler=get_store_pricing,
        summary="A store's pricing settings (time zone); a gateway: only its own store",
        tag="pricing",
        response=StorePricingOut,
        str_params=("store_id",),
    ),
    Operation(
        method="PUT",
        path=STORE_PRICING,
        handler=put_store_pricing,
        summary="Set a store's pricing settings (admin)",
        tag="pricing",
        request=StorePricingIn,
        response=StorePricingOut,
        auth="admin",
        str_params=("store_id",),
    ),
)
