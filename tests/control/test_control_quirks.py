"""A self-hosted model's quirks: validated like the CRD does (file, object, field), compiled."""

from __future__ import annotations

from pathlib import Path

from poolfiles import add_first_model, problems

from skyroute.control.policy.compiler import compile_folder
from skyroute.control.policy.model import MSG_QUIRKS

LLAMA = """\
    - name: local-llama
      provider: openai-compatible
      endpoint: http://llama.models.svc:8000/v1
      quirks: [rejects-null-content, ignores-n, errors-as-500, ignores-n]
      pricing: {inputPerMTok: 0, outputPerMTok: 0}
"""


def test_quirks_compile_sorted_once_each(acmeshop: Path) -> None:
    add_first_model(acmeshop, LLAMA)
    snap = compile_folder(acmeshop)
    (pool,) = [p for p in snap.pools if p.name == "cost"]
    first, *rest = pool.candidates
    assert (first.provider, first.endpoint) == (
        "openai-compatible",
        "http://llama.models.svc:8000/v1",
    )
    assert list(first.quirks) == ["errors-as-500", "ignores-n", "rejects-null-content"]
    assert rest and all(not c.quirks for c in rest)


def test_quirks_on_another_family_name_file_object_and_field(acmeshop: Path) -> None:
    pools = add_first_model(
        acmeshop, LLAMA.replace("provider: openai-compatible", "provider: openai")
    )
    [problem] = problems(acmeshop)
    assert (problem.file, problem.obj, problem.path) == (
        str(pools),
        "ModelPool default/cost",
        "spec.models[0].quirks",
    )
    assert problem.message.startswith(MSG_QUIRKS) and "provider is openai" in problem.message


def test_an_unknown_quirk_is_refused_by_the_enum(acmeshop: Path) -> None:
    add_first_model(acmeshop, LLAMA.replace("ignores-n, errors", "ignores-everything, errors"))
    [problem] = problems(acmeshop)
    assert problem.path == "spec.models[0].quirks[1]"
    assert "'rejects-stream-options'" in problem.message
