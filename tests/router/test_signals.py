"""The signal registry is the one list: proto, Signals, rules, CRD and README agree with it."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from skyroute.control.policy.model import RoutingPolicySpec
from skyroute.router.decide import Decision
from skyroute.router.signals import (
    DECLARED,
    MAX_DECLARED_CHARS,
    RULE_SETS,
    SIGNALS,
    SignalError,
    Signals,
    attr_of,
    check_declared,
)
from skyroute.router.signals.readme import current, rewrite, table
from skyroute.v1 import router_pb2, snapshot_pb2

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_signal_table_is_fresh() -> None:
    text = README.read_text()
    assert current(text) == table(), "run: python -m skyroute.router.signals README.md"
    assert rewrite(text) == text


def test_every_explain_signal_is_in_the_registry_and_back() -> None:
    names = [s.name for s in SIGNALS]
    assert len(names) == len(set(names))
    assert set(names) == set(router_pb2.Signals.DESCRIPTOR.fields_by_name)


def test_signal_types_match_the_proto() -> None:
    kinds = {str: "string", int: "int32", float: "double", bool: "bool"}
    cpp = {
        "string": router_pb2.Signals.DESCRIPTOR.fields_by_name["tenant"].cpp_type,
        "int32": router_pb2.Signals.DESCRIPTOR.fields_by_name["prompt_tokens"].cpp_type,
        "double": router_pb2.Signals.DESCRIPTOR.fields_by_name["intent_confidence"].cpp_type,
        "bool": router_pb2.Signals.DESCRIPTOR.fields_by_name["has_tools"].cpp_type,
    }
    for s in SIGNALS:
        field = router_pb2.Signals.DESCRIPTOR.fields_by_name[s.name]
        assert field.cpp_type == cpp[kinds[s.type]], s.name


def test_declared_signals_have_a_header_and_a_grpc_field() -> None:
    request_fields = router_pb2.CompletionRequest.DESCRIPTOR.fields_by_name
    for s in DECLARED:
        assert s.header.startswith("x-skyroute-"), s.name
        assert s.field in request_fields, f"{s.name}: CompletionRequest has no {s.field!r}"
        assert request_fields[s.field].cpp_type == request_fields["tenant"].cpp_type
    assert len({s.header for s in DECLARED}) == len(DECLARED)


def test_attributes_exist_where_the_registry_says() -> None:
    # The message itself (lower-cased, and as written for outcomes that opt in) and its
    # embeddings are what signals are computed from, not signals.
    signal_fields = {f.name for f in dataclasses.fields(Signals)} - {"text", "prompt", "embeddings"}
    assert signal_fields == {attr_of(s) for s in SIGNALS if s.origin != "decision"}
    decision_fields = {f.name for f in dataclasses.fields(Decision)}
    for s in SIGNALS:
        if s.origin == "decision":
            assert attr_of(s) in decision_fields, s.name


def test_rule_sets_are_snapshot_rule_fields() -> None:
    rule_fields = snapshot_pb2.Rule.DESCRIPTOR.fields_by_name
    assert {s.name for s in RULE_SETS} == {"locale", "user_tier", "tenant"}
    for s in RULE_SETS:
        assert s.rule_set in rule_fields
        assert hasattr(getattr(snapshot_pb2.Rule(), s.rule_set), "append")  # a repeated field


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside ``list[X]``, ``X | None`` or ``Annotated[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _resolve(model: type[BaseModel], path: list[str]) -> bool:
    """Whether the camelCase ``path`` (``rules[]``, ``match``, ``tenants``) exists in ``model``."""
    head, *rest = path
    for name, info in model.model_fields.items():
        if (info.alias or name) == head.removesuffix("[]"):
            inner = _model_in(info.annotation)
            return not rest or (inner is not None and _resolve(inner, rest))
    return False


@pytest.mark.parametrize("s", SIGNALS, ids=lambda s: s.name)
def test_crd_fields_exist(s) -> None:  # type: ignore[no-untyped-def]
    for path in s.crd:
        parts = path.split(".")
        assert parts[0] == "spec", path
        assert _resolve(RoutingPolicySpec, parts[1:]), f"{s.name}: no CRD field {path}"


def test_declared_values_have_a_type_and_a_size_limit() -> None:
    tenant = next(s for s in DECLARED if s.name == "tenant")
    assert check_declared(tenant, "acme") == "acme"
    assert check_declared(tenant, "x" * MAX_DECLARED_CHARS) == "x" * MAX_DECLARED_CHARS
    with pytest.raises(SignalError, match="at most 128"):
        check_declared(tenant, "x" * (MAX_DECLARED_CHARS + 1))
    with pytest.raises(SignalError, match="must be a string"):
        check_declared(tenant, 7)
