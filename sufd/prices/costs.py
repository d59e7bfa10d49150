"""A record's cost at a model's price: which token → USD formula of :mod:`sufd.prices.table`
applies to it, and with which of its token counts."""

from __future__ import annotations

from sufd.prices.table import ModelPrice, anthropic_cost, openai_cost
from sufd.records import Record

__all__ = ["cost_at"]


def cost_at(price: ModelPrice, rec: Record) -> float:
    """A record's cost at ``price``: ccusage's Anthropic-shaped formula (``pricing="anthropic"``)
    or its OpenAI formula (``pricing="openai"``); ``extra_output`` is priced as output."""
    if rec.pricing == "anthropic":
        return anthropic_cost(
            price,
            input=rec.input,
            output=rec.output + rec.extra_output,
            cache_write_5m=rec.cache_write_5m,
            cache_write_1h=rec.cache_write_1h,
            cache_read=rec.cache_read,
            fast=rec.fast,
        )
    return openai_cost(
        price,
        input=rec.input + rec.cache_read,
        cached=rec.cache_read,
        output=rec.output + rec.extra_output,
        fast=rec.fast,
    )
